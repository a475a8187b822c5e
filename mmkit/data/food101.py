"""UPMC Food-101: web images with the title of the page they came from.

On disk::

    root/images/{train,test}/<class>/<file>.jpg
    root/texts/{train,test}_titles.csv      # NO header; columns: image file, page title, class

The published notebooks read the title files with a header, so the first row vanished, and joined text to
images by position. Here every row is kept, titles are cleaned, and text meets image by file name: rows
whose image is missing and images that no row names are reported (raise, or skip and list).

Example:
    >>> ds = read_upmc_food101("data/upmc_food101")  # doctest: +SKIP
    >>> ds.summary()  # doctest: +SKIP
    {'train': 61175, 'val': 6797, 'test': 22716}
"""

from __future__ import annotations

import csv
import html
import html.entities
import io
import re
from pathlib import Path
from typing import Literal, Optional

from mmkit.data.records import (
    DataError,
    Dataset,
    ErrorPolicy,
    Record,
    decode_utf8,
    image_problem,
    stratified_split,
)
from mmkit.progress import progress

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
_BYTE_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_HEADER_WORDS = {"image", "img", "file", "filename", "image_file", "path", "title", "text", "label", "class"}


def _decode_escapes(match: re.Match) -> str:
    raw = bytes(int(h, 16) for h in match.group(0).split("\\x")[1:])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # not UTF-8 bytes: each escape stands for one Latin-1 character


_WRAP_START = re.compile(r"""^(?:\[+\s*["']|\[\[)""")  # [[" / [' / [[ left by the scraper
_WRAP_END = re.compile(r"""(?:["']\s*\]+|\]\])$""")  # "]] / '] / ]]
_ENTITY_LIKE = re.compile(r"&([A-Za-z][A-Za-z0-9]{0,15});")


def _broken_entity(match: re.Match) -> str:
    # html.unescape left it, so it is no entity: "F&W;" was "F&W" before a cleaner added the ";".
    return match.group(0) if f"{match.group(1)};" in html.entities.html5 else f"&{match.group(1)}"


def clean_title(title: str) -> str:
    """Undo the scraping artefacts of UPMC Food-101 titles.

    Removes ``[["..."]]`` / ``['...']`` wrappers (also when only one end survived, e.g. a trailing ``']``),
    decodes HTML entities (twice-escaped ones like ``&amp;rsquo;`` too) and literal byte escapes like
    ``\\xe2\\x80\\x99`` into real characters, repairs mojibake (UTF-8 read as cp1252: ``â€™`` -> ``’``,
    with ftfy), drops the ``;`` of things that only look like entities (``F&W;`` -> ``F&W``), and collapses
    runs of white space.

    Example:
        >>> clean_title('[["Mom&amp;rsquo;s Pie \\\\xe2\\\\x80\\\\x93 best"]]')
        'Mom’s Pie – best'
        >>> clean_title("Donâ€™t miss: F&W; recipes |']")
        'Don’t miss: F&W recipes |'
    """
    import ftfy

    t = title.strip()
    for _ in range(2):  # a wrapper can be nested in a quote: [["'...'"]]
        t = _WRAP_END.sub("", _WRAP_START.sub("", t).lstrip()).rstrip()
    for _ in range(3):  # entities escaped more than once (&amp;rsquo;) need more than one pass
        unescaped = html.unescape(t)
        if unescaped == t:
            break
        t = unescaped
    t = _BYTE_ESCAPES.sub(_decode_escapes, t)
    t = ftfy.fix_encoding(t)
    t = _ENTITY_LIKE.sub(_broken_entity, t)
    return " ".join(t.split())


def _looks_like_header(row: list[str]) -> bool:
    first = row[0].strip().lower()
    return not first.endswith(IMAGE_SUFFIXES) and any(c.strip().lower() in _HEADER_WORDS for c in row)


def read_titles(path: str | Path, policy: Optional[ErrorPolicy] = None) -> list[tuple[int, str, str, str]]:
    """Rows ``(row_number, file, title, label)`` of a header-less title CSV; every row is kept.

    Row numbers start at 1 (the first line of the file). Raises (or, under ``on_error="skip"``, skips and
    lists) rows with the wrong number of columns, a header line, bytes that are not UTF-8, or no image file
    name.

    Example:
        >>> rows = read_titles("texts/test_titles.csv")  # doctest: +SKIP
        >>> rows[0]  # doctest: +SKIP
        (1, 'apple_pie_175.jpg', 'My Apple Pie Recipe', 'apple_pie')
    """
    path = Path(path)
    policy = policy or ErrorPolicy("raise")
    if not path.is_file():
        raise DataError(
            path,
            None,
            "title file not found",
            "check the notebook parameter data_root (Python: read_upmc_food101(root), or DataConfig(data_root=...)); "
            "it must hold texts/{train,test}_titles.csv",
        )
    text = decode_utf8(path, path.read_bytes(), policy)  # lines that are not UTF-8 come back blank
    rows: list[tuple[int, str, str, str]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    for cols in reader:
        row_no = reader.line_num  # physical line where this row ends (titles may hold quoted newlines)
        if not cols or (len(cols) == 1 and not cols[0].strip()):
            continue  # a blank line is no row
        if len(cols) != 3:
            policy.report(
                path,
                f"row {row_no}",
                f"wrong number of columns: {len(cols)} (expected 3: image file, title, class)",
                "quote titles that contain commas, or fix the row",
            )
            continue
        if not rows and _looks_like_header(cols):
            policy.report(
                path,
                f"row {row_no}",
                f"looks like a header line {cols!r}",
                "title files have no header: delete the first line (every row is a sample)",
            )
            continue
        file, title, label = (c.strip() for c in cols)
        if not file.lower().endswith(IMAGE_SUFFIXES):
            policy.report(
                path, f"row {row_no}", f"first column {file!r} is not an image file name", "fix the row"
            )
            continue
        rows.append((row_no, file, title, label))
    return rows


def _index_images(folder: Path) -> dict[str, list[Path]]:
    """file name -> its paths under ``folder/<class>/`` (one name may sit in several class folders)."""
    out: dict[str, list[Path]] = {}
    if folder.is_dir():
        for p in sorted(folder.glob("*/*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                out.setdefault(p.name, []).append(p)
    return out


def _read_split(
    root: Path, split: str, policy: ErrorPolicy, check_images: str, known: Optional[set[str]]
) -> list[Record]:
    csv_path = root / "texts" / f"{split}_titles.csv"
    rows = read_titles(csv_path, policy)
    images = _index_images(root / "images" / split)
    seen: dict[str, int] = {}
    used: set[Path] = set()
    records: list[Record] = []
    for row_no, file, raw_title, label in progress(rows, desc=f"food101 {split}", leave=False, mininterval=1):
        where = f"row {row_no} ({file})"
        if file in seen:
            policy.report(
                csv_path, where, f"duplicate image file (also row {seen[file]})", "keep one row per image"
            )
            continue
        seen[file] = row_no
        title = clean_title(raw_title)
        if not title:
            policy.report(csv_path, where, "empty text", "fill in the title or remove the row")
            continue
        if not label:
            policy.report(csv_path, where, "empty class", "fill in the class column")
            continue
        if known is not None and label not in known:
            policy.report(
                csv_path,
                where,
                f"label {label!r} is not in train",
                "add training samples of that class or drop these test rows",
            )
            continue
        # The row's class folder first: the same file name may also sit in another class's folder.
        path = root / "images" / split / label / file
        if not path.is_file() and images.get(file):
            path = images[file][0]
        problem = image_problem(path, check_images)
        if problem:
            policy.report(
                path, f"{csv_path.name} {where}", problem, "restore the image file or remove its row"
            )
            continue
        if path.parent.name != label:
            policy.report(
                csv_path,
                where,
                f"class {label!r} but the image is in folder {path.parent.name!r}",
                "fix the class column or move the image",
            )
            continue
        meta = {"file": file, "row": row_no, "raw_title": raw_title}
        records.append(Record(f"{split}/{file}", path, title, label, None, meta))
        used.add(path)
    for file, paths in sorted(images.items()):
        used_folder = next((p.parent.name for p in paths if p in used), None)
        for p in paths:
            if p in used or (file in seen and used_folder is None):
                continue  # read, or named by a row that was itself reported
            if file in seen:
                problem = (
                    f"the same file name is in class folder {used_folder!r}, which row {seen[file]} of "
                    f"{csv_path.name} uses; this copy has no row"
                )
                fix = "rename or remove one of the files (file names must be unique across class folders)"
            else:
                problem = f"image has no row in {csv_path.name}"
                fix = "add its title row or move the image out of images/"
            policy.report(p, None, problem, fix)
    return records


def _read_split_file(path: Path, train: list[Record]) -> tuple[list[Record], list[Record]]:
    """Val = the train images listed in ``path`` (one file name per line, ``#`` comments allowed)."""
    names = [ln.split("#")[0].strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    names = [Path(n).name for n in names if n]
    by_file = {r.meta["file"]: r for r in train}
    unknown = [n for n in names if n not in by_file]
    if unknown:
        raise DataError(
            path,
            None,
            f"{len(unknown)} names are not training images (first: {unknown[0]!r})",
            "list file names from texts/train_titles.csv, one per line",
        )
    val_names = set(names)
    return [r for r in train if r.meta["file"] not in val_names], [
        r for r in train if r.meta["file"] in val_names
    ]


def read_upmc_food101(
    root: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    split_file: Optional[str | Path] = None,
    on_error: Literal["raise", "skip"] = "raise",
    check_images: Literal["fast", "full", "none"] = "fast",
) -> Dataset:
    """Read UPMC Food-101 (or a synthetic copy in the same layout) into a ``Dataset``.

    Validation is carved from train, stratified by class and seeded (``val_fraction``), or taken from
    ``split_file`` (train image file names, one per line). ``check_images="fast"`` catches missing, corrupt
    and truncated images without decoding them all; ``"full"`` decodes every image.

    Example:
        >>> ds = read_upmc_food101("data/synthetic_food101", seed=0)  # doctest: +SKIP
        >>> ds.classes[:2], ds.records("train")[0].text  # doctest: +SKIP
    """
    root = Path(root)
    if not (root / "texts").is_dir() or not (root / "images").is_dir():
        raise DataError(
            root,
            None,
            "not a UPMC Food-101 folder (needs images/ and texts/)",
            "point the notebook parameter data_root (Python: read_upmc_food101(root), or DataConfig(data_root=...)) "
            "at the folder holding images/{train,test} and texts/{train,test}_titles.csv",
        )
    policy = ErrorPolicy(on_error)
    warnings_: list[str] = []
    train = _read_split(root, "train", policy, check_images, None)
    classes = sorted({r.label for r in train})
    test = _read_split(root, "test", policy, check_images, set(classes))
    if split_file is not None:
        train, val = _read_split_file(Path(split_file), train)
    else:
        train, val = stratified_split(train, val_fraction, seed, warnings_)
    policy.log_summary(str(root))
    return Dataset(
        name="upmc_food101",
        classes=classes,
        splits={"train": train, "val": val, "test": test},
        task="multiclass",
        skipped=policy.skipped,
        meta={
            "root": str(root),
            "seed": seed,
            "val_fraction": val_fraction,
            "split_file": split_file,
            "warnings": warnings_,
        },
    )


__all__ = ["clean_title", "read_titles", "read_upmc_food101"]
