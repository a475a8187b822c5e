"""Any image + text dataset described by a manifest: a CSV with a header, MMBT/MMF-style JSONL, or Parquet.

CSV / Parquet: one row per sample with (by default) columns ``image``, ``text``, ``label`` and optionally
``split``, ``id`` and a group column. JSONL: one object per line, e.g. ``{"id": 42, "img": "img/42.png",
"text": "...", "label": 1}`` (``img`` is used when ``image_col`` is absent). Image paths are relative to the
manifest or absolute; an image stored *in* the manifest (Parquet bytes, a Hugging Face image dict) is
written once, content-addressed, under ``image_cache`` (default ``<repo>/data/image_cache``). A label that is
a list (JSONL, Parquet) or contains ``multilabel_sep`` (CSV) makes the task multi-label.

Several rows may share one image (several captions per photo, tweets that carry the same picture): ids are
then made unique per row, and the seeded split groups rows by image (or merges ``group_col`` groups that
share an image), so one image never lands in two splits. Without a ``split`` column the splits are seeded:
grouped when there are groups, else stratified by label.

Example:
    >>> ds = read_manifest("memes/train.jsonl", seed=0)  # doctest: +SKIP
    >>> ds.classes  # doctest: +SKIP
    ['0', '1']
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Optional

from mmkit.data.records import (
    DataError,
    Dataset,
    ErrorPolicy,
    Record,
    decode_utf8,
    grouped_split,
    hint,
    image_problem,
    repo_root,
    stratified_split,
    warn,
)

_SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}
_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


def default_image_cache() -> Path:
    """Where images stored as bytes are written as files when ``image_cache`` is None:
    ``$MMKIT_CACHE/image_cache`` when the environment sets ``MMKIT_CACHE`` (the one cache folder mmkit's
    feature banks use too), else ``<repo>/data/image_cache`` beside the synthetic data."""
    cache = os.environ.get("MMKIT_CACHE")
    return Path(cache) / "image_cache" if cache else repo_root() / "data" / "image_cache"


def _plain(value: Any) -> Any:
    """A Parquet cell as plain Python: NaN becomes None (arrays become lists, numpy scalars Python ones)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _read_rows(path: Path, policy: ErrorPolicy) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(where, row) pairs and the column names of a CSV (header required), JSONL or Parquet manifest."""
    suffix = path.suffix.lower()
    rows: list[tuple[str, dict[str, Any]]] = []
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise DataError(
                path, None, f"reading Parquet needs pyarrow ({e})", "pip install 'mmkit[hf]' (or pyarrow)"
            ) from e
        # pyarrow's rows, not pandas': an int column with a null stays int (pandas makes it float64,
        # and the classes would read '0.0', '1.0' where the same file as CSV gives '0', '1')
        table = pq.read_table(path)
        columns = [str(c) for c in table.column_names]
        for i, row in enumerate(table.to_pylist(), 1):
            rows.append((f"row {i}", {str(k): _plain(v) for k, v in row.items()}))
        return rows, columns
    text = decode_utf8(path, path.read_bytes(), policy)  # lines that are not UTF-8 come back blank
    if suffix in (".jsonl", ".ndjson", ".json"):
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
        return rows, sorted(set().union(*(r.keys() for _, r in rows))) if rows else []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or [])
    for obj in reader:
        where = f"row {reader.line_num}"
        if None in obj or any(v is None for v in obj.values()):
            policy.report(
                path, where, f"wrong number of columns (header has {len(header)})", "quote fields with commas"
            )
            continue
        rows.append((where, obj))
    return rows, header


def store_image(value: Any, cache: Path) -> Path:
    """Write an image held in memory (bytes, ``{"bytes": ...}``, a PIL image) once under ``cache``.

    The file is named by a hash of its bytes (``<cache>/<2 hex>/<hash>.<ext>``), so rereading the data, or
    another dataset holding the same picture, reuses it; the write is atomic.

    Example:
        >>> store_image({"bytes": open("a.png", "rb").read(), "path": None}, Path("/tmp/c"))  # doctest: +SKIP
        PosixPath('/tmp/c/3f/3f0c...png')
    """
    from PIL import Image

    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        value = buf.getvalue()
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"not an image: {type(value).__name__}")
    data = bytes(value)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            suffix = _FORMAT_SUFFIX.get(im.format or "", ".img")
    except Exception:  # not an image: image_problem reports it on the written file
        suffix = ".img"
    path = cache / digest[:2] / f"{digest}{suffix}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def _image_path(value: Any, base: Path, cache: Path) -> tuple[Optional[Path], str]:
    """The image file of a row and how to name it in an id ('' when the row has no image)."""
    if isinstance(value, dict) and value.get("bytes") is None:
        value = value.get("path")  # an image dict that points at a file
    if value is None or value == "" or value == {}:
        return None, ""
    if isinstance(value, (str, os.PathLike)):
        p = Path(value).expanduser()
        return (p if p.is_absolute() else base / p), str(value)
    p = store_image(value, cache)
    return p, p.name


def _close(name: str, columns: list[str]) -> str:
    near = difflib.get_close_matches(name, columns, n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


def rows_to_dataset(
    source: str | Path,
    name: str,
    rows: list[tuple[str, dict[str, Any]]],
    columns: list[str],
    base: Path,
    policy: ErrorPolicy,
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
    check_images: Literal["fast", "full", "none"] = "fast",
    image_cache: Optional[str | Path] = None,
    min_train_groups: int = 0,
) -> Dataset:
    """Turn manifest-like rows into a ``Dataset`` (shared by ``read_manifest`` and ``read_hf``)."""
    if not rows:
        raise DataError(source, None, "no rows", "a manifest needs one row (CSV) or line (JSONL) per sample")
    if image_col not in columns and image_col == "image" and "img" in columns:
        image_col = "img"  # MMF / MMBT JSONL
    for option, col in (("image_col", image_col), ("text_col", text_col), ("label_col", label_col)):
        if col not in columns:
            raise DataError(
                source,
                None,
                f"column {col!r} ({option}) is missing{_close(col, columns)}; the columns are {columns}",
                f"rename the column, or {hint(option, '<column name>')}",
            )
    if group_col and group_col not in columns:
        raise DataError(
            source,
            None,
            f"group column {group_col!r} (group_col) is missing{_close(group_col, columns)}; "
            f"the columns are {columns}",
            f"{hint('group_col', '<column name>')}, or group_col=None for no groups",
        )
    cache = Path(image_cache).expanduser() if image_cache else default_image_cache()
    warnings_: list[str] = []
    kept: list[tuple[str, dict[str, Any], Path, str, str, str | list[str]]] = []
    multilabel = False
    problems: dict[Path, Optional[str]] = {}
    for where, row in rows:
        label = row.get(label_col)
        if label is None or label == "" or label == []:
            policy.report(source, where, "missing label", "fill in the label (unlabelled rows can't be used)")
            continue
        if isinstance(label, (list, tuple)):
            multilabel, label = True, [str(v) for v in label]
        elif multilabel_sep and multilabel_sep in str(label):
            multilabel, label = True, [v.strip() for v in str(label).split(multilabel_sep) if v.strip()]
        else:
            label = str(label)
        text = row.get(text_col)
        text = "" if text is None else " ".join(str(text).split())
        if not text:
            policy.report(source, where, "empty text", "fill in the text or remove the row")
            continue
        try:
            img_path, img_name = _image_path(row.get(image_col), base, cache)
        except TypeError as e:
            policy.report(source, where, f"image column {image_col!r}: {e}", "give a path or image bytes")
            continue
        if img_path is None:
            policy.report(source, where, "no image path", "fill in the image column")
            continue
        if img_path not in problems:  # a shared image is checked once
            problems[img_path] = image_problem(img_path, check_images)
        if problems[img_path]:
            policy.report(
                img_path,
                f"{Path(str(source)).name} {where}",
                problems[img_path],
                "restore the image or remove its row",
            )
            continue
        kept.append((where, row, img_path, img_name, text, label))

    # Ids: the id column when there is one; else the image name, made unique per row where images repeat.
    uses = Counter(k[2] for k in kept)
    records: list[Record] = []
    split_of: dict[str, str] = {}
    seen: set[str] = set()
    for where, row, img_path, img_name, text, label in kept:
        if row.get(id_col) not in (None, ""):
            rid = str(row[id_col])
        else:
            rid = img_name if uses[img_path] == 1 else f"{img_name} ({where})"
        if rid in seen:
            policy.report(
                source, where, f"duplicate id {rid!r} in column {id_col!r}", "give every row its own id"
            )
            continue
        group = None
        if group_col:
            value = row.get(group_col)
            if value in (None, ""):
                policy.report(source, where, f"empty group column {group_col!r}", "fill it in")
                continue
            group = str(value)
        if split_col in columns:
            split = _SPLIT_NAMES.get(str(row.get(split_col, "")).strip().lower())
            if split is None:
                policy.report(
                    source, where, f"unknown split {row.get(split_col)!r} in column {split_col!r}",
                    "use train, val (valid, validation, dev) or test",
                )  # fmt: skip
                continue
            split_of[rid] = split
        seen.add(rid)
        records.append(Record(rid, img_path, text, label, group, {"where": where, "image": img_name}))
    if multilabel:  # mixed rows: a single label is a one-element list
        for r in records:
            r.label = r.labels
    grouped_by = _group_shared_images(records, group_col, warnings_, source, split_col not in columns)
    fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    carves_test = split_col not in columns or not any(split_of[r.id] == "test" for r in records)
    if test_fraction <= 0 and carves_test and records:
        raise ValueError(
            f"{source}: test_fraction={test_fraction} leaves no test split (the data gives none, so it is "
            f"carved from the rows); {hint('test_fraction', 0.2)}"
        )
    if split_col in columns:
        splits = {k: [r for r in records if split_of[r.id] == k] for k in ("train", "val", "test")}
        given = "the dataset's splits" if split_col.startswith("__mmkit") else f"column {split_col!r}"
        for name in (
            "test",
            "val",
        ):  # a split the column doesn't give is carved from train, as Food-101's val
            if not splits[name] and splits["train"] and fractions[name] > 0:
                splits["train"], splits[name] = _carve(
                    splits["train"], fractions[name], grouped_by, seed, name, warnings_, min_train_groups
                )
                warn(
                    f"{source}: {given} give no {name} rows; {name} is carved from train "
                    f"({len(splits[name])} rows, {name}_fraction={fractions[name]} of the training rows)",
                    warnings_,
                )
    elif grouped_by:
        splits = grouped_split(records, fractions, seed, collect=warnings_, min_train_groups=min_train_groups)
    else:
        rest, test = stratified_split(records, test_fraction, seed, warnings_)
        train, val = stratified_split(rest, val_fraction / max(1e-9, 1 - test_fraction), seed, warnings_)
        splits = {"train": train, "val": val, "test": test}
    classes = sorted({lab for r in splits["train"] for lab in r.labels}, key=_natural)
    for split in ("val", "test"):
        kept_recs = []
        for r in splits[split]:
            unknown = [lab for lab in r.labels if lab not in classes]
            if unknown:
                policy.report(
                    source, r.meta["where"], f"label {unknown[0]!r} ({split}) is not in train", "add training samples"
                )  # fmt: skip
                continue
            kept_recs.append(r)
        splits[split] = kept_recs
    policy.log_summary(str(source))
    return Dataset(
        name=name,
        classes=classes,
        splits=splits,
        task="multilabel" if multilabel else "multiclass",
        skipped=policy.skipped,
        meta={
            "source": str(source),
            "seed": seed,
            "grouped_by": grouped_by,
            "groups_per_split": {
                k: len({r.group for r in v}) if grouped_by else len(v) for k, v in splits.items()
            },
            "n_shared_images": sum(n > 1 for n in uses.values()),
            "warnings": warnings_,
            "text_cleaning": "whitespace",  # runs of whitespace collapsed: predict-time texts get the same
        },
    )


def _carve(
    records: list[Record],
    fraction: float,
    grouped: Optional[str],
    seed: int,
    name: str,
    collect: list[str],
    min_train_groups: int = 0,
):
    """``name``'s rows carved from train; the split's warnings go to ``collect`` (``ds.meta["warnings"]``)."""
    if grouped:
        s = grouped_split(
            records,
            {"train": 1 - fraction, name: fraction},
            seed,
            collect=collect,
            min_train_groups=min_train_groups,
        )
        return s["train"], s[name]
    return stratified_split(records, fraction, seed, collect)


def _group_shared_images(
    records: list[Record],
    group_col: Optional[str],
    warnings_: list[str],
    source: str | Path,
    announce: bool = True,
) -> Optional[str]:
    """Make rows that share an image share a group; returns what the split groups by (None: no groups).

    Without ``group_col``, rows whose image repeats are grouped by image. With it, groups that share an
    image are merged (union-find), since a group column that puts one photo in two groups would otherwise
    let the photo sit in train and test.
    """
    by_image: dict[Path, list[Record]] = {}
    for r in records:
        by_image.setdefault(r.image_path, []).append(r)
    n_shared = sum(len(v) > 1 for v in by_image.values())
    if not group_col:
        if not n_shared:
            return None
        for r in records:
            r.group = str(r.image_path)
        if announce:
            warn(
                f"{source}: {n_shared} images are used by more than one row; the split groups rows by image "
                f"so that an image never sits in two splits ({len(by_image)} groups for {len(records)} rows). "
                f"To group by a column instead, {hint('group_col', '<column name>')}",
                warnings_,
            )
        return "image"
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.setdefault(g, g) != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for recs in by_image.values():
        first = find(recs[0].group)  # type: ignore[arg-type]
        for r in recs[1:]:
            other = find(r.group)  # type: ignore[arg-type]
            if other != first:
                parent[max(first, other)] = min(first, other)
                first = min(first, other)
    merged = {g for g in parent if find(g) != g}
    if merged:
        for r in records:
            r.meta["group_value"] = r.group
            r.group = find(r.group)  # type: ignore[arg-type]
        warn(
            f"{source}: {len(merged)} {group_col!r} groups share an image with another group and were merged "
            f"into it, so that an image never sits in two splits",
            warnings_,
        )
    return group_col


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
    image_cache: Optional[str | Path] = None,
    min_train_groups: int = 0,
) -> Dataset:
    """Read a CSV, JSONL or Parquet manifest into a ``Dataset``.

    Splits come from ``split_col`` when the manifest has it (train / val|valid|dev / test; a split it lacks
    is carved from train: ``val_fraction`` / ``test_fraction`` of the training rows). Otherwise test and then
    val are carved off, seeded, at the row shares ``test_fraction`` and ``val_fraction``: grouped by
    ``group_col`` (or by image, when images repeat), else stratified by label. A grouped split keeps at
    least ``min_train_groups`` groups in train when the data has enough (k-fold text logits need k), moving
    the fewest groups from val / test (``grouped_split``); ``ds.meta["groups_per_split"]`` counts them.

    Example:
        >>> ds = read_manifest("data.csv", group_col="patient", seed=1)  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            path,
            None,
            "manifest file not found",
            "point the notebook parameter data_root at the CSV, JSONL or Parquet file "
            "(Python: read_manifest(path), or DataConfig(data_root=...))",
        )
    policy = ErrorPolicy(on_error)
    rows, columns = _read_rows(path, policy)
    return rows_to_dataset(
        path,
        path.stem,
        rows,
        columns,
        path.parent,
        policy,
        image_col=image_col,
        text_col=text_col,
        label_col=label_col,
        group_col=group_col,
        split_col=split_col,
        id_col=id_col,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        multilabel_sep=multilabel_sep,
        seed=seed,
        check_images=check_images,
        image_cache=image_cache,
        min_train_groups=min_train_groups,
    )


def _natural(label: str) -> tuple:
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


__all__ = ["default_image_cache", "read_manifest", "rows_to_dataset", "store_image"]
