"""Cross-fitted stage 1: the feature bank's training rows from backbones that never trained on them.

With one backbone fine-tuned on all of train (``stage1_folds=1``, the published recipe) the fusion head
learns on features of the very images the backbone fitted, which are cleaner than the features of unseen
images: the head learns to trust the image more than it should on val and test. Cross-fitting removes this,
the way out-of-fold logits do for the text:

- the training records get ``K = stage1_folds`` folds (``mmkit.folds.assign_folds``: grouped, stratified,
  the same folds the text side's out-of-fold logits use);
- K backbones are fine-tuned, backbone k on the K-1 other folds (selected on the same val split);
- backbone k encodes the K views and the plain view of fold k into the bank's training rows;
- val and test rows are encoded by the backbone fine-tuned on all of train (the one stage 2 ships).

It costs K stage-1 runs on (K-1)/K of the data each, on top of the full one.

Example:
    >>> fold_of = assign_folds(ds.records("train"), 3, seed=0, y=ds.targets("train"))  # doctest: +SKIP
    >>> fits = cross_fit_stage1(ds, fold_of, model_cfg, train_cfg, augment_cfg, out_dir="runs/cf")  # doctest: +SKIP
    >>> bank = cross_fitted_bank(ds, fold_of, [f.checkpoint for f in fits], full_bank, bank_for)  # doctest: +SKIP
"""

from __future__ import annotations

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


def fold_dataset(dataset: Any, rows: np.ndarray, keep_val: bool = True) -> Any:
    """``dataset`` with its training split cut to ``rows`` (positions in ``records("train")``); val kept
    for selection when ``keep_val``, test always dropped (cross-fitting never looks at it)."""
    train = dataset.records("train")
    splits = {"train": [train[i] for i in rows]}
    if keep_val:
        splits["val"] = dataset.records("val") if "val" in dataset.splits else []
        splits["test"] = []
    return replace(dataset, splits=splits)


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
    full_bank: Any,
    build: Callable[[Any, Union[str, Path]], Any],
) -> Any:
    """A ``FeatureBank`` whose training rows (K views and plain view) come from ``checkpoints[k]`` for the
    records of fold k, and whose val/test rows are ``full_bank``'s (the backbone fine-tuned on all of
    train). ``build(dataset, checkpoint)`` builds (or reuses) a bank of a dataset's training split."""
    from mmkit.features import FeatureBank

    train_ids = dataset.ids("train")
    parts = []
    for k, checkpoint in enumerate(checkpoints):
        rows = np.flatnonzero(fold_of == k)
        bank = build(fold_dataset(dataset, rows, keep_val=False), checkpoint)
        ids = [train_ids[i] for i in rows]
        parts.append((rows, bank, bank.lookup("train", ids, plain=False), bank.lookup("train", ids)))
    views_k = {p[1].views for p in parts} | {full_bank.views}
    if len(views_k) != 1:
        raise ValueError(f"the fold banks and the full bank hold different numbers of views: {views_k}")
    n, (v, d) = len(train_ids), parts[0][2].shape[1:]
    views = np.empty((n, v, d), dtype=np.float16)
    plain = np.empty((n, d), dtype=np.float16)
    for rows, _, fold_views, fold_plain in parts:
        views[rows], plain[rows] = fold_views, fold_plain
    ids = {"train": list(train_ids)}
    plains = {"train": plain}
    for split in ("val", "test"):
        if split in dataset.splits:
            ids[split] = dataset.ids(split)
            plains[split] = (
                full_bank.lookup(split, ids[split]) if ids[split] else np.zeros((0, d), np.float16)
            )
    key = {"cross_fitted": [p[1].key for p in parts], "val_test": full_bank.key}
    return FeatureBank(
        path=full_bank.path,
        key=key,
        ids=ids,
        features={"train": views},
        plain=plains,
        reused=all(p[1].reused for p in parts),
        build_seconds=sum(p[1].build_seconds for p in parts if not p[1].reused),
        meta={"cross_fitted": len(parts), "fold_banks": [str(p[1].path) for p in parts]},
    )


__all__ = ["FoldFit", "cross_fit_stage1", "cross_fitted_bank", "fold_dataset"]
