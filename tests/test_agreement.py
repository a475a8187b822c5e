"""label_agreement: how often a model's prediction on augmented copies matches its clean-view prediction."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mmkit.agreement import label_agreement, model_image_size, predict_views
from mmkit.data.records import Dataset, Record


class Brightness(nn.Module):
    """Predicts 'a' for a bright image, 'b' for a dark one: a model whose answer we know for every view."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.norm, self.backbone.image_size = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), 32
        self.w = nn.Parameter(torch.tensor(50.0))
        self.classes = ["a", "b"]

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)) - 0.5  # normalised with mean 0, std 1: pixels / 255
        return torch.stack([self.w * m, -self.w * m], 1)


@pytest.fixture(scope="module")
def light_and_dark(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("agree")
    recs = []
    for i in range(6):
        p = root / f"x{i}.png"
        Image.fromarray(np.full((40, 40, 3), 255 if i % 2 == 0 else 0, np.uint8)).save(p)
        recs.append(Record(id=p.name, image_path=p, text="", label="a" if i % 2 == 0 else "b"))
    return Dataset("bright", ["a", "b"], {"train": recs, "val": recs, "test": []})


def test_predict_views_shapes_and_classes(light_and_dark):
    from mmkit.augment import preview

    views = preview(light_and_dark, "val", [0, 1], "seed", copies=3, image_size=32)
    idx, conf = predict_views(Brightness(), views)
    assert idx.shape == conf.shape == (2, 3)
    assert (idx[0] == 0).all() and (idx[1] == 1).all() and (conf > 0.5).all()
    assert model_image_size(Brightness()) == 32 and model_image_size(nn.Linear(1, 1), 64) == 64


def test_agreement_falls_where_the_augmentation_destroys_the_evidence(light_and_dark):
    table = label_agreement(
        light_and_dark, Brightness(), ("seed", "ultrasound"), (1.0, 5.0), n_samples=6, copies=8
    )
    assert list(table.columns) == [
        "preset", "strength", "agreement", "copy_accuracy", "clean_accuracy", "confidence", "views"
    ]  # fmt: skip
    assert len(table) == 4 and (table["views"] == 6 * 8).all()
    row = table.set_index(["preset", "strength"])
    assert row.loc[("seed", 1.0), "agreement"] == 1.0  # 15 degrees keep a white image mostly white
    assert row.loc[("seed", 1.0), "clean_accuracy"] == 1.0
    # zoomed out to half size with black borders, a white image turns dark: the label is lost
    assert row.loc[("ultrasound", 5.0), "agreement"] < 1.0
    assert row.loc[("ultrasound", 5.0), "copy_accuracy"] == row.loc[("ultrasound", 5.0), "agreement"]
