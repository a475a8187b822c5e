"""load_dataset's checks on the whole result: val_fraction, empty splits, the share skipped, shared images,
and every reader option reaching its reader through DataConfig."""

import csv
import dataclasses
import inspect
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmkit.config import DataConfig
from mmkit.data import DataError, DataWarning, fpus23, hf, load_dataset, make_synthetic_food101, manifest


def _manifest(tmp_path: Path, n: int = 40, missing: int = 0) -> Path:
    rows = []
    for i in range(n):
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        if i >= missing:
            Image.new("RGB", (6, 6), (i, 50, 100)).save(p)
        rows.append([f"img/{i}.png", f"text {i}", "ab"[i % 2]])
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["image", "text", "label"], *rows])
    return path


def test_val_fraction_zero_is_refused_up_front(tmp_path):
    cfg = DataConfig(dataset="manifest", data_root=str(_manifest(tmp_path)), val_fraction=0.0)
    with pytest.raises(
        ValueError, match=r"val_fraction=0.0 must be between 0 and 1.*notebook parameter val_fraction"
    ):
        load_dataset(cfg)


def test_a_dataset_emptied_by_skip_is_an_error_that_says_why(tmp_path):
    path = _manifest(tmp_path, n=10, missing=10)
    cfg = DataConfig(dataset="manifest", data_root=str(path), on_error="skip")
    with pytest.raises(
        DataError,
        match=r"the train and val and test splits are empty .*10 inputs were skipped \(missing image: 10\)",
    ):
        load_dataset(cfg)


def test_skipping_more_than_five_percent_is_reported_prominently(tmp_path):
    path = _manifest(tmp_path, n=40, missing=6)  # 15% of the rows lack their image
    cfg = DataConfig(dataset="manifest", data_root=str(path), on_error="skip")
    with pytest.warns(
        DataWarning,
        match=r"on_error='skip' dropped 15% of the inputs \(6 of 40\); most common reason: missing image \(6\)",
    ):
        ds = load_dataset(cfg)
    assert ds.meta["skip_report"]["share"] == pytest.approx(0.15)
    assert ds.meta["skip_report"]["reasons"] == {"missing image": 6}
    assert any("dropped 15%" in w for w in ds.meta["warnings"])


def test_identical_image_files_in_two_splits_are_reported(tmp_path):
    root = make_synthetic_food101(
        tmp_path / "f", n_classes=2, train_per_class=6, test_per_class=2, image_size=16
    )
    train = sorted((root / "images" / "train" / "apple_pie").glob("*.jpg"))
    test = sorted((root / "images" / "test" / "apple_pie").glob("*.jpg"))
    shutil.copy(train[0], test[0])  # a test image that is byte for byte a training image
    cfg = DataConfig(dataset="upmc_food101", data_root=str(root))
    with pytest.warns(DataWarning, match=r"1 images are in more than one split \(identical file content\)"):
        ds = load_dataset(cfg)
    report = ds.meta["cross_split_duplicates"]
    assert report["n_images"] == 1 and str(test[0]) in report["examples"][0]["test"]
    clean = load_dataset(DataConfig(dataset="synthetic_food101", data_root=str(tmp_path / "s")))
    assert clean.meta["cross_split_duplicates"]["n_images"] == 0


def test_every_reader_option_is_a_data_config_field():
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    renamed = {"path", "root", "hf_dataset", "fractions"}  # data_root / hf_dataset / val+test_fraction
    for reader in (manifest.read_manifest, hf.read_hf, fpus23.read_fpus23):
        options = set(inspect.signature(reader).parameters) - renamed
        assert options <= fields, (reader.__name__, options - fields)
    assert "hf_dataset" in fields


def test_manifest_options_reach_the_reader(tmp_path):
    rows = [["pic", "caption", "y", "who"]]
    for i in range(30):
        Image.new("RGB", (6, 6), (i, 1, 1)).save(tmp_path / f"{i}.png")
        rows.append([f"{i}.png", f"c{i}", "xy"[i % 2], f"u{i // 3}"])
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    cfg = DataConfig(
        dataset="manifest", data_root=str(path), image_col="pic", text_col="caption", label_col="y",
        group_col="who", test_fraction=0.3,
    )  # fmt: skip
    ds = load_dataset(cfg)
    assert ds.classes == ["x", "y"] and {r.group for r in ds.records("test")} <= {f"u{i}" for i in range(10)}
    assert len(ds.records("test")) == 9
