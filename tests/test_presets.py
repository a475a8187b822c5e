"""Preset strengths are valid over their whole range, and a saved preset file gives the same views."""

import numpy as np
import pytest
from PIL import Image

from mmkit.augment import (
    PARAM_RANGES,
    PRESETS,
    build_preset,
    draw_views,
    load_preset,
    make_loader,
    preset_key,
    preset_params,
    preview,
    save_preset,
    scaled_params,
)
from mmkit.data.records import Dataset, Record

IMAGE = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_strength_is_valid_at_both_ends_of_its_range(name):
    for k in preset_params(name):
        lo, hi = PARAM_RANGES[k][:2]
        for value in (lo, hi):
            views = draw_views(IMAGE, build_preset(name, 24, **{k: value}), 3, seed=1, epoch=0, index=0)
            assert all(v.shape == (24, 24, 3) for v in views), (name, k, value)


def test_a_strength_outside_its_range_is_refused_with_the_range():
    with pytest.raises(ValueError, match=r"gamma=1.0 is outside its valid range \[0, 0.95\]"):
        build_preset("ultrasound", 32, gamma=1.0)


def test_scaled_params_interpolate_from_identity():
    assert scaled_params("seed", 0.0) == {"rotate": 0.0, "hflip": 0.0, "vflip": 0.0}
    assert scaled_params("seed", 1.0) == preset_params("seed")
    assert scaled_params("light", 0.0)["scale_min"] == 1.0  # no crop
    assert scaled_params("ultrasound", 10.0)["gamma"] == PARAM_RANGES["gamma"][1]  # clipped


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("presets")
    rng = np.random.default_rng(1)
    recs = []
    for i in range(4):
        p = root / f"p{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(p)
        recs.append(Record(id=p.name, image_path=p, text=f"t{i}", label="a" if i % 2 else "b"))
    return Dataset("toy", ["a", "b"], {"train": recs, "val": recs[:2], "test": []})


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_saved_preset_gives_the_same_views(toy, tmp_path, suffix):
    strengths = dict(rotate=25.0, gamma=0.6, speckle=0.4, hflip=1.0)
    path = save_preset("ultrasound", tmp_path / f"us{suffix}", image_size=32, **strengths)
    loaded = build_preset(str(path), 32)
    assert loaded.name == "ultrasound" and loaded.params["gamma"] == 0.6 and loaded.source == str(path)
    direct = preview(toy, "train", [0, 1, 2], "ultrasound", copies=3, image_size=32, seed=5, **strengths)
    again = preview(toy, "train", [0, 1, 2], str(path), copies=3, image_size=32, seed=5)
    assert np.array_equal(direct, again)
    b1 = next(iter(make_loader(toy, "train", 2, copies=2, preset=path, image_size=32, seed=3)))
    p2 = build_preset("ultrasound", 32, **strengths)
    b2 = next(iter(make_loader(toy, "train", 2, copies=2, preset=p2, image_size=32, seed=3)))
    assert np.array_equal(b1["image"].numpy(), b2["image"].numpy())


def test_a_preset_file_at_another_size_and_its_cache_key(tmp_path):
    path = save_preset("food", tmp_path / "food.json", image_size=64, jitter=0.5)
    assert load_preset(path, 32).train.transforms[0].size == (32, 32)  # unedited: rebuilt at 32
    key = preset_key(str(path))
    assert key.startswith("food.json:")
    save_preset("food", path, image_size=64, jitter=0.6)
    assert preset_key(str(path)) != key  # same path, other content: another feature bank
    text = path.read_text().replace('"p": 0.2', '"p": 0.9')  # edit the blur probability
    path.write_text(text)
    assert load_preset(path).train.transforms[-1].p == 0.9
    with pytest.raises(ValueError, match="set image_size=64"):
        load_preset(path, 32)
    with pytest.raises(FileNotFoundError, match="notebook 02's explorer"):
        build_preset(str(tmp_path / "nope.json"))


def test_a_saved_preset_trains_in_stage1(toy, tmp_path):
    from mmkit.config import AugmentConfig, ModelConfig, TrainConfig
    from mmkit.train import train_stage1

    path = save_preset("light", tmp_path / "light.yaml", image_size=32, scale_min=0.5)
    r = train_stage1(
        toy, ModelConfig("timm:test_resnet"), TrainConfig(epochs=1, lr=0.05),
        AugmentConfig(preset=str(path), image_size=32, batch_size=2, copies=2), out_dir=tmp_path / "s1",
    )  # fmt: skip
    assert r.checkpoint.is_file() and len(r.history) == 1
