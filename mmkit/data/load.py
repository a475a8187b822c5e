"""One entry point from a ``DataConfig`` to a ``Dataset``, generating the synthetic default when needed.

Example:
    >>> from mmkit.config import DataConfig
    >>> ds = load_dataset(DataConfig(dataset="synthetic_food101"))  # doctest: +SKIP
    >>> ds.summary()  # doctest: +SKIP
    {'train': 345, 'val': 39, 'test': 128}
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from mmkit.config import DataConfig
from mmkit.data.checks import cross_split_duplicates, require_splits, skip_report, warn_train_groups
from mmkit.data.food101 import read_upmc_food101
from mmkit.data.fpus23 import read_fpus23
from mmkit.data.manifest import read_manifest
from mmkit.data.records import DataError, Dataset, hint, repo_root
from mmkit.data.synthetic import (
    holds_foreign_files,
    make_synthetic_food101,
    make_synthetic_fpus23,
    read_stamp,
    stamp,
)

DATASETS = ("synthetic_food101", "synthetic_fpus23", "upmc_food101", "fpus23", "manifest", "hf")
_GENERATORS: dict[str, tuple[str, Callable]] = {
    "synthetic_food101": ("food101", make_synthetic_food101),
    "synthetic_fpus23": ("fpus23", make_synthetic_fpus23),
}


def default_data_root(dataset: str) -> Path:
    """Where the synthetic default lives when ``data_root`` is None: ``<repo root>/data/<dataset>``."""
    return repo_root() / "data" / dataset


def ensure_synthetic(dataset: str, root: str | Path | None = None) -> Path:
    """Generate ``dataset`` (a ``synthetic_*`` name) under ``root`` unless it is there with the same settings.

    The generator's default settings are the dataset's definition (like a real dataset's files), so every
    seed of a run reads the same data; ``DataConfig.seed`` only moves the splits. A stamp file records the
    settings; a folder written by an older generator is regenerated. Generation writes to a temporary
    sibling and renames it, so concurrent runs never see half a dataset.
    """
    kind, make = _GENERATORS[dataset]
    root = Path(root) if root is not None else default_data_root(dataset)
    settings = {k: p.default for k, p in inspect.signature(make).parameters.items() if k != "root"}
    want = stamp(kind, settings)
    if read_stamp(root) == want:
        return root
    if holds_foreign_files(root):
        raise DataError(
            root,
            None,
            "folder exists and was not written by mmkit's generator",
            "set the notebook parameter data_root (Python: DataConfig(data_root=...)) to an empty or new folder",
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root.with_name(f".{root.name}.lock")):
        if read_stamp(root) == want:  # another process generated it while we waited
            return root
        tmp = root.with_name(f".{root.name}.tmp{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        make(tmp, **settings)
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    return root


@contextmanager
def _lock(path: Path):
    """An exclusive lock file (POSIX flock; no locking where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent generation is then the user's to avoid
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _manifest_options(cfg: DataConfig) -> dict:
    return dict(
        image_col=cfg.image_col,
        text_col=cfg.text_col,
        label_col=cfg.label_col,
        group_col=cfg.group_col,
        split_col=cfg.split_col,
        id_col=cfg.id_col,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        multilabel_sep=cfg.multilabel_sep,
        image_cache=cfg.image_cache,
        min_train_groups=cfg.min_train_groups,
    )


def _check_config(cfg: DataConfig) -> None:
    if cfg.dataset not in DATASETS:
        raise ValueError(
            f"unknown dataset {cfg.dataset!r}; set the notebook parameter dataset (Python: "
            f"DataConfig(dataset=...)) to one of {', '.join(DATASETS)}"
        )
    if not 0 < cfg.val_fraction < 1:
        raise ValueError(
            f"val_fraction={cfg.val_fraction} must be between 0 and 1 (exclusive): training picks its epoch "
            f"on the validation split, and with none it has nothing to select on; {hint('val_fraction', 0.1)}"
        )
    if not 0 <= cfg.test_fraction < 1 or cfg.val_fraction + cfg.test_fraction >= 1:
        raise ValueError(
            f"val_fraction={cfg.val_fraction} and test_fraction={cfg.test_fraction} leave no training rows; "
            f"{hint('test_fraction', 0.2)}"
        )
    if cfg.test_fraction == 0 and cfg.dataset in ("synthetic_fpus23", "fpus23"):
        raise ValueError(  # Food-101 has its own test split; FPUS23 carves one from its streams
            f"test_fraction=0 leaves {cfg.dataset} without a test split (it is carved from the streams); "
            f"{hint('test_fraction', 0.2)}"
        )
    if cfg.on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={cfg.on_error!r}: {hint('on_error', 'raise')} or 'skip'")


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read the dataset ``cfg`` names, then check the result as a whole; ``synthetic_*`` are generated first.

    ``upmc_food101`` and ``fpus23`` read the folder ``cfg.data_root``; ``manifest`` reads the CSV, JSONL or
    Parquet file ``cfg.data_root``; ``hf`` reads ``cfg.hf_dataset`` (images it holds as bytes are written to
    ``cfg.image_cache``). Every reader option is a ``DataConfig`` field of the same name. After reading: a
    warning when ``on_error="skip"`` dropped more than 5% of the inputs, an error for an empty split, and a
    warning for identical image files in two splits (``check_duplicates``), and a warning when grouped
    data leaves train fewer than ``min_train_groups`` groups (the folds of notebooks 04 / 05 would stop, before
    any training, with the fixes); all warnings also go to ``ds.meta["warnings"]``.

    Example:
        >>> ds = load_dataset(DataConfig(dataset="synthetic_fpus23", task="organs"))  # doctest: +SKIP
    """
    _check_config(cfg)
    if cfg.dataset in _GENERATORS:
        root = ensure_synthetic(cfg.dataset, cfg.data_root)
    elif cfg.dataset == "hf":
        if not cfg.hf_dataset:
            raise ValueError(
                "dataset 'hf' needs hf_dataset: set the notebook parameter hf_dataset (Python: "
                "DataConfig(hf_dataset=...)) to a save_to_disk folder or a hub name"
            )
        root = Path(cfg.hf_dataset)
    elif cfg.data_root is None:
        raise ValueError(
            f"dataset {cfg.dataset!r} needs data_root (the folder or manifest file to read): set the notebook "
            "parameter data_root (Python: DataConfig(data_root=...))"
        )
    else:
        root = Path(cfg.data_root).expanduser()
    common = dict(seed=cfg.seed, on_error=cfg.on_error, check_images=cfg.check_images)
    if cfg.dataset in ("synthetic_food101", "upmc_food101"):
        ds = read_upmc_food101(root, val_fraction=cfg.val_fraction, split_file=cfg.split_file, **common)
    elif cfg.dataset in ("synthetic_fpus23", "fpus23"):
        fractions = {
            "train": 1 - cfg.val_fraction - cfg.test_fraction,
            "val": cfg.val_fraction,
            "test": cfg.test_fraction,
        }
        ds = read_fpus23(
            root,
            task=cfg.task or "head",
            include_view=cfg.include_view,
            fractions=fractions,
            unboxed_streams=cfg.unboxed_streams,
            **common,
        )
    elif cfg.dataset == "hf":
        from mmkit.data.hf import read_hf

        ds = read_hf(cfg.hf_dataset, **_manifest_options(cfg), **common)
    else:
        ds = read_manifest(root, **_manifest_options(cfg), **common)
    ds.name = cfg.dataset
    ds.meta.setdefault("warnings", [])
    skip_report(ds, str(root))
    require_splits(ds, str(root))
    warn_train_groups(ds, str(root), cfg.min_train_groups)
    if cfg.check_duplicates:
        cross_split_duplicates(ds, str(root))
    return ds


def dataset_stats(ds: Dataset) -> dict:
    """Headline figures of a dataset for reports: counts per split and class, groups, text lengths, skips.

    Example:
        >>> dataset_stats(load_dataset(DataConfig()))["n_classes"]  # doctest: +SKIP
        8
    """
    stats: dict = {
        "dataset": ds.name,
        "task": ds.task,
        "n_classes": ds.num_classes,
        "classes": list(ds.classes),
        "split_counts": ds.summary(),
        "n_skipped": len(ds.skipped),
        "class_counts": {},
        "n_groups": {},
        "text_words_median": {},
    }
    for split, recs in ds.splits.items():
        counts = dict.fromkeys(ds.classes, 0)
        for r in recs:
            for lab in r.labels:
                counts[lab] += 1
        stats["class_counts"][split] = counts
        stats["n_groups"][split] = len({r.group for r in recs if r.group is not None})
        words = sorted(len(r.text.split()) for r in recs)
        stats["text_words_median"][split] = float(words[len(words) // 2]) if words else 0.0
    boxes = [len(r.meta["boxes"]) for recs in ds.splits.values() for r in recs if "boxes" in r.meta]
    if boxes:
        stats["n_boxes"] = sum(boxes)
    return stats


__all__ = ["DATASETS", "dataset_stats", "default_data_root", "ensure_synthetic", "load_dataset", "repo_root"]
