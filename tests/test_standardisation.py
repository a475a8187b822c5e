"""Stage 2 standardises each modality with statistics of the training rows only, never val or test."""

from pathlib import Path

import numpy as np
import pytest

from mmkit.config import AugmentConfig, TrainConfig
from mmkit.data.records import Dataset, Record
from mmkit.features import FeatureBank
from mmkit.stage2 import train_stage2
from mmkit.text import TextFeatures

SIZES = {"train": 24, "val": 9, "test": 9}


def _toy(tmp_path: Path):
    rng = np.random.default_rng(0)
    splits = {
        s: [Record(f"{s}{i}", tmp_path / f"{s}{i}.jpg", "t", "abc"[i % 3]) for i in range(n)]
        for s, n in SIZES.items()
    }
    ds = Dataset("toy", ["a", "b", "c"], splits)
    ids = {s: ds.ids(s) for s in SIZES}
    # val and test sit far from train: statistics that saw them cannot match the training ones
    shift = {"train": 0.0, "val": 6.0, "test": -9.0}
    plain = {s: (rng.normal(size=(n, 4)) + shift[s]).astype(np.float16) for s, n in SIZES.items()}
    views = (plain["train"][:, None, :] + rng.normal(size=(SIZES["train"], 2, 4))).astype(np.float16)
    bank = FeatureBank(tmp_path / "bank", {}, ids, {"train": views}, plain)
    text = TextFeatures("toy", "logits", True)
    for s, n in SIZES.items():
        text.add(s, ids[s], rng.normal(size=(n, 3)) * 2 + shift[s])
    return ds, bank, text


def test_feature_statistics_come_from_the_training_rows_only(tmp_path):
    ds, bank, text = _toy(tmp_path)
    result = train_stage2(
        ds, text, bank=bank, train=TrainConfig(epochs=1, lr=1e-2, device="cpu"),
        augment=AugmentConfig(batch_size=8, copies=2),
    )  # fmt: skip
    fusion = result.model.fusion
    views = np.asarray(bank.features["train"], np.float64).reshape(-1, 4)
    assert fusion.image_mean.numpy() == pytest.approx(views.mean(0), abs=1e-4)
    assert fusion.image_std.numpy() == pytest.approx(views.std(0, ddof=1), rel=1e-3)
    train_text = text.lookup("train", ds.ids("train"))
    assert fusion.text_mean.numpy() == pytest.approx(train_text.mean(0), abs=1e-4)
    assert fusion.text_std.numpy() == pytest.approx(train_text.std(0, ddof=1), rel=1e-3)
