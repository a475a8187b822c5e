"""The fold assignment both modalities use: cross-fitted stage 1 and the out-of-fold text logits.

``assign_folds(records, k, seed)`` gives every training record a fold in 0..k-1. Folds are

- grouped whenever records carry a group (``Record.group``: FPUS23 streams, a manifest's ``group_col``), so
  near-duplicates of one group never sit on both sides of a fold; when no record has a group but some
  records share an image file, the image is the group (several captions of one photo stay together);
- stratified by label where every class has at least k rows (multiclass; a multi-label task is not);
- drawn from the root seed's ``"folds"`` stream (``mmkit.seeding``), so stage 1's K backbones and the
  text side's K classifiers hold out exactly the same rows.

``sklearn.model_selection`` does the splitting (``StratifiedGroupKFold``, ``GroupKFold``,
``StratifiedKFold``, ``KFold``). ``GroupKFold`` is used without ``shuffle=`` (which needs scikit-learn
>= 1.6): the seed permutes the group names instead, which moves groups between folds just the same.

Example:
    >>> fold_indices(6, 3, seed=0, y=np.array([0, 0, 0, 1, 1, 1]))[0][1].shape
    (2,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from mmkit.seeding import derive_seed


def fold_groups(records: Sequence[Any]) -> Optional[list[str]]:
    """The group of each record for grouped folds: ``Record.group``, else the image file when images
    repeat, else None (every record its own group: plain folds)."""
    if any(getattr(r, "group", None) is not None for r in records):
        return [str(r.group) if r.group is not None else f"\0id:{r.id}" for r in records]
    images = [str(r.image_path) for r in records]
    return images if len(set(images)) < len(images) else None


def fold_indices(
    n: int, folds: int, seed: int, y: Optional[np.ndarray] = None, groups: Optional[Sequence] = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k-fold (train, held-out) index pairs: stratified when every class has ``folds`` rows, grouped when
    ``groups`` is given (no group on both sides). ``seed`` is used as given (callers pass a stream's)."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if folds < 2:
        raise ValueError(f"k-fold needs folds >= 2, got {folds}")
    if n < folds:
        raise ValueError(f"{n} rows cannot make {folds} folds; lower the number of folds")
    X = np.zeros((n, 1))
    stratify = y is not None and y.ndim == 1 and np.bincount(y).min(initial=folds) >= folds
    if groups is not None:
        names = sorted(set(groups), key=str)
        if len(names) < folds:
            lower = (
                f"lower text_folds / stage1_folds to {len(names)} or fewer, or " if len(names) >= 2 else ""
            )
            raise ValueError(
                f"{len(names)} groups cannot make {folds} folds; {lower}keep {folds} groups in train "
                f"(the notebook parameter min_train_groups = {folds}, or DataConfig(min_train_groups={folds}), "
                f"moves groups from val / test into train when the data has enough), or group by something "
                f"finer (group_col)"
            )
        # A seeded relabelling of the groups: GroupKFold (no shuffle) then puts different groups together.
        perm = np.random.default_rng(seed).permutation(len(names))
        code = {g: int(perm[i]) for i, g in enumerate(names)}
        g = np.array([code[x] for x in groups])
        if stratify:
            return list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(X, y, g))
        return list(GroupKFold(folds).split(X, groups=g))
    if stratify:
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y))
    return list(KFold(folds, shuffle=True, random_state=seed).split(X))


def assign_folds(records: Sequence[Any], folds: int, seed: int, y: Optional[np.ndarray] = None) -> np.ndarray:
    """The fold (0..folds-1) of every record, grouped and stratified as the module docstring says; ``seed``
    is the root seed (its ``"folds"`` stream is used). ``y``: class indices (multiclass) for stratifying.

    Example:
        >>> assign_folds(ds.records("train"), 3, seed=0, y=ds.targets("train"))  # doctest: +SKIP
        array([2, 0, 1, ...])
    """
    out = np.full(len(records), -1, dtype=np.int64)
    for k, (_, held) in enumerate(
        fold_indices(len(records), folds, derive_seed(seed, "folds"), y, fold_groups(records))
    ):
        out[held] = k
    assert (out >= 0).all(), "every row is held out by exactly one fold"
    return out


def fold_splits(fold_of: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index pairs of a fold assignment, fold 0 first."""
    return [
        (np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)) for k in range(int(fold_of.max()) + 1)
    ]


__all__ = ["assign_folds", "fold_groups", "fold_indices", "fold_splits"]
