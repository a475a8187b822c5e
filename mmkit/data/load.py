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
from mmkit.data.food101 import read_upmc_food101
from mmkit.data.fpus23 import read_fpus23
from mmkit.data.manifest import read_manifest
from mmkit.data.records import DataError, Dataset
from mmkit.data.synthetic import (
    holds_foreign_files,
    make_synthetic_food101,
    make_synthetic_fpus23,
    read_stamp,
    stamp,
)

DATASETS = ("synthetic_food101", "synthetic_fpus23", "upmc_food101", "fpus23", "manifest")
_GENERATORS: dict[str, tuple[str, Callable]] = {
    "synthetic_food101": ("food101", make_synthetic_food101),
    "synthetic_fpus23": ("fpus23", make_synthetic_fpus23),
}


def repo_root() -> Path:
    """The checkout holding mmkit (the current directory when mmkit is installed elsewhere)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


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
            root, None, "folder exists and was not written by mmkit's generator", "choose an empty data_root"
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


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read the dataset ``cfg`` names; ``synthetic_*`` are generated first when missing.

    ``upmc_food101`` and ``fpus23`` read the folder ``cfg.data_root``; ``manifest`` reads the CSV/JSONL file
    ``cfg.data_root``.

    Example:
        >>> ds = load_dataset(DataConfig(dataset="synthetic_fpus23", task="organs"))  # doctest: +SKIP
    """
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    if cfg.dataset in _GENERATORS:
        root = ensure_synthetic(cfg.dataset, cfg.data_root)
    elif cfg.data_root is None:
        raise ValueError(f"dataset {cfg.dataset!r} needs data_root (the folder or manifest file to read)")
    else:
        root = Path(cfg.data_root).expanduser()
    common = dict(seed=cfg.seed, on_error=cfg.on_error)
    if cfg.dataset in ("synthetic_food101", "upmc_food101"):
        ds = read_upmc_food101(root, val_fraction=cfg.val_fraction, split_file=cfg.split_file, **common)
    elif cfg.dataset in ("synthetic_fpus23", "fpus23"):
        ds = read_fpus23(root, task=cfg.task or "head", include_view=cfg.include_view, **common)
    else:
        ds = read_manifest(root, val_fraction=cfg.val_fraction, **common)
    ds.name = cfg.dataset
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
