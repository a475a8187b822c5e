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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

log = logging.getLogger("mmkit.data")

SPLITS = ("train", "val", "test")


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
            raise DataError(file, where, problem, fix)
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
    records: list[Record], val_fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Carve a validation split from ``records``, stratified by label where every class allows it.

    Classes with a single sample cannot be stratified; they stay in train (never dropped).
    """
    from sklearn.model_selection import train_test_split

    if not records or val_fraction <= 0:
        return list(records), []
    labels = [_primary_label(r) for r in records]
    counts = Counter(labels)
    strat = labels if min(counts.values()) >= 2 and int(len(records) * val_fraction) >= len(counts) else None
    idx = np.arange(len(records))
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=strat)
    return [records[i] for i in sorted(tr)], [records[i] for i in sorted(va)]


def grouped_split(records: list[Record], fractions: dict[str, float], seed: int) -> dict[str, list[Record]]:
    """Split by ``Record.group`` so that no group lands in two splits.

    ``fractions`` maps split name to the share of *groups* it gets, e.g. ``{"train": .7, "val": .15,
    "test": .15}``; every split with a positive share gets at least one group when there are enough.
    """
    groups = sorted({r.group if r.group is not None else r.id for r in records})
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    names = list(fractions)
    total = sum(fractions.values())
    n = len(order)
    sizes = [int(round(fractions[k] / total * n)) for k in names]
    # Every split with a positive share gets at least one group when there are enough groups.
    for i, k in enumerate(names):
        if fractions[k] > 0 and sizes[i] == 0 and n >= len(names):
            sizes[i] = 1
    while sum(sizes) > n:
        sizes[int(np.argmax(sizes))] -= 1
    sizes[0] += n - sum(sizes)
    assign: dict[str, str] = {}
    start = 0
    for k, size in zip(names, sizes):
        for g in order[start : start + size]:
            assign[g] = k
        start += size
    out: dict[str, list[Record]] = {k: [] for k in names}
    for r in records:
        out[assign[r.group if r.group is not None else r.id]].append(r)
    return out


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
    "grouped_split",
    "image_problem",
    "stratified_split",
]
