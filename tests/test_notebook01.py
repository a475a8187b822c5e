"""Notebook 01 runs end to end with papermill and reports what the reader returns."""

import json

from notebook_checks import check_reads_well

from mmkit.config import DataConfig
from mmkit.data import load_dataset
from mmkit.run import execute_notebook


def test_notebook01_on_the_synthetic_default(repo_root, tmp_path):
    data_root = str(tmp_path / "food")
    metrics = execute_notebook(
        repo_root / "notebooks" / "01_explore_dataset.ipynb",
        tmp_path / "out",
        {"data_root": data_root},
        smoke=True,
    )
    check_reads_well(tmp_path / "out" / "01_explore_dataset.ipynb")  # <= 20 outputs a cell, no dead widget
    ds = load_dataset(DataConfig(dataset="synthetic_food101", data_root=data_root))
    assert {k: metrics[f"n_{k}"] for k in ("train", "val", "test")} == ds.summary()
    assert metrics["n_classes"] == len(ds.classes) and metrics["classes"] == ds.classes
    assert sum(metrics["class_counts"]["test"].values()) == len(ds.records("test"))
    assert metrics["n_skipped"] == 0 and metrics["fpus23_n_boxes"] > 0 and metrics["fpus23_n_frames"] > 0
    for name in metrics["figures"]:
        assert (tmp_path / "out" / name).stat().st_size > 1000
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["DataConfig"]["data_root"] == data_root
