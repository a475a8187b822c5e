"""Notebook 01 runs end to end with papermill and reports what the reader returns; FPUS23 only on FPUS23."""

import csv
import json

from notebook_checks import check_reads_well
from PIL import Image

from mmkit.config import DataConfig
from mmkit.data import load_dataset
from mmkit.run import execute_notebook

NOTEBOOK = "notebooks/01_explore_dataset.ipynb"


def test_notebook01_on_the_synthetic_default(repo_root, tmp_path):
    data_root = str(tmp_path / "food")
    metrics = execute_notebook(repo_root / NOTEBOOK, tmp_path / "out", {"data_root": data_root}, smoke=True)
    check_reads_well(tmp_path / "out" / "01_explore_dataset.ipynb")  # <= 20 outputs a cell, no dead widget
    ds = load_dataset(DataConfig(dataset="synthetic_food101", data_root=data_root))
    assert {k: metrics[f"n_{k}"] for k in ("train", "val", "test")} == ds.summary()
    assert metrics["n_classes"] == len(ds.classes) and metrics["classes"] == ds.classes
    assert sum(metrics["class_counts"]["test"].values()) == len(ds.records("test"))
    assert metrics["n_skipped"] == 0 and metrics["n_cross_split_duplicates"] == 0
    assert not any(k.startswith("fpus23") for k in metrics)  # boxes belong to FPUS23 runs only
    assert metrics["figures"] == ["class_balance.png", "examples.png", "text_lengths.png"]
    for name in metrics["figures"]:
        assert (tmp_path / "out" / name).stat().st_size > 1000
    assert not (tmp_path / "out" / "fpus23_boxes.png").exists()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["DataConfig"]["data_root"] == data_root


def test_notebook01_on_fpus23_draws_the_boxes(repo_root, tmp_path):
    params = {"dataset": "synthetic_fpus23", "data_root": str(tmp_path / "fpus")}
    metrics = execute_notebook(repo_root / NOTEBOOK, tmp_path / "out", params)
    assert (
        metrics["fpus23_n_boxes"] > 0
        and metrics["fpus23_n_frames"] == metrics["n_train"] + metrics["n_val"] + metrics["n_test"]
    )
    assert metrics["fpus23_unboxed_streams"]["choice"] == "keep"
    assert (
        "fpus23_boxes.png" in metrics["figures"]
        and (tmp_path / "out" / "fpus23_boxes.png").stat().st_size > 1000
    )


def test_notebook01_on_a_manifest_writes_nothing_about_fpus23(repo_root, tmp_path):
    rows = [["pic", "caption", "y", "event"]]
    for i in range(24):  # two captions per photo: the split groups by event, and says so
        if i % 2 == 0:
            Image.new("RGB", (24, 24), (10 * i, 80, 160)).save(tmp_path / f"{i}.png")
        rows.append(
            [f"{i - i % 2}.png", f"caption {i} about {'ab'[i % 4 // 2]}", "ab"[i % 4 // 2], f"e{i // 4}"]
        )
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "out"
    params = {
        "dataset": "manifest",
        "data_root": str(manifest),
        "image_col": "pic",
        "text_col": "caption",
        "label_col": "y",
        "group_col": "event",
        "test_fraction": 0.25,
        "val_fraction": 0.2,
    }
    metrics = execute_notebook(repo_root / NOTEBOOK, out, params)
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == 24
    text = (out / "metrics.json").read_text() + "".join(p.name for p in out.iterdir())
    assert "fpus23" not in text.lower()
    cells = json.loads((out / "01_explore_dataset.ipynb").read_text())["cells"]
    executed = json.dumps([c.get("outputs", []) for c in cells])  # what the run printed and showed
    assert "manifest has no boxes: nothing to draw" in executed
    assert "streams" not in executed  # the summary speaks of the manifest's groups, not of FPUS23 streams
    assert "Data warning" not in executed or "groups" in executed
