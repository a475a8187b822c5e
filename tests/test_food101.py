"""UPMC Food-101 reader: the real 200-row sample, title cleaning, joins by name, and every kind of bad input."""

import csv
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmkit.data import DataError, clean_title, make_synthetic_food101, read_upmc_food101

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLE = SHARED / "data" / "upmc_food101_sample" / "test_titles_sample.csv"


def _jpeg(path: Path, colour=(200, 100, 50)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, quality=80)


def _write(root: Path, split: str, rows: list[list[str]], images: bool = True) -> None:
    (root / "texts").mkdir(parents=True, exist_ok=True)
    with open(root / "texts" / f"{split}_titles.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    if images:
        for file, _, label in rows:
            _jpeg(root / "images" / split / label / file)


def _toy(root: Path, n: int = 4, classes=("apple_pie", "pho")) -> Path:
    for split in ("train", "test"):
        rows = [[f"{c}_{split}{i}.jpg", f"{c} title {i}", c] for c in classes for i in range(n)]
        _write(root, split, rows)
    return root


# --- the real sample ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    if not SAMPLE.is_file():
        pytest.skip(
            f"real UPMC Food-101 sample not found at {SAMPLE} (the shared folder sits next to the repo)"
        )
    root = tmp_path_factory.mktemp("upmc")
    (root / "texts").mkdir()
    shutil.copy(SAMPLE, root / "texts" / "test_titles.csv")
    with open(SAMPLE, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    for file, _, label in rows:
        _jpeg(root / "images" / "test" / label / file)
    # A small train split with other file names for the same classes (the sample is from the test file).
    train = [
        [f"{c}_train{i}.jpg", f"{c.replace('_', ' ')} recipe {i}", c]
        for c in sorted({r[2] for r in rows})
        for i in range(3)
    ]
    _write(root, "train", train)
    return root, rows


def test_real_sample_keeps_every_row_including_the_first(sample_root):
    root, rows = sample_root
    ds = read_upmc_food101(root)
    test = ds.records("test")
    assert len(test) == len(rows) == 200
    assert test[0].meta["file"] == rows[0][0] and test[0].meta["row"] == 1
    assert ds.skipped == []
    # Joined by file name: every record's class and raw title are those of its own CSV row.
    by_file = {r[0]: r for r in rows}
    for rec in test:
        file, title, label = by_file[rec.meta["file"]]
        assert rec.label == label and rec.meta["raw_title"] == title.strip()
        assert rec.image_path.name == file and rec.image_path.parent.name == label
    assert ds.classes == sorted({r[2] for r in rows})


def test_real_sample_titles_are_clean(sample_root):
    root, rows = sample_root
    texts = {r.meta["file"]: r.text for r in read_upmc_food101(root).records("test")}
    assert texts[rows[0][0]] == rows[0][1]
    for text in texts.values():
        assert text and "\\x" not in text and "[[" not in text and "]]" not in text
        assert "&amp;" not in text and "&#" not in text and "&raquo;" not in text
    assert texts["apple_pie_267.jpg"] == "Cookstr - Mom\u2019s Apple Pie"  # &amp;rsquo; (escaped twice)
    assert texts["apple_pie_189.jpg"] == "Coleen's Recipes: BEST APPLE PIE EVER !!!"
    assert texts["apple_pie_799.jpg"].endswith("Moms Need To Know \u2122")
    assert "Australia\u2019s Favourite Duck" in texts["caesar_salad_834.jpg"]
    assert texts["pho_439.jpg"] == "Homemade vegan pho. (Homemade vegetable broth"  # wrapper cut short


def test_clean_title_units():
    assert clean_title("Bob&#039;s &amp; co") == "Bob's & co"
    assert clean_title("caf\\xc3\\xa9  au   lait") == "caf\u00e9 au lait"
    assert clean_title("bad \\xe9 byte") == "bad \u00e9 byte"  # not UTF-8: read as Latin-1
    assert clean_title('[["x, y"]]') == "x, y"


# --- joins and splits ----------------------------------------------------------------------------------


def test_synthetic_rows_are_shuffled_but_joined_by_name(tmp_path):
    root = make_synthetic_food101(
        tmp_path / "f", n_classes=3, train_per_class=6, test_per_class=3, image_size=32
    )
    first = next(csv.reader(open(root / "texts" / "train_titles.csv", encoding="utf-8")))
    ds = read_upmc_food101(root, val_fraction=0.34)
    assert ds.summary() == {"train": 11, "val": 7, "test": 9}
    recs = ds.records("train") + ds.records("val")
    assert any(r.meta["file"] == first[0] for r in recs)  # the first line is a row, not a header
    for r in recs + ds.records("test"):
        assert r.image_path.parent.name == r.label and r.image_path.name == r.meta["file"]


def test_val_is_stratified_and_seeded(tmp_path):
    root = _toy(tmp_path, n=10, classes=("a_a", "b_b", "c_c"))
    a = read_upmc_food101(root, val_fraction=0.3, seed=1)
    b = read_upmc_food101(root, val_fraction=0.3, seed=1)
    c = read_upmc_food101(root, val_fraction=0.3, seed=2)
    assert a.ids("val") == b.ids("val") and a.ids("val") != c.ids("val")
    assert sorted(r.label for r in a.records("val")) == ["a_a"] * 3 + ["b_b"] * 3 + ["c_c"] * 3
    assert not set(a.ids("val")) & set(a.ids("train"))
    assert len(a.records("train")) + len(a.records("val")) == 30


def test_split_file(tmp_path):
    root = _toy(tmp_path)
    split = tmp_path / "val.txt"
    split.write_text("# held out\napple_pie_train0.jpg\npho_train1.jpg\n")
    ds = read_upmc_food101(root, split_file=split)
    assert sorted(ds.ids("val")) == ["train/apple_pie_train0.jpg", "train/pho_train1.jpg"]
    split.write_text("nope.jpg\n")
    with pytest.raises(DataError, match="nope.jpg"):
        read_upmc_food101(root, split_file=split)


# --- bad input ----------------------------------------------------------------------------------------


def test_header_line_is_an_error(tmp_path):
    root = _toy(tmp_path)
    path = root / "texts" / "train_titles.csv"
    path.write_text("image,title,label\n" + path.read_text())
    with pytest.raises(DataError, match=r"train_titles.csv, row 1: looks like a header.*no header"):
        read_upmc_food101(root)
    ds = read_upmc_food101(root, on_error="skip")
    assert [s.where for s in ds.skipped] == ["row 1"]
    assert len(ds.records("train")) + len(ds.records("val")) == 8


def test_wrong_column_count(tmp_path):
    root = _toy(tmp_path)
    path = root / "texts" / "test_titles.csv"
    lines = path.read_text().splitlines()
    lines[2] = "pho_test0.jpg,pho, with a comma,pho"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"test_titles.csv, row 3: wrong number of columns: 4"):
        read_upmc_food101(root)


def test_missing_image_and_image_without_row(tmp_path):
    root = _toy(tmp_path)
    (root / "images" / "test" / "pho" / "pho_test2.jpg").unlink()
    with pytest.raises(DataError, match=r"pho_test2.jpg.*missing image.*restore"):
        read_upmc_food101(root)
    _jpeg(root / "images" / "test" / "pho" / "pho_test2.jpg")
    _jpeg(root / "images" / "test" / "pho" / "stray.jpg")
    with pytest.raises(DataError, match=r"stray.jpg: image has no row in test_titles.csv"):
        read_upmc_food101(root)
    (root / "images" / "test" / "pho" / "pho_test3.jpg").unlink()
    ds = read_upmc_food101(root, on_error="skip")
    problems = sorted(s.problem for s in ds.skipped)
    assert problems == ["image has no row in test_titles.csv", "missing image"]
    assert len(ds.records("test")) == 7


def test_corrupt_and_truncated_images(tmp_path):
    root = _toy(tmp_path)
    (root / "images" / "test" / "pho" / "pho_test0.jpg").write_bytes(b"not a jpeg at all")
    big = root / "images" / "test" / "pho" / "pho_test1.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(big, quality=95)
    big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    with pytest.raises(DataError, match="pho_test0.jpg.*corrupt image"):
        read_upmc_food101(root)
    ds = read_upmc_food101(root, on_error="skip")
    assert sorted(Path(s.file).name for s in ds.skipped) == ["pho_test0.jpg", "pho_test1.jpg"]
    assert any("truncated" in s.problem for s in ds.skipped)


def test_label_in_test_missing_from_train(tmp_path):
    root = _toy(tmp_path)
    _write(root, "test", [["sushi_1.jpg", "sushi roll", "sushi"], ["pho_9.jpg", "pho", "pho"]])
    with pytest.raises(
        DataError, match=r"test_titles.csv, row 1 \(sushi_1.jpg\): label 'sushi' is not in train"
    ):
        read_upmc_food101(root)
    assert read_upmc_food101(root, on_error="skip").ids("test") == ["test/pho_9.jpg"]


def test_empty_text(tmp_path):
    root = _toy(tmp_path)
    _write(root, "test", [["pho_1.jpg", '[[""]]', "pho"], ["pho_2.jpg", "soup", "pho"]])
    with pytest.raises(DataError, match=r"row 1 \(pho_1.jpg\): empty text"):
        read_upmc_food101(root)


def test_non_utf8_bytes(tmp_path):
    root = _toy(tmp_path)
    path = root / "texts" / "train_titles.csv"
    data = path.read_bytes().splitlines(keepends=True)
    data[1] = b"pho_train0.jpg,caf\xe9 soup,pho\n"
    path.write_bytes(b"".join(data))
    with pytest.raises(DataError, match=r"train_titles.csv, line 2: bytes that are not UTF-8.*UTF-8"):
        read_upmc_food101(root)
    ds = read_upmc_food101(root, on_error="skip")
    assert [s.where for s in ds.skipped] == ["line 2", None]  # the row, then its image that lost its row


def test_non_utf8_bytes_in_a_file_with_a_byte_order_mark(tmp_path):
    root = _toy(tmp_path)
    path = root / "texts" / "train_titles.csv"
    data = path.read_bytes().splitlines(keepends=True)
    data[1] = b"pho_train0.jpg,caf\xe9 soup,pho\n"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(data))
    ds = read_upmc_food101(root, on_error="skip", val_fraction=0)
    # Only the bad line is lost: the first row keeps its file name (the mark is not part of it).
    assert [(s.where, Path(s.file).name) for s in ds.skipped] == [
        ("line 2", "train_titles.csv"),
        (None, "apple_pie_train1.jpg"),
    ]
    assert ds.records("train")[0].meta["file"] == data[0].split(b",")[0].decode()


def test_one_file_name_in_two_class_folders_is_reported(tmp_path):
    root = _toy(tmp_path)
    # The same file name under a second class folder: the row names one image, the other copy has none.
    _jpeg(root / "images" / "train" / "pho" / "apple_pie_train1.jpg", colour=(1, 2, 3))
    with pytest.raises(
        DataError,
        match=r"pho/apple_pie_train1.jpg: the same file name is in class folder 'apple_pie', which row 2 of "
        r"train_titles.csv uses; this copy has no row",
    ):
        read_upmc_food101(root)
    ds = read_upmc_food101(root, on_error="skip", val_fraction=0.25)
    assert [Path(s.file).parent.name for s in ds.skipped] == ["pho"]
    rec = next(r for s in ("train", "val") for r in ds.records(s) if r.meta["file"] == "apple_pie_train1.jpg")
    assert rec.image_path.parent.name == "apple_pie" and rec.label == "apple_pie"


def test_single_sample_class_stays_in_train(tmp_path):
    root = _toy(tmp_path, n=6)
    _write(root, "train", [["solo_1.jpg", "solo title", "solo"]] + [
        [f"{c}_train{i}.jpg", f"{c} title {i}", c] for c in ("apple_pie", "pho") for i in range(6)
    ])  # fmt: skip
    for seed in range(6):
        ds = read_upmc_food101(root, val_fraction=0.3, seed=seed)
        assert "solo" in {r.label for r in ds.records("train")} and "solo" in ds.classes, seed
        assert len(ds.records("train")) + len(ds.records("val")) == 13


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("Vegan Recipes |']", "Vegan Recipes |"),  # the sample's row 80: a wrapper cut short
        ("['Apple Pie Bars']", "Apple Pie Bars"),
        ("[VIDEO] Apple Pie", "[VIDEO] Apple Pie"),  # a real bracket stays
        ("Mom\u00e2\u20ac\u2122s Apple Pie", "Mom\u2019s Apple Pie"),  # mojibake: UTF-8 read as cp1252
        ("Caf\u00c3\u00a9 Pho", "Caf\u00e9 Pho"),
        ("Recipes from F&W; magazine", "Recipes from F&W magazine"),  # no such entity
        ("Tom &amp; Jerry&#8217;s &raquo; Sushi", "Tom & Jerry\u2019s \u00bb Sushi"),
        ("Ph\\xe1\\xbb\\x9f Bo", "Ph\u1edf Bo"),
    ],
)
def test_clean_title_real_patterns(raw, clean):
    assert clean_title(raw) == clean


def test_no_sample_title_keeps_a_scraping_artefact(sample_root):
    _, rows = sample_root
    for _, title, _ in rows:
        t = clean_title(title)
        assert not t.endswith(("']", '"]', "]]")) and not t.startswith(("['", '["', "[["))
        assert "\u00e2\u20ac" not in t and "\\x" not in t
        assert not re.search(r"&[A-Za-z][A-Za-z0-9]*;|&#\d+;", t), t
