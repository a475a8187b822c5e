"""Checks ``load_dataset`` runs on every dataset after reading: skipped share, empty splits, shared images.

A reader reports each bad input on its own; these look at the result as a whole, where a problem only shows
in the totals: ``on_error="skip"`` that threw away most of a manifest, a split left empty, or the same
image file (by content) in train and test.

Example:
    >>> from mmkit.data import load_dataset
    >>> ds = load_dataset(DataConfig())  # doctest: +SKIP
    >>> ds.meta["cross_split_duplicates"]  # doctest: +SKIP
    {'n_images': 0, 'examples': []}
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path

from mmkit.data.records import DataError, Dataset, hint, warn

SKIP_WARN_SHARE = 0.05  # above this share of skipped inputs, say so prominently


def _reason(problem: str) -> str:
    return problem.split(":")[0].split(" (")[0]


def skip_report(ds: Dataset, source: str, threshold: float = SKIP_WARN_SHARE) -> dict:
    """The share of inputs ``on_error="skip"`` dropped and its most common reasons; a warning above ``threshold``.

    The report goes to ``ds.meta["skip_report"]``; the warning to ``ds.meta["warnings"]`` too.
    """
    kept = sum(len(v) for v in ds.splits.values())
    n = len(ds.skipped)
    share = n / (n + kept) if n + kept else 0.0
    reasons = Counter(_reason(s.problem) for s in ds.skipped).most_common()
    report = {"n_skipped": n, "n_kept": kept, "share": share, "reasons": dict(reasons)}
    ds.meta["skip_report"] = report
    if n and share > threshold:
        top, count = reasons[0]
        warn(
            f"{source}: on_error='skip' dropped {share:.0%} of the inputs ({n} of {n + kept}); most common "
            f"reason: {top} ({count}). See ds.skipped for the list, or {hint('on_error', 'raise')} to stop at "
            "the first one",
            ds.meta.setdefault("warnings", []),
        )
    return report


def require_splits(ds: Dataset, source: str) -> None:
    """Raise ``DataError`` for an empty split, saying how many inputs were skipped and why."""
    empty = [name for name in ("train", "val", "test") if not ds.splits.get(name)]
    if not empty:
        return
    reasons = Counter(_reason(s.problem) for s in ds.skipped).most_common(3)
    why = (
        f"; {len(ds.skipped)} inputs were skipped ("
        + ", ".join(f"{r}: {c}" for r, c in reasons)
        + "), see ds.skipped"
        if ds.skipped
        else ""
    )
    raise DataError(
        source,
        None,
        f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
        f"({', '.join(f'{k}: {len(v)}' for k, v in ds.splits.items())}){why}",
        (
            f"fix the inputs that were skipped ({hint('on_error', 'raise')} stops at the first), or check "
            if ds.skipped
            else "check "
        )
        + "the notebook parameters data_root, val_fraction, test_fraction, split_file and split_col (the DataConfig "
        "fields of the same names)",
    )


def require_train_groups(ds: Dataset, source: str, min_groups: int) -> None:
    """Raise ``DataError`` when grouped data leaves train fewer than ``min_groups`` groups.

    The k-fold out-of-fold text logits and cross-fitting put whole groups in folds (``mmkit.folds``), so
    they need k groups in train. Data without groups (every row its own group) always passes.
    ``load_dataset`` reports it as a warning (``warn_train_groups``): exploring the data (notebook 01) and
    stage 1 (03) need no folds, and notebooks 04 and 05 make their folds before anything trains, where
    ``mmkit.folds`` stops with the same fixes.

    Example:
        >>> require_train_groups(ds, "tweets.csv", 5)  # doctest: +SKIP
    """
    train = ds.splits.get("train", [])
    if min_groups < 2 or not any(r.group is not None for r in train):
        return
    have = sorted({r.group if r.group is not None else r.id for r in train})
    if len(have) >= min_groups:
        return
    groups_all = {r.group if r.group is not None else r.id for recs in ds.splits.values() for r in recs}
    n_carved = sum(1 for k in ("val", "test") if ds.splits.get(k))
    # The manifest and hf readers move groups into train up to min_train_groups (they record "grouped_by");
    # another reader's split (FPUS23's streams) is what it is.
    moves_groups = "grouped_by" in ds.meta
    most = len(groups_all) - n_carved if moves_groups else len(have)  # val and test keep one group each
    fixes = []
    if most >= 2:
        fixes.append(
            f"Lower text_folds and stage1_folds to {most} or fewer and {hint('min_train_groups', most)}, "
            "the same in every notebook"
        )
    if moves_groups:
        fixes.append(
            f"{'or group' if fixes else 'Group'} by something finer: a finer group_col, or group_col=None, "
            "which still keeps rows sharing an image together"
        )
        fixes.append("or, where a split column gives the splits, put more groups in its train rows")
    else:
        fixes.append(f"{'or add' if fixes else 'Add'} data with more groups (FPUS23: more streams)")
    raise DataError(
        source,
        None,
        f"train holds {len(have)} group(s) ({', '.join(map(repr, have[:5]))}), fewer than the "
        f"{min_groups} that k-fold out-of-fold text logits and cross-fitting need (one group per fold at "
        f"least); the data has {len(groups_all)} groups in all, and val and test need one each",
        "; ".join(fixes),
    )


def _digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def warn_train_groups(ds: Dataset, source: str, min_groups: int) -> None:
    """``require_train_groups`` as a warning (also in ``ds.meta["warnings"]``): the split is kept, and the
    fold step of notebooks 04 / 05 stops, before any training, if the folds cannot be made."""
    try:
        require_train_groups(ds, source, min_groups)
    except DataError as err:
        warn(
            f"{err} (the folds of notebooks 04 and 05 will stop on this)", ds.meta.setdefault("warnings", [])
        )


def cross_split_duplicates(ds: Dataset, source: str, max_examples: int = 10) -> dict:
    """Image files with the same content in two splits (a leak), reported in a warning and ``ds.meta``.

    Only files whose size matches a file in another split are hashed, so a dataset of distinct images costs
    one ``stat`` per file. The same path used by two rows of one split is not a leak and is not reported.
    """
    by_size: dict[int, dict[str, set[Path]]] = defaultdict(lambda: defaultdict(set))
    for split, recs in ds.splits.items():
        for r in recs:
            try:
                size = os.stat(r.image_path).st_size
            except OSError:
                continue
            by_size[size][split].add(Path(r.image_path))
    by_hash: dict[str, dict[str, set[Path]]] = defaultdict(lambda: defaultdict(set))
    for per_split in by_size.values():
        if len(per_split) < 2:
            continue
        for split, paths in per_split.items():
            for p in paths:
                by_hash[_digest(p)][split].add(p)
    shared = [
        {split: sorted(map(str, paths)) for split, paths in sorted(per_split.items())}
        for per_split in by_hash.values()
        if len(per_split) >= 2
    ]
    report = {"n_images": len(shared), "examples": shared[:max_examples]}
    ds.meta["cross_split_duplicates"] = report
    if shared:
        first = shared[0]
        warn(
            f"{source}: {len(shared)} images are in more than one split (identical file content), e.g. "
            + " and ".join(f"{s}: {paths[0]}" for s, paths in first.items())
            + ". Such test rows measure memory, not generalisation: remove the copies, or group the rows "
            "(group_col) so that copies share a split; the list is in ds.meta['cross_split_duplicates']",
            ds.meta.setdefault("warnings", []),
        )
    return report


__all__ = [
    "SKIP_WARN_SHARE",
    "cross_split_duplicates",
    "require_splits",
    "require_train_groups",
    "warn_train_groups",
    "skip_report",
]
