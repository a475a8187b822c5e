"""Notebook 02 runs headlessly with papermill: the explorer cell does not block, the static grids and the
explorer's picture are images in the executed notebook, and with a stage-1 checkpoint it measures label
agreement per preset and strength."""

import json

import nbformat
from nbconvert import HTMLExporter
from notebook_checks import check_reads_well, widget_outputs

from mmkit.augment import save_preset
from mmkit.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig
from mmkit.data import load_dataset
from mmkit.run import execute_notebook
from mmkit.train import train_stage1


def test_notebook02_smoke(repo_root, tmp_path):
    food = tmp_path / "food"
    ds = load_dataset(DataConfig(data_root=str(food)))
    s1 = train_stage1(
        ds, ModelConfig("timm:test_resnet"), TrainConfig(epochs=1, lr=0.05), AugmentConfig(image_size=32, batch_size=32),
        out_dir=tmp_path / "s1",
    )  # fmt: skip
    # the preset: a file the explorer saved (food, stronger jitter), which every notebook's preset takes
    preset = str(save_preset("food", tmp_path / "preset_food.json", image_size=64, jitter=0.5))
    out = tmp_path / "out"
    metrics = execute_notebook(
        repo_root / "notebooks" / "02_augmentations.ipynb",
        out,
        {"data_root": str(food), "preset": preset, "checkpoint": str(s1.checkpoint)},
        smoke=True,
    )
    assert metrics["preset"] == preset and metrics["copies"] == 3 and metrics["image_size"] == 64
    assert metrics["batch_image_shape"] == [8 * 3, 3, 64, 64]
    n_train = metrics["views_per_epoch"] // 3
    assert metrics["batches_per_epoch"] == -(-n_train // 8)
    assert metrics["reproducible"] is True and metrics["epoch_changes_views"] is True
    # copies of a sample really differ, under every preset
    assert metrics["copy_pixel_diff"] > 1.0 and metrics["sample_pixel_diff"] > 1.0
    assert set(metrics["preset_copy_pixel_diff"]) == {"seed", "light", "food", "ultrasound", preset}
    assert all(v > 1.0 for v in metrics["preset_copy_pixel_diff"].values())
    for name in metrics["figures"]:
        assert (out / name).stat().st_size > 1000
    assert "label_agreement.png" in metrics["figures"]
    agreement = metrics["label_agreement"]  # 4 presets x 3 strengths, each a share of agreeing copies
    assert len(agreement) == 12 and {r["preset"] for r in agreement} == {
        "seed",
        "light",
        "food",
        "ultrasound",
    }
    assert all(0.0 <= r["agreement"] <= 1.0 and r["views"] > 0 for r in agreement)
    config = json.loads((out / "config.json").read_text())
    assert config["AugmentConfig"]["preset"] == preset and config["AugmentConfig"]["n_samples"] == 3

    nb = check_reads_well(out / "02_augmentations.ipynb")
    explorer = next(c for c in nb.cells if "augmentation_explorer(" in c.source and "import" not in c.source)
    kinds = [next(iter(o.get("data", {"stream": 0}))) for o in explorer.outputs]
    # the controls (a widget, its state saved) and the picture as a plain PNG output
    assert kinds == ["application/vnd.jupyter.widget-view+json", "image/png"], kinds
    assert widget_outputs(nb) == 1  # no progress bar or anything else is a widget
    table = next(c for c in nb.cells if c.source.startswith("agreement = None"))
    assert any("text/html" in o.get("data", {}) for o in table.outputs)  # the agreement table
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pngs >= 5  # batch, copies, presets, the explorer's picture, label agreement
    # rendered to HTML without a kernel, the pictures are there and nothing reports a missing widget
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(out / "02_augmentations.ipynb", as_version=4))
    assert body.count("data:image/png;base64") >= pngs and "Error displaying widget" not in body
