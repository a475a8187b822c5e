"""The decode cache: batches bit-identical with it on and off, keys that miss on any change."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mmkit.augment as aug
from mmkit.augment import build_preset, decode_cache, make_loader
from mmkit.data.records import Dataset, Record


def _write(path: Path, rng: np.random.Generator, h: int, w: int) -> Path:
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
    return path


@pytest.fixture()
def toy(tmp_path) -> Dataset:
    rng = np.random.default_rng(0)
    recs = [
        Record(
            id=str(i), image_path=_write(tmp_path / f"{i}.jpg", rng, 40 + i, 50), text="", label="ab"[i % 2]
        )
        for i in range(8)
    ]
    return Dataset("toy", ["a", "b"], {"train": recs[:6], "val": recs[6:], "test": []})


@pytest.fixture()
def cache():
    c = decode_cache()
    size = c.max_bytes / 2**20
    c.clear()
    yield c
    c.resize(size)
    c.clear()


def _run(ds: Dataset, preset: str) -> list:
    """Two loaders (train, then val), the train one for two epochs, then a second train loader."""
    kw = dict(batch_size=4, copies=2, preset=preset, image_size=32, seed=3)
    out = []
    for loader in (
        make_loader(ds, "train", **kw),
        make_loader(ds, "val", **kw),
        make_loader(ds, "train", **kw),
    ):
        for epoch in range(2):
            loader.set_epoch(epoch)
            out += [(b["image"].clone(), b["index"].clone()) for b in loader]
    return out


@pytest.mark.parametrize("preset", ["seed", "food"])
def test_batches_identical_with_cache_on_and_off(toy, cache, preset):
    cache.resize(0)
    off = _run(toy, preset)
    assert len(cache) == 0
    cache.resize(64)
    on = _run(toy, preset)
    assert cache.misses == 8 and cache.hits > cache.misses  # 6 train + 2 val images decoded once each
    assert len(on) == len(off)
    for (x, i), (y, j) in zip(on, off):
        assert (x == y).all() and (i == j).all()


def test_a_rewritten_file_is_decoded_again(toy, cache, monkeypatch):
    calls = []
    real = aug.decode_image
    monkeypatch.setattr(
        aug, "decode_image", lambda path, min_size=None: calls.append(path) or real(path, min_size)
    )
    kw = dict(batch_size=8, preset="seed", image_size=32, shuffle=False)
    first = next(iter(make_loader(toy, "val", **kw)))["image"]
    assert len(calls) == 2
    next(iter(make_loader(toy, "val", **kw)))
    assert len(calls) == 2  # both hits
    path = toy.records("val")[0].image_path
    st = os.stat(path)
    _write(path, np.random.default_rng(9), 46, 50)  # same size in pixels, new content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime, ctime / bytes differ
    again = next(iter(make_loader(toy, "val", **kw)))["image"]
    assert calls[2:] == [path]
    assert not (again[0] == first[0]).all() and (again[1] == first[1]).all()


def test_keys_separate_presets_and_sizes_and_respect_the_byte_bound(toy, cache):
    path = toy.records("train")[0].image_path
    seed32, seed48 = build_preset("seed", 32), build_preset("seed", 48)
    a, applied = cache.get(path, 32, seed32.pre)
    b, _ = cache.get(path, 48, seed48.pre)
    assert applied and a.shape != b.shape and cache.misses == 2
    c, _ = cache.get(path, 32, seed32.pre)
    assert cache.hits == 1 and (c == a).all()
    c[:] = 0  # a caller's copy: the stored entry is untouched
    assert (cache.get(path, 32, seed32.pre)[0] == a).all()
    cache.resize(a.nbytes / 2**20)  # room for one entry only
    assert len(cache) == 1 and cache.nbytes <= cache.max_bytes
    # a random pipeline is never cached as such: only the decode is, and the caller runs the pipeline
    random_pre = build_preset("food", 32).train
    image, applied = cache.get(path, 32, random_pre)
    assert not applied and (image == aug.decode_image(path, 32)).all()
