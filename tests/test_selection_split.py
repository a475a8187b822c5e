"""Stages 1 and 2 hand ``fit`` the validation split to select the epoch on, never the test split."""

import numpy as np
import pytest

import mmkit.train
from mmkit.config import AugmentConfig, ModelConfig, TrainConfig
from mmkit.data import make_synthetic_food101, read_upmc_food101
from mmkit.data.records import Dataset, Record
from mmkit.features import FeatureBank
from mmkit.stage2 import train_stage2
from mmkit.text import TextFeatures


class _Stop(Exception):
    pass


def _spy(monkeypatch) -> list[str]:
    """Replace ``mmkit.train.fit`` by one that records the ids of the loader it would select on."""
    selected_on: list[str] = []

    def spy(model, train_loader, val_loader, cfg, **kw):
        selected_on.extend(i for batch in val_loader for i in batch["id"])
        raise _Stop  # what the loop selects on is all these tests need

    monkeypatch.setattr(mmkit.train, "fit", spy)
    return selected_on


def test_stage1_selects_its_epoch_on_the_validation_split(tmp_path, monkeypatch):
    root = make_synthetic_food101(
        tmp_path / "f", n_classes=3, train_per_class=4, test_per_class=2, image_size=32
    )
    ds = read_upmc_food101(root, val_fraction=0.25, seed=0)
    assert set(ds.ids("val")).isdisjoint(ds.ids("test"))
    selected_on = _spy(monkeypatch)
    with pytest.raises(_Stop):
        mmkit.train.train_stage1(
            ds, ModelConfig("timm:test_resnet"), TrainConfig(epochs=1, device="cpu"),
            AugmentConfig(image_size=32, batch_size=4, preset="seed"), out_dir=tmp_path / "s1",
        )  # fmt: skip
    assert sorted(selected_on) == sorted(ds.ids("val"))


def test_stage2_selects_its_epoch_on_the_validation_split(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    sizes = {"train": 12, "val": 6, "test": 6}
    splits = {
        s: [Record(f"{s}{i}", tmp_path / f"{s}{i}.jpg", "t", "ab"[i % 2]) for i in range(n)]
        for s, n in sizes.items()
    }
    ds = Dataset("toy", ["a", "b"], splits)
    ids = {s: ds.ids(s) for s in sizes}
    plain = {s: rng.normal(size=(n, 4)).astype(np.float16) for s, n in sizes.items()}
    bank = FeatureBank(tmp_path / "bank", {}, ids, {"train": plain["train"][:, None, :]}, plain)
    text = TextFeatures("toy", "logits", True)
    for s, n in sizes.items():
        text.add(s, ids[s], rng.normal(size=(n, 2)))
    selected_on = _spy(monkeypatch)
    with pytest.raises(_Stop):
        train_stage2(
            ds,
            text,
            bank=bank,
            train=TrainConfig(epochs=1, device="cpu"),
            augment=AugmentConfig(batch_size=4),
        )
    assert sorted(selected_on) == sorted(ds.ids("val"))
