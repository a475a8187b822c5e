"""Class indices name the record's own class: in the dataset's targets and in every loader's batches."""

from pathlib import Path

import numpy as np

from mmkit.augment import make_loader
from mmkit.data import make_synthetic_food101, read_upmc_food101
from mmkit.data.records import Dataset, Record


def test_targets_index_each_records_own_class():
    classes = ["apple", "banana", "cherry"]
    recs = [Record(f"r{i}", Path(f"r{i}.jpg"), "t", classes[i % 3]) for i in range(9)]
    ds = Dataset("toy", classes, {"train": recs})
    assert ds.targets("train").tolist() == [0, 1, 2] * 3
    multi = Dataset(
        "toy", classes, {"train": [Record("m", Path("m.jpg"), "t", ["banana", "cherry"])]}, "multilabel"
    )
    assert multi.targets("train").tolist() == [[0.0, 1.0, 1.0]]


def test_loader_labels_are_the_records_classes(tmp_path):
    root = make_synthetic_food101(
        tmp_path / "f", n_classes=3, train_per_class=3, test_per_class=2, image_size=32
    )
    ds = read_upmc_food101(root, val_fraction=0.34)
    label_of = {r.id: r.label for s in ds.splits for r in ds.records(s)}
    for split in ds.splits:
        for batch in make_loader(ds, split, batch_size=4, preset="seed", image_size=32, shuffle=True):
            names = [ds.classes[int(i)] for i in np.asarray(batch["label"])]
            assert names == [label_of[i] for i in batch["id"]]
