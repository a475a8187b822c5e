"""Any image + text dataset described by a manifest: a CSV with a header, or MMBT/MMF-style JSONL.

CSV: one row per sample with (by default) columns ``image``, ``text``, ``label`` and optionally ``split``
and a group column. JSONL: one object per line, e.g. ``{"id": 42, "img": "img/42.png", "text": "...",
"label": 1}`` (``img`` is used when ``image_col`` is absent). Image paths are relative to the manifest or
absolute. A label that is a list (JSONL) or contains ``multilabel_sep`` (CSV) makes the task multi-label.
Without a ``split`` column the splits are seeded: stratified by label, or grouped when ``group_col`` is set.

Example:
    >>> ds = read_manifest("memes/train.jsonl", seed=0)  # doctest: +SKIP
    >>> ds.classes  # doctest: +SKIP
    ['0', '1']
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal, Optional

from mmkit.data.records import (
    DataError,
    Dataset,
    ErrorPolicy,
    Record,
    decode_utf8,
    grouped_split,
    image_problem,
    stratified_split,
)

_SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}


def _read_rows(path: Path, policy: ErrorPolicy) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) pairs from a CSV (header required) or JSONL manifest."""
    text = decode_utf8(path, path.read_bytes(), policy)  # lines that are not UTF-8 come back blank
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for i, line in enumerate(io.StringIO(text, newline=""), 1):  # \n, \r, \r\n only, like csv
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                policy.report(
                    path, f"line {i}", f"malformed JSON: {e.msg}", "fix the line (one JSON object per line)"
                )
                continue
            if not isinstance(obj, dict):
                policy.report(path, f"line {i}", "not a JSON object", "write one {...} object per line")
                continue
            rows.append((f"line {i}", obj))
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for obj in reader:
        where = f"row {reader.line_num}"
        if None in obj or any(v is None for v in obj.values()):
            policy.report(
                path, where, f"wrong number of columns (header has {len(header)})", "quote fields with commas"
            )
            continue
        rows.append((where, obj))
    return rows


def read_manifest(
    path: str | Path,
    image_col: str = "image",
    text_col: str = "text",
    label_col: str = "label",
    group_col: Optional[str] = None,
    split_col: str = "split",
    id_col: str = "id",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    multilabel_sep: Optional[str] = None,
    seed: int = 0,
    on_error: Literal["raise", "skip"] = "raise",
    check_images: Literal["fast", "full", "none"] = "fast",
) -> Dataset:
    """Read a CSV or JSONL manifest into a ``Dataset``.

    Splits come from ``split_col`` when the manifest has it (train / val|valid|dev / test); otherwise test
    and then val are carved off, seeded, grouped by ``group_col`` when set, else stratified by label.

    Example:
        >>> ds = read_manifest("data.csv", group_col="patient", seed=1)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "manifest file not found", "pass the CSV or JSONL file as data_root")
    policy = ErrorPolicy(on_error)
    rows = _read_rows(path, policy)
    if not rows:
        raise DataError(path, None, "no rows", "a manifest needs one row (CSV) or line (JSONL) per sample")
    keys = set().union(*(r.keys() for _, r in rows))
    if image_col not in keys and image_col == "image" and "img" in keys:
        image_col = "img"  # MMF / MMBT JSONL
    missing = [c for c in (image_col, text_col, label_col) if c not in keys]
    if missing:
        raise DataError(
            path,
            None,
            f"missing columns {missing} (has {sorted(keys)})",
            "rename them or pass image_col= etc.",
        )
    records: list[Record] = []
    split_of: dict[str, str] = {}
    multilabel = False
    seen: set[str] = set()
    for where, row in rows:
        image, text, label = row.get(image_col), row.get(text_col), row.get(label_col)
        if label is None or label == "" or label == []:
            policy.report(path, where, "missing label", "fill in the label (unlabelled rows can't be used)")
            continue
        if isinstance(label, list):
            multilabel, label = True, [str(v) for v in label]
        elif multilabel_sep and multilabel_sep in str(label):
            multilabel, label = True, [v.strip() for v in str(label).split(multilabel_sep) if v.strip()]
        else:
            label = str(label)
        text = "" if text is None else " ".join(str(text).split())
        if not text:
            policy.report(path, where, "empty text", "fill in the text or remove the row")
            continue
        if not image:
            policy.report(path, where, "no image path", "fill in the image column")
            continue
        img_path = Path(str(image)).expanduser()
        img_path = img_path if img_path.is_absolute() else path.parent / img_path
        problem = image_problem(img_path, check_images)
        if problem:
            policy.report(img_path, f"{path.name} {where}", problem, "restore the image or remove its row")
            continue
        rid = str(row[id_col]) if row.get(id_col) not in (None, "") else str(image)
        if rid in seen:
            policy.report(path, where, f"duplicate id {rid!r}", "give every sample its own id / image")
            continue
        seen.add(rid)
        group = str(row[group_col]) if group_col and row.get(group_col) not in (None, "") else None
        if group_col and group is None:
            policy.report(path, where, f"empty group column {group_col!r}", "fill it in")
            continue
        rec = Record(rid, img_path, text, label, group, {"where": where})
        if split_col in keys:
            name = _SPLIT_NAMES.get(str(row.get(split_col, "")).strip().lower())
            if name is None:
                policy.report(path, where, f"unknown split {row.get(split_col)!r}", "use train, val or test")
                continue
            split_of[rid] = name
        records.append(rec)
    if multilabel:  # mixed rows: a single label is a one-element list
        for r in records:
            r.label = r.labels
    if split_col in keys:
        splits = {k: [r for r in records if split_of[r.id] == k] for k in ("train", "val", "test")}
    elif group_col:
        rest = 1.0 - val_fraction - test_fraction
        splits = grouped_split(records, {"train": rest, "val": val_fraction, "test": test_fraction}, seed)
    else:
        rest, test = stratified_split(records, test_fraction, seed)
        train, val = stratified_split(rest, val_fraction / max(1e-9, 1 - test_fraction), seed)
        splits = {"train": train, "val": val, "test": test}
    classes = sorted({lab for r in splits["train"] for lab in r.labels}, key=_natural)
    for name in ("val", "test"):
        kept = []
        for r in splits[name]:
            unknown = [lab for lab in r.labels if lab not in classes]
            if unknown:
                policy.report(
                    path,
                    r.meta["where"],
                    f"label {unknown[0]!r} ({name}) is not in train",
                    "add training samples",
                )
                continue
            kept.append(r)
        splits[name] = kept
    policy.log_summary(str(path))
    return Dataset(
        name=path.stem,
        classes=classes,
        splits=splits,
        task="multilabel" if multilabel else "multiclass",
        skipped=policy.skipped,
        meta={"manifest": str(path), "seed": seed},
    )


def _natural(label: str) -> tuple:
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


__all__ = ["read_manifest"]
