"""Stage 1 hands ``fit`` the validation split to select the epoch on, never the test split."""

import pytest

import mmkit.train
from mmkit.config import AugmentConfig, ModelConfig, TrainConfig
from mmkit.data import make_synthetic_food101, read_upmc_food101


class _Stop(Exception):
    pass


def test_stage1_selects_its_epoch_on_the_validation_split(tmp_path, monkeypatch):
    root = make_synthetic_food101(
        tmp_path / "f", n_classes=3, train_per_class=4, test_per_class=2, image_size=32
    )
    ds = read_upmc_food101(root, val_fraction=0.25, seed=0)
    assert set(ds.ids("val")).isdisjoint(ds.ids("test"))
    selected_on = []

    def spy(model, train_loader, val_loader, cfg, **kw):
        selected_on.extend(i for batch in val_loader for i in batch["id"])
        raise _Stop  # what the loop selects on is all this test needs

    monkeypatch.setattr(mmkit.train, "fit", spy)
    with pytest.raises(_Stop):
        mmkit.train.train_stage1(
            ds, ModelConfig("timm:test_resnet"), TrainConfig(epochs=1, device="cpu"),
            AugmentConfig(image_size=32, batch_size=4, preset="seed"), out_dir=tmp_path / "s1",
        )  # fmt: skip
    assert sorted(selected_on) == sorted(ds.ids("val"))
