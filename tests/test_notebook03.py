"""Notebook 03 runs end to end with its smoke parameters; its numbers agree with its own checkpoint."""

import numpy as np
import torch
from notebook_checks import check_reads_well

from mmkit.config import AugmentConfig, DataConfig
from mmkit.data import load_dataset
from mmkit.run import execute_notebook, smoke_parameters
from mmkit.train import image_forward, load_stage1, predict, stage1_loaders


def test_notebook03_smoke(repo_root, tmp_path):
    torch.set_num_threads(1)
    notebook = repo_root / "notebooks" / "03_unimodal_finetune.ipynb"
    data_root = str(tmp_path / "food")
    out = tmp_path / "out"
    m = execute_notebook(notebook, out, {"data_root": data_root}, smoke=True)
    check_reads_well(out / "03_unimodal_finetune.ipynb")  # <= 20 outputs a cell, no dead widget
    smoke = smoke_parameters(notebook)
    assert smoke["backbone"].startswith("timm:test_")  # the smoke run stays tiny

    history = m["history"]
    assert m["epochs"] == len(history) == smoke["epochs"]
    val = [h["val_accuracy"] for h in history]
    assert m["best_epoch"] == int(np.argmax(val)) and m["val_accuracy"] == max(val)  # selected on val
    for name in m["figures"]:
        assert (out / name).stat().st_size > 1000

    ds = load_dataset(DataConfig(dataset="synthetic_food101", data_root=data_root))
    assert m["classes"] == list(ds.classes) and m["n_test"] == len(ds.records("test"))
    assert np.asarray(m["test_confusion_matrix"]).sum() == m["n_test"]
    # the synthetic images carry their class: a few epochs of a tiny model beat chance by far
    assert m["test_accuracy"] > 2 / len(ds.classes)

    # the checkpoint it names holds the selected model: scoring test with it gives the reported accuracy
    clf = load_stage1(m["checkpoint"])
    assert clf.backbone.name == smoke["backbone"]
    loaders = stage1_loaders(ds, AugmentConfig(image_size=smoke["image_size"], batch_size=32), seed=0)
    scores, y, _ = predict(clf, loaders["test"], image_forward(clf.backbone.norm), torch.device("cpu"))
    assert float((scores.argmax(1) == y).mean()) == m["test_accuracy"]
