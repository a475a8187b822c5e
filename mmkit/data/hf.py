"""A Hugging Face ``datasets`` dataset (a ``save_to_disk`` folder, or a hub name) as mmkit records.

Each example becomes one manifest row and goes through the manifest reader's checks, ids and splits
(``rows_to_dataset``). Column names are options (``image_col``, ``text_col``, ``label_col``, ...). A
``ClassLabel`` label becomes its class name; a sequence of them makes the task multi-label. Images held in
the dataset (an ``Image`` feature, raw bytes, PIL images) are written once, as files named by the hash of
their bytes, under ``image_cache`` (default ``<repo>/data/image_cache``); the loader then reads those files
like any others. A ``DatasetDict`` gives the splits (train / validation|valid|dev / test); a split it lacks
is carved from train, seeded, and a part under any other name ("unsupervised") is left out with a warning.

Example:
    >>> ds = read_hf("data/my_hf_set", image_col="image", text_col="caption", label_col="label")  # doctest: +SKIP
    >>> ds.summary()  # doctest: +SKIP
    {'train': 700, 'val': 100, 'test': 200}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from mmkit.data.manifest import _SPLIT_NAMES, rows_to_dataset
from mmkit.data.records import DataError, Dataset, ErrorPolicy, hint, warn

SPLIT_COLUMN = "__mmkit_split"  # the DatasetDict split of a row, when the dataset has no split column


def _load(name: str):
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            name, None, "dataset='hf' needs the datasets package", "pip install 'mmkit[hf]'"
        ) from e
    path = Path(name).expanduser()
    if path.exists():
        try:
            return datasets.load_from_disk(str(path)), path
        except Exception as e:  # not a save_to_disk folder
            raise DataError(
                path,
                None,
                f"not a folder written by Dataset.save_to_disk ({type(e).__name__}: {e})",
                "point the notebook parameter hf_dataset (Python: hf_dataset=) at a save_to_disk folder",
            ) from e
    try:
        return datasets.load_dataset(name), Path.cwd()
    except Exception as e:
        raise DataError(
            name,
            None,
            f"no such local folder, and the hub gave {type(e).__name__}: {e}",
            "set the notebook parameter hf_dataset (Python: hf_dataset=) to a save_to_disk folder, or to a hub "
            "name on a machine with network access (HF_HUB_OFFLINE unset)",
        ) from e


def _label_names(feature: Any) -> Optional[list[str]]:
    """Class names of a ``ClassLabel`` feature, or of the ``ClassLabel`` inside a sequence feature."""
    import datasets

    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:
        inner = feature[0]
    for f in (feature, inner):
        if isinstance(f, datasets.ClassLabel):
            return list(f.names)
    return None


def read_hf(
    hf_dataset: str,
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
    """Read a Hugging Face ``datasets`` dataset into a ``Dataset`` (see the module docstring).

    Example:
        >>> ds = read_hf("/data/tweets_hf", text_col="tweet", group_col="event", seed=0)  # doctest: +SKIP
    """
    import datasets

    obj, base = _load(hf_dataset)
    parts = list(obj.items()) if isinstance(obj, datasets.DatasetDict) else [(None, obj)]
    policy = ErrorPolicy(on_error)
    rows: list[tuple[str, dict[str, Any]]] = []
    columns: set[str] = set()
    has_split_col = all(split_col in d.column_names for _, d in parts)
    left_out: list[str] = []
    if isinstance(obj, datasets.DatasetDict) and not has_split_col:
        # A DatasetDict key that is no train / val / test name (IMDB's "unsupervised", MNLI's
        # "validation_matched") is a part mmkit cannot place. It is left out with one warning rather than
        # refused: such parts are often unlabelled extras, and the usual split names still read; a
        # per-row error about our internal split column would name nothing the user can edit.
        known = [(k, d) for k, d in parts if _SPLIT_NAMES.get(str(k).strip().lower())]
        if not known:
            raise DataError(
                hf_dataset,
                None,
                f"its splits {sorted(obj)} are none of train, validation (val, valid, dev) or test",
                "rename them, e.g. DatasetDict({'train': d['"
                + str(parts[0][0])
                + "'], ...}).save_to_disk(...), "
                f"or give the rows a split column ({hint('split_col', '<column name>')})",
            )
        left_out = [
            f"{k!r} ({len(d)} rows)" for k, d in parts if not _SPLIT_NAMES.get(str(k).strip().lower())
        ]
        parts = known  # their keys are mapped to train / val / test as a split column's values are
    for split, d in parts:
        if image_col in d.features and isinstance(d.features[image_col], datasets.Image):
            d = d.cast_column(image_col, datasets.Image(decode=False))  # bytes/path dicts, no decoding
        names = _label_names(d.features.get(label_col))
        columns.update(d.column_names)
        for i, example in enumerate(d):
            row = dict(example)
            if names is not None and row.get(label_col) is not None:
                value = row[label_col]
                if isinstance(value, list):
                    row[label_col] = [names[v] for v in value]
                elif isinstance(value, int) and value >= 0:  # -1: ClassLabel's "no label"
                    row[label_col] = names[value]
                else:
                    row[label_col] = None
            if split is not None and not has_split_col:
                row[SPLIT_COLUMN] = split
            rows.append((f"{split} row {i}" if split else f"row {i}", row))
    if len(parts) > 1 or (parts[0][0] is not None and not has_split_col):
        columns.add(SPLIT_COLUMN)
    use_split = split_col if has_split_col else SPLIT_COLUMN
    name = Path(hf_dataset).name or str(hf_dataset)
    ds = rows_to_dataset(
        hf_dataset,
        name,
        rows,
        sorted(columns),
        base,
        policy,
        image_col=image_col,
        text_col=text_col,
        label_col=label_col,
        group_col=group_col,
        split_col=use_split,
        id_col=id_col,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        multilabel_sep=multilabel_sep,
        seed=seed,
        check_images=check_images,
        image_cache=image_cache,
        min_train_groups=min_train_groups,
    )
    if left_out:
        warn(
            f"{hf_dataset}: left out the split{'s' if len(left_out) > 1 else ''} {', '.join(left_out)}, which "
            "name none of train, validation (val, valid, dev) or test; to use one, rename it to one of those "
            "in the DatasetDict and save_to_disk again",
            ds.meta.setdefault("warnings", []),
        )
    return ds


__all__ = ["read_hf"]
