"""Synthetic datasets: real formats read back by the real readers, byte-identical per seed, cached by stamp,
and each modality informative but imperfect, the two together better."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmkit.config import DataConfig
from mmkit.data import (
    DataError,
    load_dataset,
    make_synthetic_food101,
    make_synthetic_fpus23,
    read_fpus23,
    read_upmc_food101,
)
from mmkit.data.load import ensure_synthetic
from mmkit.data.synthetic import STAMP_FILE


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_food_is_deterministic_and_in_the_real_format(tmp_path):
    kw = dict(n_classes=3, train_per_class=5, test_per_class=2, image_size=32)
    a = make_synthetic_food101(tmp_path / "a", seed=1, **kw)
    b = make_synthetic_food101(tmp_path / "b", seed=1, **kw)
    c = make_synthetic_food101(tmp_path / "c", seed=2, **kw)
    assert _digest(a) == _digest(b) != _digest(c)
    lines = (a / "texts" / "train_titles.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 15 and lines[0].split(",")[0].endswith(".jpg")  # no header
    jpgs = sorted((a / "images" / "test").glob("*/*.jpg"))
    assert len(jpgs) == 6 and Image.open(jpgs[0]).format == "JPEG" and Image.open(jpgs[0]).size == (32, 32)


def test_fpus_is_deterministic_and_in_the_real_format(tmp_path):
    kw = dict(n_streams=3, frames_per_stream=4, width=40, height=24)
    a = make_synthetic_fpus23(tmp_path / "a", seed=0, **kw)
    b = make_synthetic_fpus23(tmp_path / "b", seed=0, **kw)
    assert _digest(a) == _digest(b)
    streams = sorted(p.name for p in (a / "four_poses").iterdir())
    assert streams == sorted(p.name for p in (a / "boxes" / "annotation").iterdir())
    xml = (a / "boxes" / "annotation" / streams[0] / "annotations.xml").read_text()
    assert "<version>1.1</version>" in xml and xml.count("<image ") == 4
    ds = read_fpus23(a, task="organs")
    assert sum(map(len, ds.splits.values())) == 12 and ds.meta["n_boxes"] == sum(
        (a / "boxes" / "annotation" / s / "annotations.xml").read_text().count("<box ") for s in streams
    )


def test_load_dataset_generates_once_and_reuses(tmp_path):
    root = tmp_path / "food"
    ds = load_dataset(DataConfig(dataset="synthetic_food101", data_root=str(root), seed=0))
    stamp = json.loads((root / STAMP_FILE).read_text())
    assert stamp["generator"] == "food101" and stamp["settings"]["n_classes"] == len(ds.classes) == 8
    mtime = (root / STAMP_FILE).stat().st_mtime_ns
    ds2 = load_dataset(DataConfig(dataset="synthetic_food101", data_root=str(root), seed=1))
    assert (root / STAMP_FILE).stat().st_mtime_ns == mtime  # reused, not regenerated
    assert ds.ids("test") == ds2.ids("test") and ds.ids("val") != ds2.ids("val")  # seed moves only the split
    stamp["version"] = -1
    (root / STAMP_FILE).write_text(json.dumps(stamp))
    ensure_synthetic("synthetic_food101", root)
    assert json.loads((root / STAMP_FILE).read_text())["version"] != -1  # stale copy regenerated
    assert not list(tmp_path.glob(".food.tmp*"))
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(DataError, match="not written by mmkit"):
        ensure_synthetic("synthetic_food101", other)


def test_load_dataset_fpus_options(tmp_path):
    cfg = DataConfig(
        dataset="synthetic_fpus23", data_root=str(tmp_path / "f"), task="organs", include_view=False
    )
    ds = load_dataset(cfg)
    assert ds.task == "multilabel" and ds.name == "synthetic_fpus23"
    assert sum(map(len, ds.splits.values())) == 12 * 30
    assert all("sweep" not in t for t in ds.texts("train"))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset(DataConfig(dataset="nope"))


def _hue_features(paths):
    feats = []
    for p in paths:
        hsv = np.asarray(Image.open(p).convert("HSV"), dtype=np.float32) / 255
        m = hsv[..., 1] > 0.4
        feats.append(np.histogram(hsv[..., 0][m], bins=24, range=(0, 1))[0] / (m.sum() + 1))
    return np.array(feats)


def test_food_modalities_are_complementary(tmp_path):
    """Colour histograms alone and title words alone beat chance but stay imperfect; together they do better."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    root = make_synthetic_food101(
        tmp_path / "f", n_classes=6, train_per_class=40, test_per_class=20, image_size=32
    )
    ds = read_upmc_food101(root, val_fraction=0.0)  # the reader allows no val; load_dataset does not
    tr, te = ds.records("train"), ds.records("test")
    ytr, yte = ds.targets("train"), ds.targets("test")
    img = LogisticRegression(C=10, max_iter=3000).fit(_hue_features(r.image_path for r in tr), ytr)
    p_img = img.predict_proba(_hue_features(r.image_path for r in te))
    vec = CountVectorizer().fit(ds.texts("train"))
    txt = LogisticRegression(C=1, max_iter=3000).fit(vec.transform(ds.texts("train")), ytr)
    p_txt = txt.predict_proba(vec.transform(ds.texts("test")))
    acc = lambda p: float((p.argmax(1) == yte).mean())  # noqa: E731
    a_img, a_txt, a_both = acc(p_img), acc(p_txt), acc(np.log(p_img + 1e-9) + np.log(p_txt + 1e-9))
    chance = 1 / 6
    assert chance + 0.15 < a_img < 0.9 and chance + 0.15 < a_txt < 0.9, (a_img, a_txt)
    assert a_both > max(a_img, a_txt) + 0.03, (a_img, a_txt, a_both)


def test_concurrent_generation_yields_one_complete_copy(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "fpus"
    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(lambda _: ensure_synthetic("synthetic_fpus23", root), range(2)))
    assert roots == [root, root]
    ds = read_fpus23(root)
    assert sum(map(len, ds.splits.values())) == 360
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_load_dataset_reads_a_split_file(tmp_path):
    root = make_synthetic_food101(
        tmp_path / "f", n_classes=2, train_per_class=3, test_per_class=1, image_size=16
    )
    names = sorted(p.name for p in (root / "images" / "train").glob("*/*.jpg"))[:2]
    (tmp_path / "val.txt").write_text("\n".join(names))
    cfg = DataConfig(dataset="upmc_food101", data_root=str(root), split_file=str(tmp_path / "val.txt"))
    ds = load_dataset(cfg)
    assert sorted(r.meta["file"] for r in ds.records("val")) == names and len(ds.records("train")) == 4
