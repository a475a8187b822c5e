"""Cross-fitting: backbone k fine-tunes on every training row outside fold k and on none inside it."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np

import mmkit.train
from mmkit.config import AugmentConfig, ModelConfig, TrainConfig
from mmkit.crossfit import cross_fit_stage1
from mmkit.data.records import Dataset, Record
from mmkit.folds import assign_folds


def _records(n: int, prefix: str) -> list[Record]:
    return [Record(f"{prefix}{i}", Path(f"{prefix}{i}.jpg"), "t", "ab"[i % 2]) for i in range(n)]


def test_each_fold_backbone_trains_on_the_other_folds_only(monkeypatch, tmp_path):
    ds = Dataset(
        "toy", ["a", "b"], {"train": _records(30, "tr"), "val": _records(6, "va"), "test": _records(6, "te")}
    )
    fold_of = assign_folds(ds.records("train"), 3, seed=0, y=ds.targets("train"))
    seen = []

    def record_stage1(dataset, model, train, augment, *, out_dir, resume=False, device=None):
        seen.append({s: dataset.ids(s) for s in dataset.splits})  # what this backbone would train on
        return SimpleNamespace(checkpoint=Path(out_dir) / "best.pt", metrics={"val": {}})

    monkeypatch.setattr(mmkit.train, "train_stage1", record_stage1)
    fits = cross_fit_stage1(
        ds, fold_of, ModelConfig("unused"), TrainConfig(epochs=1), AugmentConfig(), out_dir=tmp_path
    )
    ids = np.array(ds.ids("train"))
    assert len(fits) == len(seen) == 3
    for k, splits in enumerate(seen):
        assert sorted(splits["train"]) == sorted(ids[fold_of != k])  # every row outside fold k ...
        assert not set(splits["train"]) & set(ids[fold_of == k])  # ... and none it will encode
        assert splits["val"] == ds.ids("val") and splits["test"] == []  # selects on val, never sees test
