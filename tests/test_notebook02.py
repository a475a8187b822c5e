"""Notebook 02 runs headlessly with papermill: the explorer cell does not block and the static grids appear."""

import json

import nbformat

from mmkit.run import execute_notebook


def test_notebook02_smoke(repo_root, tmp_path):
    out = tmp_path / "out"
    metrics = execute_notebook(
        repo_root / "notebooks" / "02_augmentations.ipynb",
        out,
        {"data_root": str(tmp_path / "food"), "preset": "food"},
        smoke=True,
    )
    assert metrics["preset"] == "food" and metrics["copies"] == 3 and metrics["image_size"] == 64
    assert metrics["batch_image_shape"] == [8 * 3, 3, 64, 64]
    n_train = metrics["views_per_epoch"] // 3
    assert metrics["batches_per_epoch"] == -(-n_train // 8)
    assert metrics["reproducible"] is True and metrics["epoch_changes_views"] is True
    # copies of a sample really differ, under every preset
    assert metrics["copy_pixel_diff"] > 1.0 and metrics["sample_pixel_diff"] > 1.0
    assert set(metrics["preset_copy_pixel_diff"]) == {"seed", "light", "food", "ultrasound"}
    assert all(v > 1.0 for v in metrics["preset_copy_pixel_diff"].values())
    for name in metrics["figures"]:
        assert (out / name).stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["AugmentConfig"]["preset"] == "food" and config["AugmentConfig"]["n_samples"] == 3
    # the explorer cell ran and left a widget view; the static grids are images in the executed notebook
    nb = nbformat.read(out / "02_augmentations.ipynb", as_version=4)
    explorer = next(c for c in nb.cells if c.source.startswith("augmentation_explorer("))
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in explorer.outputs)
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pngs >= 3
