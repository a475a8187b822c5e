"""Cross-fitted stage 1: no fusion head sees features of images their backbone fitted, nor a feature space it
never trained in.

With one backbone fine-tuned on all of train (``stage1_folds=1``, the published recipe) the fusion head
learns on features of the very images the backbone fitted, which are cleaner than the features of unseen
images: the head learns to trust the image more than it should on val and test. Cross-fitting removes this,
the way out-of-fold logits do for the text:

- the training records get ``K = stage1_folds`` folds (``mmkit.folds.assign_folds``: grouped, stratified,
  the same folds the text side's out-of-fold logits use);
- K backbones are fine-tuned, backbone k on the K-1 other folds (selected on the same val split);
- backbone k encodes the views and the plain view of fold k into the bank's training rows;
- backbone k also encodes every val and test image: those rows hold K plain views ([N, K, D]), and the
  head's prediction is the mean of its K predictions, one per fold backbone (``Stage2Model.forward``);
  epoch selection on val uses the same averaged predictions.

Why this recipe (the standard out-of-fold one) and not stacking the stage-1 class scores: penultimate
features of separately fine-tuned networks are not aligned (linear CKA full vs fold about 0.5 on the demo,
fold vs fold about 0.94), so a head trained on fold features and scored on the full backbone's features is
scored in a space it never trained in; the standardisation statistics, fitted on fold features, would not
fit either. Scoring each val/test image in each fold backbone's own space and averaging keeps the head in
the space it learned, uses no feature of the backbone fine-tuned on all of train, and keeps the head's
input the image features the paper's stage 2 uses. Stacked class scores are aligned across folds by
construction but replace the features by C numbers per image, which is another method than the paper's.
The bank's meta records the fold-vs-full and fold-vs-fold ``linear_cka`` on val features, so the
misalignment the recipe avoids stays visible.

The backbone fine-tuned on all of train takes no part in the cross-fitted row. A model saved for deployment
holds one backbone, so it cannot reproduce the cross-fitted (K-backbone) predictions: ``mmkit.model``
refuses to build one from a cross-fitted bank; ship a ``stage1_folds=1`` run's model.

It costs K stage-1 runs on (K-1)/K of the data each, K encodings of val and test, and K head evaluations
per val/test row.

Example:
    >>> fold_of = assign_folds(ds.records("train"), 3, seed=0, y=ds.targets("train"))  # doctest: +SKIP
    >>> fits = cross_fit_stage1(ds, fold_of, model_cfg, train_cfg, augment_cfg, out_dir="runs/cf")  # doctest: +SKIP
    >>> bank = cross_fitted_bank(ds, fold_of, [f.checkpoint for f in fits], bank_for, full_bank)  # doctest: +SKIP
    >>> bank.plain["test"].shape, bank.meta["cka"]["fold_vs_full"]  # doctest: +SKIP
    ((N_test, 3, D), [0.5, 0.48, 0.51])
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from mmkit.config import AugmentConfig, ModelConfig, TrainConfig


@dataclass
class FoldFit:
    """One cross-fitting fold: the stage-1 checkpoint trained without fold ``fold``, and its cost."""

    fold: int
    checkpoint: Path
    n_train: int
    n_held: int
    seconds: float
    metrics: dict[str, Any]  # the fold backbone's val metrics (its own classifier)


def fold_dataset(dataset: Any, rows: np.ndarray, keep_val: bool = True, keep_test: bool = False) -> Any:
    """``dataset`` with its training split cut to ``rows`` (positions in ``records("train")``); val kept
    when ``keep_val`` (stage 1 selects on it), test only when ``keep_test`` (a fold bank encodes it; a
    stage-1 fit never looks at it)."""
    train = dataset.records("train")
    splits = {"train": [train[i] for i in rows]}
    if keep_val or keep_test:
        splits["val"] = dataset.records("val") if keep_val and "val" in dataset.splits else []
        splits["test"] = dataset.records("test") if keep_test and "test" in dataset.splits else []
    return replace(dataset, splits=splits)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of two feature matrices of the same n rows (Kornblith et al. 2019):
    1 for the same features up to an orthogonal transform and an isotropic scale, near 0 for unrelated ones.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(50, 4))
        >>> round(linear_cka(x, 3 * x @ np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))[0]), 6)
        1.0
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(
            f"linear_cka needs two [n, d] matrices of the same n >= 2 rows, got {x.shape} and {y.shape}"
        )
    x, y = x - x.mean(0), y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norms) if norms > 0 else 0.0


def cross_fit_stage1(
    dataset: Any,
    fold_of: np.ndarray,
    model: ModelConfig,
    train: TrainConfig,
    augment: AugmentConfig,
    *,
    out_dir: Union[str, Path],
    resume: bool = False,
    device: Optional[str] = None,
) -> list[FoldFit]:
    """Fine-tune one stage-1 backbone per fold, each on the other folds (``out_dir/fold<k>/best.pt``)."""
    from mmkit.train import train_stage1

    fits = []
    for k in range(int(fold_of.max()) + 1):
        start = time.perf_counter()
        sub = fold_dataset(dataset, np.flatnonzero(fold_of != k))
        result = train_stage1(
            sub, model, train, augment, out_dir=Path(out_dir) / f"fold{k}", resume=resume, device=device
        )
        seconds = time.perf_counter() - start
        held = int((fold_of == k).sum())
        fits.append(
            FoldFit(k, result.checkpoint, len(fold_of) - held, held, seconds, result.metrics.get("val", {}))
        )
    return fits


def cross_fitted_bank(
    dataset: Any,
    fold_of: np.ndarray,
    checkpoints: list[Union[str, Path]],
    build: Callable[[Any, Union[str, Path]], Any],
    full_bank: Any = None,
) -> Any:
    """A ``FeatureBank`` whose training rows (views and plain view) of fold k come from ``checkpoints[k]``,
    and whose val/test rows hold every fold backbone's plain view ([N, K, D]); no row holds a feature of
    another backbone. ``build(dataset, checkpoint)`` builds (or reuses) a bank of a dataset (here: fold k's
    training rows, val and test). ``full_bank``, when one exists anyway: the backbone fine-tuned on all of
    train, used only for the fold-vs-full CKA in ``meta["cka"]``.

    The assembled bank is written once beside the fold banks (float16 ``.npy``, memory-mapped like any
    bank) and reused when the fold banks are the same."""
    from mmkit.features import FeatureBank, _open_bank, _tmp_name, dataset_fingerprint, key_hash, publish_bank

    train_ids = dataset.ids("train")
    eval_splits = [s for s in ("val", "test") if s in dataset.splits]
    parts = []
    for k, checkpoint in enumerate(checkpoints):
        rows = np.flatnonzero(fold_of == k)
        parts.append((rows, build(fold_dataset(dataset, rows, keep_val=True, keep_test=True), checkpoint)))
    views_k = {p[1].views for p in parts}
    if len(views_k) != 1:
        raise ValueError(f"the fold banks hold different numbers of views: {views_k}")
    key = {
        "cross_fitted": [p[1].key for p in parts],
        "full_for_cka": full_bank.key if full_bank is not None else None,
        "data": dataset_fingerprint(dataset),
        "fold_of": hashlib.sha256(np.asarray(fold_of, dtype=np.int64).tobytes()).hexdigest()[:16],
    }
    path = Path(parts[0][1].path).parent / f"crossfit-{key_hash(key)}"
    if (path / "bank.json").exists():
        return _open_bank(path, key, reused=True)
    start = time.perf_counter()
    ids = {"train": list(train_ids), **{s: list(dataset.ids(s)) for s in eval_splits}}
    n, (v, d) = len(train_ids), parts[0][1].features["train"].shape[1:]
    tmp = _tmp_name(path)
    tmp.mkdir(parents=True)
    try:
        views = np.lib.format.open_memmap(tmp / "train_views.npy", "w+", np.float16, (n, v, d))
        plain = np.lib.format.open_memmap(tmp / "train.npy", "w+", np.float16, (n, d))
        for rows, bank in parts:
            held = [train_ids[i] for i in rows]
            views[rows], plain[rows] = bank.lookup("train", held, plain=False), bank.lookup("train", held)
        views.flush(), plain.flush()
        del views, plain
        folds: dict[str, np.ndarray] = {}  # the memmaps just written: the CKA reads one split of them
        for split in eval_splits:
            out = np.lib.format.open_memmap(
                tmp / f"{split}.npy", "w+", np.float16, (len(ids[split]), len(parts), d)
            )
            for k, (_, bank) in enumerate(parts):
                out[:, k] = bank.lookup(split, ids[split]) if ids[split] else np.zeros((0, d), np.float16)
            out.flush()
            folds[split] = out
            del out
        meta = {
            "key": key,
            "build_seconds": time.perf_counter()
            - start
            + sum(p[1].build_seconds for p in parts if not p[1].reused),
            "cross_fitted": len(parts),
            "fold_banks": [str(p[1].path) for p in parts],
            "cka": _cka(folds, ids, full_bank),
        }
        del folds  # closes the memmaps before the folder is renamed
        publish_bank(tmp, path, ids, meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bank: FeatureBank = _open_bank(path, key, reused=False)
    return bank


def _cka(folds: dict[str, np.ndarray], ids: dict[str, list[str]], full_bank: Any) -> dict[str, Any]:
    """Linear CKA of the fold backbones' plain features on val (test when there is no val): fold vs fold,
    and fold vs the full backbone's when ``full_bank`` is given."""
    split = next((s for s in ("val", "test") if s in folds and len(folds[s]) >= 2), None)
    if split is None:
        return {}
    x = folds[split]
    k = x.shape[1]
    out: dict[str, Any] = {
        "split": split,
        "fold_vs_fold": [linear_cka(x[:, i], x[:, j]) for i in range(k) for j in range(i + 1, k)],
    }
    if full_bank is not None:
        full = np.asarray(full_bank.lookup(split, ids[split]), dtype=np.float32)
        out["fold_vs_full"] = [linear_cka(x[:, i], full) for i in range(k)]
    return out


__all__ = ["FoldFit", "cross_fit_stage1", "cross_fitted_bank", "fold_dataset", "linear_cka"]
