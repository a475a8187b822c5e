"""Notebook 04 executes headlessly with its smoke parameters and reports what it promises."""

from __future__ import annotations

from pathlib import Path

from notebook_checks import check_reads_well

from mmkit.heads import HEADS
from mmkit.run import NOTEBOOKS, execute_notebook

NOTEBOOK = NOTEBOOKS / "04_multimodal_fusion.ipynb"


def test_notebook04_smoke(tmp_path):
    out = tmp_path / "nb04"
    metrics = execute_notebook(NOTEBOOK, out, {"bank_dir": str(tmp_path / "bank")}, smoke=True)
    check_reads_well(
        out / "04_multimodal_fusion.ipynb"
    )  # the results table is not behind "Show more outputs"
    assert metrics["task"] == "multiclass" and metrics["head"] == "concat-linear"
    assert set(metrics["heads"]) == set(HEADS)
    assert set(metrics["baselines"]) == {"image-only", "text-only"}
    chance = 1 / 8  # the synthetic default has 8 classes
    for name, row in {**metrics["heads"], **metrics["baselines"]}.items():
        for key in ("val_accuracy", "test_accuracy", "val_macro_f1", "test_macro_f1"):
            assert 0.0 <= row[key] <= 1.0, (name, key)
        assert row["test_accuracy"] > 2 * chance, name  # every method learned something
    best = max(r["test_accuracy"] for r in metrics["heads"].values())
    assert best > metrics["baselines"]["image-only"]["test_accuracy"]
    assert metrics["test_accuracy"] == metrics["heads"]["concat-linear"]["test_accuracy"]
    assert set(metrics["missing"]["test"]) == {"both", "no_text", "no_image"}
    assert metrics["missing"]["test"]["both"]["accuracy"] == metrics["test_accuracy"]
    assert metrics["feature_bank"] and metrics["bank_reused"] is False and metrics["text_out_of_fold"]
    leak = metrics["text_leakage"]  # in-sample text logits flatter the training rows; out-of-fold ones don't
    assert leak["train, in-sample"] > leak["train, out-of-fold"] + 0.1
    key = metrics["bank_key"]
    assert key["backbone"] == "timm:test_resnet" and key["views"] == 2 and key["image_size"] == 32
    assert Path(metrics["checkpoint"]).is_file()
    for figure in metrics["figures"]:
        assert (out / figure).stat().st_size > 1000, figure
    assert (out / "04_multimodal_fusion.ipynb").exists() and (out / "config.json").exists()
    # the saved model reloads and reproduces the notebook's test predictions exactly (CPU)
    import numpy as np
    import pandas as pd

    from mmkit.config import DataConfig
    from mmkit.data import load_dataset
    from mmkit.model import load_model

    assert metrics["model_dir"] == str(out / "model") and metrics["predictions"] == "predictions_test.csv"
    preds = pd.read_csv(out / "predictions_test.csv")
    ds = load_dataset(DataConfig())  # the notebook's default dataset
    recs = ds.records("test")
    assert preds["id"].astype(str).tolist() == [r.id for r in recs]
    assert preds["label"].tolist() == [r.label for r in recs]
    model = load_model(out / "model")
    cols = [f"p_{c}" for c in ds.classes]
    probs = model.predict([r.image_path for r in recs], [r.text for r in recs])
    assert np.array_equal(probs, preds[cols].to_numpy(np.float32))
    assert (preds["pred"] == [ds.classes[i] for i in probs.argmax(1)]).all()
