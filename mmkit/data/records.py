"""Records, datasets, splits and input errors shared by every reader.

A ``Record`` is one sample as it sits on disk; a ``Dataset`` holds the class list and the records of each
split. Readers never drop a row silently: a problem either raises ``DataError`` (naming the file, the row or
frame, and what to do) or, with ``on_error="skip"``, is logged and listed in ``Dataset.skipped``.

Example:
    >>> r = Record(id="a.jpg", image_path=Path("a.jpg"), text="apple pie", label="apple_pie")
    >>> ds = Dataset(name="toy", classes=["apple_pie"], splits={"train": [r], "val": [], "test": []})
    >>> ds.targets("train").tolist()
    [0]
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

log = logging.getLogger("mmkit.data")

SPLITS = ("train", "val", "test")


class DataWarning(UserWarning):
    """Something about the data a user must know (a regrouped split, many skipped rows, shared images)."""


# Shown every time, not once per place: rerunning a notebook cell must show the warning again.
warnings.simplefilter("always", DataWarning)


def warn(message: str, collect: Optional[list[str]] = None) -> None:
    """Issue a ``DataWarning`` (Jupyter shows it under the cell) and append it to ``collect`` when given."""
    warnings.warn(message, DataWarning, stacklevel=3)
    if collect is not None:
        collect.append(message)


def repo_root() -> Path:
    """The checkout holding mmkit (the current directory when mmkit is installed elsewhere)."""
    from mmkit.paths import ROOT

    return ROOT if (ROOT / "pyproject.toml").is_file() else Path.cwd()


def hint(name: str, value: Any) -> str:
    """How to set a data option where the user is: the notebook parameter and the Python argument.

    A value written ``"<like this>"`` is a placeholder and is shown unquoted.

    Example:
        >>> hint("on_error", "skip")
        "set the notebook parameter on_error = 'skip' (Python: on_error='skip', or DataConfig(on_error='skip'))"
    """
    v = value if isinstance(value, str) and value.startswith("<") else repr(value)
    return f"set the notebook parameter {name} = {v} (Python: {name}={v}, or DataConfig({name}={v}))"


class DataError(ValueError):
    """Bad input: the message names the file, the row or frame, and what to do about it."""

    def __init__(self, file: str | Path, where: Optional[str], problem: str, fix: str):
        self.file, self.where, self.problem, self.fix = str(file), where, problem, fix
        loc = f"{file}" + (f", {where}" if where else "")
        super().__init__(f"{loc}: {problem}. {fix}")


@dataclass
class Skipped:
    """One input that was skipped under ``on_error='skip'``."""

    file: str
    where: Optional[str]
    problem: str


class ErrorPolicy:
    """Raise on bad input, or (``on_error="skip"``) collect it, log a count and keep a list.

    Example:
        >>> policy = ErrorPolicy("skip")
        >>> policy.report("t.csv", "row 3", "empty text", "fill it in")
        >>> len(policy.skipped)
        1
    """

    def __init__(self, on_error: Literal["raise", "skip"] = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.skipped: list[Skipped] = []

    def report(self, file: str | Path, where: Optional[str], problem: str, fix: str) -> None:
        if self.on_error == "raise":
            raise DataError(
                file, where, problem, f"{fix}. To skip such inputs instead: {hint('on_error', 'skip')}"
            )
        self.skipped.append(Skipped(str(file), where, problem))

    def log_summary(self, source: str) -> None:
        if self.skipped:
            kinds = Counter(s.problem.split(":")[0] for s in self.skipped)
            log.warning(
                "%s: skipped %d inputs (%s); see Dataset.skipped for the list",
                source,
                len(self.skipped),
                ", ".join(f"{k}: {n}" for k, n in kinds.items()),
            )


@dataclass
class Record:
    """One sample: an image file, its text, its label(s) and a group key for grouped splits.

    ``label`` is a class name, or a list of class names for a multi-label task.
    """

    id: str
    image_path: Path
    text: str
    label: str | list[str]
    group: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The label(s) as a list, whatever the task: ``["pho"]`` for ``label="pho"``."""
        return self.label if isinstance(self.label, list) else [self.label]


@dataclass
class Dataset:
    """Class list plus records per split (``train``/``val``/``test``)."""

    name: str
    classes: list[str]
    splits: dict[str, list[Record]]
    task: Literal["multiclass", "multilabel"] = "multiclass"
    skipped: list[Skipped] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def records(self, split: str) -> list[Record]:
        if split not in self.splits:
            raise KeyError(f"{self.name} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    def targets(self, split: str) -> np.ndarray:
        """Class indices (multiclass, shape [N]) or a multi-hot matrix (multilabel, shape [N, C])."""
        index = {c: i for i, c in enumerate(self.classes)}
        recs = self.records(split)
        if self.task == "multilabel":
            y = np.zeros((len(recs), len(self.classes)), dtype=np.float32)
            for i, r in enumerate(recs):
                for lab in r.label:
                    y[i, index[lab]] = 1.0
            return y
        return np.array([index[r.label] for r in recs], dtype=np.int64)

    def texts(self, split: str) -> list[str]:
        return [r.text for r in self.records(split)]

    def ids(self, split: str) -> list[str]:
        return [r.id for r in self.records(split)]

    def to_frame(self, split: Optional[str] = None):
        """A pandas DataFrame of the records (all splits when ``split`` is None), with a ``split`` column."""
        import pandas as pd

        rows = []
        for name in [split] if split else list(self.splits):
            for r in self.records(name):
                label = "|".join(r.label) if isinstance(r.label, list) else r.label
                rows.append(
                    {
                        "split": name,
                        "id": r.id,
                        "image_path": str(r.image_path),
                        "text": r.text,
                        "label": label,
                        "group": r.group,
                        **{f"meta.{k}": v for k, v in r.meta.items()},
                    }
                )
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, int]:
        return {name: len(recs) for name, recs in self.splits.items()}


def _primary_label(r: Record) -> str:
    return r.label if isinstance(r.label, str) else ("|".join(sorted(r.label)) or "<none>")


def stratified_split(
    records: list[Record], val_fraction: float, seed: int, collect: Optional[list[str]] = None
) -> tuple[list[Record], list[Record]]:
    """Carve a validation split from ``records``, stratified by label where every class allows it.

    A class with a single sample cannot be in both splits; it stays in train (never dropped, never moved
    to val), and a warning names it.

    Example:
        >>> recs = [Record(str(i), Path(f"{i}.jpg"), "t", "ab"[i % 2]) for i in range(10)] + [
        ...     Record("x", Path("x.jpg"), "t", "c")]
        >>> train, val = stratified_split(recs, 0.2, seed=0)
        >>> "c" in {r.label for r in train}, len(val)
        (True, 3)
    """
    from sklearn.model_selection import train_test_split

    if not records or val_fraction <= 0:
        return list(records), []
    labels = [_primary_label(r) for r in records]
    counts = Counter(labels)
    single = sorted(c for c, n in counts.items() if n < 2)
    if single:
        warn(
            f"{len(single)} classes have a single sample and stay in train, not in val: "
            + ", ".join(map(repr, single[:10]))
            + (" ..." if len(single) > 10 else ""),
            collect,
        )
    pool = [i for i, lab in enumerate(labels) if counts[lab] >= 2]
    n_val = math.ceil(val_fraction * len(records))  # as sklearn's train_test_split rounds a test_size
    if not pool or n_val == 0:
        return list(records), []
    n_val = min(n_val, len(pool) - 1)
    pool_labels = [labels[i] for i in pool]
    n_classes = len(set(pool_labels))
    strat = pool_labels if n_val >= n_classes and len(pool) - n_val >= n_classes else None
    _, va = train_test_split(np.array(pool), test_size=n_val, random_state=seed, stratify=strat)
    val_idx = set(va.tolist())
    return [r for i, r in enumerate(records) if i not in val_idx], [records[i] for i in sorted(val_idx)]


def _group_key(r: Record) -> str:
    return r.group if r.group is not None else r.id


def grouped_split(
    records: list[Record],
    fractions: dict[str, float],
    seed: int,
    candidates: int = 8,
    collect: Optional[list[str]] = None,
    report: bool = True,
    min_train_groups: int = 0,
) -> dict[str, list[Record]]:
    """Split by ``Record.group`` so that no group lands in two splits, at the *row* shares ``fractions``.

    ``fractions`` maps split name to its share of the rows, e.g. ``{"train": .7, "val": .15, "test": .15}``;
    the first name is the rest (train). The other splits are carved off one after the other, last first
    (test, then val from what is left). Each carve scores candidate sets of groups: every fold of
    ``candidates`` seeded ``sklearn.model_selection.StratifiedGroupKFold`` splits into about ``1 / share``
    folds (class-balanced), plus, per round, the shortest prefixes of a seeded shuffle of the groups that
    reach the target (size-matched). A candidate's score is how far its row share is from the target, plus a
    large penalty for each class it would take out of the rest (train must keep every class) and a smaller
    one (0.1, i.e. 10 points of share) for each class it lacks that it could hold (a class spread over two
    or more groups). The seed picks among the candidates within 1 point of the best, so seeds still move
    the split wherever the groups leave a choice. A warning says when a split ends up more than 5
    points from its share, or without a class the data has (also appended to ``collect`` when given;
    ``report=False`` leaves it out), and when one group holds most of the rows (``dominant_group``).

    ``min_train_groups``: train keeps at least this many groups whenever the data has enough (the k-fold
    out-of-fold text logits and cross-fitting need one group per fold at least). Where the carves leave
    fewer, the fewest groups that keep the row shares closest are moved from val / test into train
    (``fill_train_groups``), and a warning says so. A group holding most of the rows otherwise ends up
    alone in train, and no fold count can split one group.

    Example:
        >>> recs = [Record(str(i), Path(f"{i}.jpg"), "t", "ab"[i % 2], group=f"g{i % 10}") for i in range(40)]
        >>> s = grouped_split(recs, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
        >>> {k: len(v) for k, v in s.items()}
        {'train': 24, 'val': 8, 'test': 8}
    """
    names = list(fractions)
    out: dict[str, list[Record]] = {k: [] for k in names}
    if not records:
        return out
    total = sum(fractions.values())
    shares = {k: fractions[k] / total for k in names}
    rng = np.random.default_rng(seed)
    classes = sorted({lab for r in records for lab in r.labels})
    cindex = {c: i for i, c in enumerate(classes)}
    rest = list(records)
    n_all = len(records)
    for name in reversed(names[1:]):
        target = shares[name] * n_all
        if target < 0.5 or len(rest) < 2:
            continue
        taken = _carve(rest, target, n_all, classes, cindex, rng, candidates)
        out[name] = [r for i, r in enumerate(rest) if i in taken]
        rest = [r for i, r in enumerate(rest) if i not in taken]
    out[names[0]] = rest
    if min_train_groups:
        fill_train_groups(out, fractions, min_train_groups, rng, collect)
    if report:
        big = dominant_group(records)
        if big is not None:
            where = next(k for k, v in out.items() if any(_group_key(r) == big[0] for r in v))
            warn(
                f"group {big[0]!r} holds {big[1]:.0%} of the {n_all} rows: the split that holds it ({where}) "
                f"is mostly one group, the shares cannot all be met, and the other splits are scored on "
                f"other groups than most of the training rows (a score there measures transfer to new "
                f"groups). More, smaller groups (a finer group_col) give a closer split",
                collect,
            )
        warn_split_shape(out, fractions, records, collect)
    return out


def dominant_group(records: list[Record], share: float = 0.5) -> Optional[tuple[str, float]]:
    """The group holding more than ``share`` of the rows and its share, or None.

    Example:
        >>> recs = [Record(str(i), Path(f"{i}.jpg"), "t", "a", group="big" if i < 8 else str(i)) for i in range(10)]
        >>> dominant_group(recs)
        ('big', 0.8)
    """
    if not records:
        return None
    key, n = Counter(_group_key(r) for r in records).most_common(1)[0]
    return (key, n / len(records)) if n / len(records) > share else None


def fill_train_groups(
    splits: dict[str, list[Record]],
    fractions: dict[str, float],
    min_groups: int,
    rng: Optional[np.random.Generator] = None,
    collect: Optional[list[str]] = None,
) -> list[tuple[str, str]]:
    """Move whole groups from the other splits into the first (train) until it holds ``min_groups``.

    Each move takes the group that leaves the splits closest to ``fractions``: the sum over splits of
    (share - target)² / target, whose minimum, for the rows train cannot hold, shrinks the other splits in
    proportion to their targets (val : test stays about 1 : 2), plus 0.1 for each class a non-train split
    lacks; a split never gives its last group, and the seed breaks exact ties. When groups
    were moved, groups then move between the other splits (test to val, say) while that brings them closer
    to their shares, since the carves were sized for a train that held fewer rows. ``splits`` is changed in
    place; the groups that ended in train, as (split they came from, group), are returned, and a warning
    says what moved. When the
    splits run out of groups to give, train keeps fewer (``load_dataset`` then warns, and the folds of
    notebooks 04 / 05 stop before training: ``mmkit.data.checks.warn_train_groups``).

    Example:
        >>> recs = [Record(str(i), Path(f"{i}.jpg"), "t", "a", group="aabbcccc"[i]) for i in range(8)]
        >>> s = {"train": recs[:2], "test": recs[2:]}
        >>> fill_train_groups(s, {"train": 0.5, "test": 0.5}, 2)
        [('test', 'b')]
    """
    names = list(splits)
    train = names[0]
    total = sum(fractions.values())
    shares = {k: fractions.get(k, 0.0) / total for k in names}
    n = sum(len(v) for v in splits.values())
    rng = rng if rng is not None else np.random.default_rng(0)
    classes = {lab for v in splits.values() for r in v for lab in r.labels}
    groups: dict[str, dict[str, list[Record]]] = {k: {} for k in names}
    for k in names:
        for r in splits[k]:
            groups[k].setdefault(_group_key(r), []).append(r)

    def labels(recs: list[Record]) -> Counter:
        return Counter(lab for r in recs for lab in r.labels)

    have = {k: labels(splits[k]) for k in names}
    size = {k: len(splits[k]) for k in names}

    def score(ops: list[tuple[str, str, str]]) -> float:
        """How far the splits would be from their shares after moving the groups ``ops`` (src, dst, key)."""
        after, counts = dict(size), {k: Counter(have[k]) for k in names}
        for src, dst, key in ops:
            recs = groups[src][key]
            after[src] -= len(recs)
            after[dst] += len(recs)
            counts[src] -= labels(recs)
            counts[dst] += labels(recs)
        out = sum((after[k] / n - shares[k]) ** 2 / shares[k] for k in names if shares[k] > 0)
        return out + 0.1 * sum(len(classes - set(+counts[k])) for k in names[1:])

    def best(options: list[list[tuple[str, str, str]]]) -> Optional[tuple[float, list[tuple[str, str, str]]]]:
        scored = [(score(ops), float(rng.random()), ops) for ops in options]  # the seed breaks exact ties
        return min(scored, key=lambda t: t[:2])[::2] if scored else None  # type: ignore[return-value]

    def givers(dsts: list[str]) -> list[list[tuple[str, str, str]]]:
        """Single moves of a group to one of ``dsts``; a split keeps at least one group."""
        return [
            [(src, dst, key)]
            for src in names[1:]
            if len(groups[src]) >= 2
            for key in sorted(groups[src])
            for dst in dsts
            if dst != src
        ]

    def apply(ops: list[tuple[str, str, str]]) -> None:
        for src, dst, key in ops:
            recs = groups[src].pop(key)
            groups[dst][key] = recs
            splits[src] = [r for r in splits[src] if _group_key(r) != key]
            splits[dst] = splits[dst] + recs
            have[src] -= labels(recs)
            have[dst] += labels(recs)
            size[src] -= len(recs)
            size[dst] += len(recs)

    origin = {key: k for k in names for key in groups[k]}
    before = len(groups[train])
    moves: list[tuple[str, str]] = []
    while len(groups[train]) < min_groups and (pick := best(givers([train]))) is not None:
        apply(pick[1])
        moves.append((pick[1][0][0], pick[1][0][2]))
    # Greedy moves can overshoot (a big group first, then a small one where two small ones were right), and
    # the carves were sized for a train that held fewer rows: improve by moving groups between the other
    # splits, or by swapping a group moved into train for one of another split, while the score drops.
    polished = 0
    while moves and polished < n:
        moved_in = [key for _, key in moves if key in groups[train]]
        swaps = [
            [(train, src, a), (src, train, b)]
            for a in moved_in
            for src in names[1:]
            for b in sorted(groups[src])
        ]
        pick = best(givers(names[1:]) + swaps)
        if pick is None or pick[0] >= score([]) - 1e-12:
            break
        apply(pick[1])
        polished += 1
    moves = sorted((origin[key], key) for key in groups[train] if origin[key] != train)
    if moves:
        got = ", ".join(f"{k} {len(v) / n:.1%}" for k, v in splits.items())
        gave = Counter(name for name, _ in moves)
        warn(
            f"grouped split: train held {before} group(s), fewer than the {min_groups} that k-fold text "
            f"logits and cross-fitting need (min_train_groups); {len(moves)} group(s) moved into train ("
            + ", ".join(f"{c} from {name}" for name, c in gave.items())
            + (f"; {polished} more moves between splits to keep the shares" if polished else "")
            + ")"
            + f", so the row shares are now {got}",
            collect,
        )
    return moves


def _carve(
    records: list[Record],
    target: float,
    n_all: int,
    classes: list[str],
    cindex: dict[str, int],
    rng: np.random.Generator,
    candidates: int,
) -> set[int]:
    """Indices into ``records`` of the groups to carve off, about ``target`` rows (see ``grouped_split``)."""
    import warnings as _warnings

    from sklearn.model_selection import StratifiedGroupKFold

    keys = [_group_key(r) for r in records]
    gnames = sorted(set(keys))
    if len(gnames) < 2:
        return set()
    gidx = {g: i for i, g in enumerate(gnames)}
    g_of = np.array([gidx[k] for k in keys])
    counts = np.zeros((len(gnames), len(classes)), dtype=np.int64)  # rows of each class in each group
    for i, r in enumerate(records):
        for lab in r.labels:
            counts[g_of[i], cindex[lab]] += 1
    sizes = np.bincount(g_of, minlength=len(gnames))
    present = counts.sum(0) > 0
    spread = (counts > 0).sum(0) >= 2  # classes that can sit on both sides
    y = np.array([_primary_label(r) for r in records])
    k = int(np.clip(round(len(records) / max(target, 1.0)), 2, len(gnames)))
    scored: dict[bytes, tuple[float, np.ndarray]] = {}
    for _ in range(candidates):
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=int(rng.integers(2**31)))
        with _warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
            _warnings.simplefilter("ignore", UserWarning)
            try:
                folds = [np.unique(g_of[te]) for _, te in splitter.split(np.zeros(len(y)), y, g_of)]
            except ValueError:  # every class has fewer than k rows: it refuses; the prefixes below remain
                folds = []
        # StratifiedGroupKFold only shuffles groups of equal class mix, so with distinct groups its folds
        # barely change; random prefixes of a shuffled group order add candidates of the target size.
        perm = rng.permutation(len(gnames))
        j = int(np.searchsorted(np.cumsum(sizes[perm]), target))
        folds += [perm[:i] for i in (j, j + 1) if 0 < i < len(gnames)]
        for groups in folds:
            mask = np.zeros(len(gnames), dtype=bool)
            mask[groups] = True
            taken_counts = counts[mask].sum(0)
            left_counts = counts[~mask].sum(0)
            score = abs(sizes[mask].sum() - target) / n_all
            score += 10.0 * int(np.sum(present & (left_counts == 0)))  # train keeps every class
            score += 0.1 * int(np.sum(spread & (taken_counts == 0)))  # val/test hold every class they can
            scored.setdefault(mask.tobytes(), (score, mask))
    # The seed picks among the candidates within 1 point of the best (same classes kept): with a few
    # lumpy groups the best is often unique, but where several are about as good, seeds must move the split.
    best_score = min(sc for sc, _ in scored.values())
    near = [m for sc, m in sorted(scored.values(), key=lambda t: t[0]) if sc <= best_score + 0.01]
    best = near[int(rng.integers(len(near)))]
    return {i for i, g in enumerate(g_of) if best[g]}


def warn_split_shape(
    splits: dict[str, list[Record]],
    fractions: dict[str, float],
    records: list[Record],
    collect: Optional[list[str]] = None,
) -> None:
    """Warn when a grouped split is more than 5 points off its row share, or lacks a class of the data."""
    n = len(records)
    if not n:
        return
    total = sum(fractions.values())
    shares = {k: v / total for k, v in fractions.items()}
    classes = sorted({lab for r in records for lab in r.labels})
    problems = []
    for name, recs in splits.items():
        got = len(recs) / n
        if abs(got - shares.get(name, 0.0)) > 0.05 + 1e-9:
            problems.append(f"{name} has {got:.1%} of the rows for a share of {shares.get(name, 0):.1%}")
        if recs:
            missing = set(classes) - {lab for r in recs for lab in r.labels}
            if missing:
                problems.append(f"{name} lacks class(es) {sorted(missing)[:5]}")
    if problems:
        n_groups = len({_group_key(r) for r in records})
        warn(
            f"grouped split of {n} rows in {n_groups} groups: "
            + "; ".join(problems)
            + " (groups are indivisible: more, smaller groups give closer shares)",
            collect,
        )


# --- input checks shared by the readers -------------------------------------------------------------------


def decode_utf8(path: str | Path, raw: bytes, policy: ErrorPolicy) -> str:
    """``raw`` (the bytes of ``path``) as text; each line that is not UTF-8 is reported and left blank.

    A leading byte-order mark is dropped. A blanked line keeps the line numbers of the rest, so later errors
    still name the right line, and readers treat a blank line as no row.

    Example:
        >>> decode_utf8("t.csv", b"\\xef\\xbb\\xbfa.jpg,pie,x\\n", ErrorPolicy())
        'a.jpg,pie,x\\n'
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass  # some line is not UTF-8: find and report each one
    lines: list[str] = []
    offset = 0
    for i, line in enumerate(raw.splitlines(keepends=True), 1):
        try:
            lines.append(line.decode("utf-8-sig" if i == 1 else "utf-8"))
        except UnicodeDecodeError as e:
            policy.report(
                path,
                f"line {i}",
                f"bytes that are not UTF-8 ({line[e.start : e.start + 4]!r} at byte {offset + e.start})",
                "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            )
            lines.append("\n")
        offset += len(line)
    return "".join(lines)


_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"


def image_problem(path: Path, check: str = "fast") -> Optional[str]:
    """Why ``path`` is not a usable image, or None when it is.

    ``check="fast"`` opens the header and looks for the end marker (JPEG EOI / PNG IEND) near the end of the
    file, which catches truncated downloads without decoding every pixel; ``"full"`` decodes the image;
    ``"none"`` only checks that the file exists.

    Example:
        >>> image_problem(Path("/no/such.jpg"))
        'missing image'
    """
    if not path.is_file():
        return "missing image"
    if check == "none":
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            fmt = im.format
            if check == "full":
                im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"corrupt image: {type(e).__name__}: {e}"
    if check == "fast" and fmt in ("JPEG", "PNG"):
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - 4096))
            tail = f.read()
        marker = _JPEG_EOI if fmt == "JPEG" else _PNG_IEND
        if marker not in tail:
            return f"corrupt image: truncated {fmt} (no end marker)"
    return None


__all__ = [
    "SPLITS",
    "DataError",
    "Dataset",
    "ErrorPolicy",
    "Record",
    "Skipped",
    "decode_utf8",
    "DataWarning",
    "dominant_group",
    "fill_train_groups",
    "grouped_split",
    "hint",
    "image_problem",
    "repo_root",
    "stratified_split",
    "warn",
    "warn_split_shape",
]
