"""CSV and MMF-style JSONL manifests: columns, relative/absolute paths, split column, seeded and grouped splits."""

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmkit.data import DataError, DataWarning, read_manifest


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
    with pytest.raises(
        DataError,
        match=r"column 'label' \(label_col\) is missing; the columns are \['image', 'text'\].*notebook parameter label_col = <column name> \(Python: label_col=",
    ):
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


def _rows_with_groups(tmp_path, sizes, n_classes=3, seed=0):
    """Rows in groups of the given sizes; each group mixes classes, one class a little rarer."""
    rng = np.random.default_rng(seed)
    rows = []
    img = _img(tmp_path / "img" / "0.png")
    for g, size in enumerate(sizes):
        for j in range(size):
            path = tmp_path / "img" / f"{g}_{j}.png"
            shutil.copy(img, path)
            label = f"c{int(rng.choice(n_classes, p=[0.5, 0.35, 0.15]))}"
            rows.append([str(path.relative_to(tmp_path)), f"text {g} {j}", label, f"event{g}"])
    return rows


def test_grouped_split_hits_its_row_fractions(tmp_path):
    # 15 groups of very different sizes (one holds a third of the rows), as in a real tweet+photo set.
    sizes = [400, 150, 120, 100, 90, 80, 70, 60, 50, 40, 30, 25, 20, 15, 10]
    rows = _rows_with_groups(tmp_path, sizes)
    path = _csv(tmp_path / "m.csv", ["image", "text", "label", "event"], rows)
    n = len(rows)
    for seed in range(3):
        ds = read_manifest(path, group_col="event", val_fraction=0.1, test_fraction=0.2, seed=seed,
                           check_images="none")  # fmt: skip
        got = {k: len(v) / n for k, v in ds.splits.items()}
        assert abs(got["test"] - 0.2) < 0.04 and abs(got["val"] - 0.1) < 0.04, (seed, got)
        assert sum(ds.summary().values()) == n
        groups = {k: {r.group for r in v} for k, v in ds.splits.items()}
        assert not (
            groups["train"] & groups["val"]
            or groups["train"] & groups["test"]
            or groups["val"] & groups["test"]
        )
        for split in ("train", "val", "test"):
            assert {r.label for r in ds.records(split)} == {"c0", "c1", "c2"}, (seed, split)


def test_seeds_still_move_a_grouped_split(tmp_path):
    rows = _rows_with_groups(tmp_path, [30, 25, 22, 20, 18, 15, 12, 10, 8, 6, 5, 4])
    path = _csv(tmp_path / "m.csv", ["image", "text", "label", "event"], rows)
    tests = set()
    for seed in range(4):
        ds = read_manifest(path, group_col="event", seed=seed, check_images="none")
        tests.add(frozenset(r.group for r in ds.records("test")))
        assert abs(len(ds.records("test")) / len(rows) - 0.2) < 0.04
    assert len(tests) > 1


def test_grouped_split_warns_when_groups_cannot_meet_the_fractions(tmp_path):
    rows = _rows_with_groups(tmp_path, [50, 3, 3])
    path = _csv(tmp_path / "m.csv", ["image", "text", "label", "event"], rows)
    with pytest.warns(DataWarning, match=r"grouped split of 56 rows in 3 groups: train has .* of the rows"):
        ds = read_manifest(path, group_col="event", check_images="none")
    assert any("grouped split" in w for w in ds.meta["warnings"])


def test_missing_group_column_lists_the_columns(tmp_path):
    _img(tmp_path / "1.png")
    path = _csv(tmp_path / "m.csv", ["image", "text", "label", "group"], [["1.png", "t", "x", "a"]])
    with pytest.raises(
        DataError,
        match=r"group column 'groups' \(group_col\) is missing \(did you mean 'group'\?\); the columns are "
        r"\['image', 'text', 'label', 'group'\].*notebook parameter group_col = <column name>",
    ):
        read_manifest(path, group_col="groups")


def test_rows_sharing_an_image_are_all_loaded_and_never_split_apart(tmp_path):
    rows = []
    for i in range(12):  # 12 photos, 3 captions each: the shape of a caption or tweet set
        _img(tmp_path / f"p{i}.png")
        rows += [[f"p{i}.png", f"caption {i}.{k}", "ab"[i % 2]] for k in range(3)]
    path = _csv(tmp_path / "m.csv", ["image", "text", "label"], rows)
    with pytest.warns(
        DataWarning, match=r"12 images are used by more than one row; the split groups rows by image"
    ):
        ds = read_manifest(path, seed=1)
    assert sum(ds.summary().values()) == 36 and ds.skipped == []
    ids = [i for s in ds.splits for i in ds.ids(s)]
    assert len(set(ids)) == 36 and "p0.png (row 2)" in ids
    images = {k: {r.image_path for r in v} for k, v in ds.splits.items()}
    assert not (
        images["train"] & images["val"] or images["train"] & images["test"] or images["val"] & images["test"]
    )
    assert ds.meta["grouped_by"] == "image" and ds.meta["n_shared_images"] == 12
    assert any("groups rows by image" in w for w in ds.meta["warnings"])
    # A group column that puts one photo in two groups (its third caption by another user): merged.
    rows = [r + [f"u{j // 6}" if j != 2 else "u3"] for j, r in enumerate(rows)]
    path = _csv(tmp_path / "g.csv", ["image", "text", "label", "user"], rows)
    with pytest.warns(
        DataWarning, match=r"1 'user' groups share an image with another group and were merged"
    ):
        ds = read_manifest(path, group_col="user")
    images = {k: {r.image_path for r in v} for k, v in ds.splits.items()}
    assert not (
        images["train"] & images["val"] or images["train"] & images["test"] or images["val"] & images["test"]
    )
    assert sum(ds.summary().values()) == 36 and len({r.group for s in ds.splits.values() for r in s}) == 5


def test_explicit_duplicate_ids_are_still_an_error(tmp_path):
    _img(tmp_path / "1.png")
    rows = [["1.png", "t", "x", "7"], ["1.png", "u", "x", "7"]]
    with pytest.raises(DataError, match=r"row 3: duplicate id '7' in column 'id'"):
        read_manifest(_csv(tmp_path / "m.csv", ["image", "text", "label", "id"], rows))


def test_parquet_manifest(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rows = []
    for i in range(20):
        _img(tmp_path / "img" / f"{i}.png")
        rows.append({"image": f"img/{i}.png", "text": f"t {i}", "label": ["a", "b"] if i % 3 else ["a"]})
    path = tmp_path / "m.parquet"
    pd.DataFrame(rows).to_parquet(path)
    ds = read_manifest(path, seed=0)
    assert ds.task == "multilabel" and ds.classes == ["a", "b"] and sum(ds.summary().values()) == 20
    # Images stored in the file itself (as Hugging Face writes them) become files in image_cache, once.
    blobs = []
    for i in range(10):
        buf = io.BytesIO()
        Image.new("RGB", (5, 5), (i, 2, 3)).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    rows = [
        {"image": {"bytes": b, "path": None}, "text": f"t{i}", "label": "ab"[i % 2]}
        for i, b in enumerate(blobs)
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "b.parquet")
    ds = read_manifest(tmp_path / "b.parquet", image_cache=tmp_path / "cache")
    recs = sorted((r for s in ds.splits.values() for r in s), key=lambda r: r.text)
    assert [r.image_path.read_bytes() for r in recs] == blobs
    assert all(
        r.image_path.parent.parent == tmp_path / "cache" and r.image_path.suffix == ".png" for r in recs
    )


def test_single_sample_class_stays_in_train(tmp_path):
    rows = []
    for i in range(30):
        _img(tmp_path / f"{i}.png")
        rows.append([f"{i}.png", f"t{i}", "rare" if i == 0 else "ab"[i % 2]])
    path = _csv(tmp_path / "m.csv", ["image", "text", "label"], rows)
    for seed in range(5):
        with pytest.warns(DataWarning, match=r"single sample and stay in train.*'rare'"):
            ds = read_manifest(path, seed=seed)
        assert "rare" in {r.label for r in ds.records("train")}, seed
        assert sum(ds.summary().values()) == 30 and ds.skipped == []
