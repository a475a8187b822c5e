"""CSV and MMF-style JSONL manifests: columns, relative/absolute paths, split column, seeded and grouped splits."""

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from mmkit.data import DataError, read_manifest


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), (10, 200, 30)).save(path)
    return path


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_with_split_column_and_absolute_paths(tmp_path):
    absolute = _img(tmp_path / "elsewhere" / "x.png")
    rows = [
        [
            f"img/{i}.png",
            f"text {i}",
            "cat" if i % 2 else "dog",
            "train" if i < 6 else ("dev" if i < 8 else "test"),
        ]
        for i in range(10)
    ]
    for r in rows:
        _img(tmp_path / r[0])
    rows.append([str(absolute), "abs path", "cat", "train"])
    ds = read_manifest(_csv(tmp_path / "m.csv", ["image", "text", "label", "split"], rows))
    assert ds.summary() == {"train": 7, "val": 2, "test": 2}
    assert ds.classes == ["cat", "dog"]
    assert ds.records("train")[-1].image_path == absolute
    assert ds.records("train")[0].image_path == tmp_path / "img" / "0.png"


def test_mmf_jsonl_with_int_labels_and_seeded_split(tmp_path):
    lines = []
    for i in range(40):
        _img(tmp_path / "img" / f"{i:05d}.png")
        lines.append(json.dumps({"id": i, "img": f"img/{i:05d}.png", "text": f"meme {i}", "label": i % 2}))
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    a = read_manifest(path, seed=0)
    b = read_manifest(path, seed=0)
    assert a.classes == ["0", "1"] and a.ids("test") == b.ids("test")
    assert a.summary() == {"train": 28, "val": 4, "test": 8}
    assert sorted(r.label for r in a.records("test")) == ["0"] * 4 + ["1"] * 4  # stratified
    assert len(set(a.ids("train")) | set(a.ids("val")) | set(a.ids("test"))) == 40


def test_grouped_split_and_multilabel(tmp_path):
    rows = []
    for i in range(30):
        _img(tmp_path / f"{i}.png")
        rows.append([f"{i}.png", f"t{i}", "a|b" if i % 3 else "a", f"patient{i // 3}"])
    ds = read_manifest(
        _csv(tmp_path / "m.csv", ["image", "text", "label", "pid"], rows), group_col="pid", multilabel_sep="|"
    )
    groups = {k: {r.group for r in v} for k, v in ds.splits.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"])
    assert ds.task == "multilabel" and ds.classes == ["a", "b"]
    assert ds.targets("train").shape[1] == 2


def test_bad_manifests(tmp_path):
    _img(tmp_path / "1.png")
    with pytest.raises(DataError, match=r"missing columns \['label'\].*image_col"):
        read_manifest(_csv(tmp_path / "a.csv", ["image", "text"], [["1.png", "x"]]))
    with pytest.raises(DataError, match=r"b.csv, row 2: empty text"):
        read_manifest(_csv(tmp_path / "b.csv", ["image", "text", "label"], [["1.png", "  ", "x"]]))
    with pytest.raises(DataError, match=r"2.png, c.csv row 2: missing image"):
        read_manifest(_csv(tmp_path / "c.csv", ["image", "text", "label"], [["2.png", "t", "x"]]))
    bad = tmp_path / "d.jsonl"
    bad.write_bytes(
        b'{"img": "1.png", "text": "ok", "label": 1}\n{"img": "1.png", "text": "caf\xe9", "label": 0}\n'
    )
    with pytest.raises(DataError, match=r"d.jsonl, line 2: bytes that are not UTF-8"):
        read_manifest(bad)
    (tmp_path / "e.jsonl").write_text('{"img": "1.png", "text": "ok", "label": 1}\n{"img": "1.png", \n')
    with pytest.raises(DataError, match=r"e.jsonl, line 2: malformed JSON"):
        read_manifest(tmp_path / "e.jsonl")
    rows = [["1.png", "t", "x", "train"], ["1.png", "u", "y", "test"]]
    _img(tmp_path / "1.png")
    with pytest.raises(DataError, match=r"label 'y' \(test\) is not in train"):
        read_manifest(
            _csv(tmp_path / "f.csv", ["image", "text", "label", "split", "id"][:4], rows), id_col="text"
        )
