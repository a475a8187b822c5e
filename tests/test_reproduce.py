"""Notebook 05's comparison: the summary arithmetic, and the notebook executed with smoke parameters."""

import json
import math

import pandas as pd
import pytest
from notebook_checks import check_reads_well

from mmkit.config import ReproduceConfig
from mmkit.reproduce import PAPER_FIGURES, markdown_table, stage1_variants, summarize
from mmkit.run import NOTEBOOKS, execute_notebook, smoke_parameters


def test_summarize_mean_std_in_first_seen_order():
    df = pd.DataFrame(
        [
            {"method": "b", "group": "g2", "seed": 0, "test_accuracy": 0.2},
            {"method": "a", "group": "g1", "seed": 0, "test_accuracy": 0.5},
            {"method": "a", "group": "g1", "seed": 1, "test_accuracy": 0.7},
            {"method": "a", "group": "g1", "seed": 2, "test_accuracy": 0.9},
        ]
    )
    s = summarize(df, "test_accuracy")
    assert list(s["method"]) == ["b", "a"]
    a = s.set_index("method").loc["a"]
    assert a["mean"] == pytest.approx(0.7) and a["std"] == pytest.approx(0.2) and a["n"] == 3
    assert s.set_index("method").loc["b", "std"] == 0.0  # one seed: no spread, not NaN
    table = markdown_table(s, "accuracy")
    assert "| a | g1 | 70.00 ± 20.00 | 3 |" in table
    assert "| b | g2 | 20.00 ± n/a | 1 |" in table  # one seed: no "± 0.00" that reads as measured


def test_stage1_variants():
    assert stage1_variants(ReproduceConfig(ablation_blocks="first:2"), 4) == [
        (1, "all"),
        (4, "all"),
        (4, "first:2"),
    ]
    assert stage1_variants(ReproduceConfig(ablation_blocks="first:1"), 1) == [(1, "all"), (1, "first:1")]


def test_paper_figures_are_the_published_ones():
    figures = {m: a for _, m, a in PAPER_FIGURES}
    assert figures["proposed · ViT-L"] == 92.64 and figures["image · fine-tuned ViT-L"] == 75.18
    assert len(PAPER_FIGURES) == 11


def test_notebook05_smoke(tmp_path):
    notebook = NOTEBOOKS / "05_reproduce.ipynb"
    metrics = execute_notebook(notebook, tmp_path, smoke=True)
    check_reads_well(tmp_path / "05_reproduce.ipynb")  # one grid bar, no dead widget
    smoke = smoke_parameters(notebook)
    n_seeds, m = smoke["n_seeds"], smoke["copies"]
    assert metrics["n_seeds"] == n_seeds and metrics["metric"] == "test_accuracy"
    summary = metrics["summary"]
    expected = {
        "text only",
        "image · frozen + linear",
        "image+text · frozen + concat-linear",
        "image · fine-tuned (M=1, all)",
        f"image · fine-tuned (M={m}, all)",
        f"image · fine-tuned (M={m}, first:1)",
        "proposed (M=1, all) + concat-linear",
        f"proposed (M={m}, all) + concat-linear",
        f"proposed (M={m}, all) + concat-mlp",
        f"proposed (M={m}, all) + late",
        f"proposed (M={m}, all) + gated",
        f"proposed (M={m}, first:1) + concat-linear",
        f"proposed (M={m}, all) + concat-linear · cross-fitted (K={smoke['stage1_folds']})",
    }
    assert set(summary) == expected
    for row in summary.values():
        assert row["n"] == n_seeds and 0.0 <= row["mean"] <= 1.0 and not math.isnan(row["std"])
    # The verdict: the paper's row, against the single-modality row best on validation, with a CI.
    v = metrics["verdict"]
    assert v["proposed"] == f"proposed (M={m}, all) + concat-linear"
    singles = {"text only", "image · frozen + linear"} | {
        k for k in summary if k.startswith("image · fine-tuned")
    }
    assert v["baseline"] in singles and v["ci_low"] <= v["diff_mean"] <= v["ci_high"]
    assert v["better"] == (v["ci_low"] > 0) and len(v["per_seed_diff"]) == n_seeds
    cross = metrics["cross_fitting"]
    assert cross["folds"] == smoke["stage1_folds"] and cross["crossfit_stage1_seconds_per_seed"] > 0
    assert any(k.startswith("stage 1 cross-fit") for k in metrics["time_breakdown_s"])
    assert "text features" in metrics["time_breakdown_s"] and "bank build" in metrics["time_breakdown_s"]
    # Joining the modalities helps on the synthetic data even with smoke-sized training: the
    # traditional fusion beats the frozen image features alone by a wide margin.
    assert (
        summary["image+text · frozen + concat-linear"]["mean"]
        > summary["image · frozen + linear"]["mean"] + 0.1
    )
    table = (tmp_path / "comparison.md").read_text()
    assert "The paper's figures, on the paper's data" in table and "92.64" in table
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == len(expected) * n_seeds
    assert (tmp_path / "comparison.png").exists() and (tmp_path / "comparison.csv").exists()
    # the first seed's proposed model is saved, and reloaded it scores what the grid recorded for it
    from mmkit.config import DataConfig
    from mmkit.data import load_dataset
    from mmkit.model import load_model

    model = load_model(tmp_path / "model")
    ds = load_dataset(DataConfig())  # the notebook's default dataset
    # `mmkit predict` cleans manifest texts as this dataset's reader cleaned the training texts
    assert model.preprocess["text_cleaning"] == ds.meta["text_cleaning"] == "food101_title"
    recs = ds.records("test")
    probs = model.predict([r.image_path for r in recs], [r.text for r in recs])
    accuracy = float((probs.argmax(1) == ds.targets("test")).mean())
    first = runs[
        (runs["method"] == f"proposed (M={m}, all) + concat-linear") & (runs["seed"] == runs["seed"].min())
    ]
    assert accuracy == pytest.approx(float(first["test_accuracy"].iloc[0]), abs=1e-9)


def test_text_options_reach_the_encoder(monkeypatch):
    # TextConfig.text_options is how a notebook asks for e.g. hf:gpt2 in classifier mode.
    import mmkit.text as text_mod
    from mmkit.config import AugmentConfig, FusionConfig, ModelConfig, TextConfig, TrainConfig
    from mmkit.experiment import run_fusion_experiment

    seen = {}

    def fake(dataset, encoder, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(text_mod, "compute_text_features", fake)
    with pytest.raises(RuntimeError, match="stop here"):
        run_fusion_experiment(
            None,
            augment=AugmentConfig(),
            model=ModelConfig(),
            train=TrainConfig(),
            text=TextConfig(text_encoder="hf:x", text_options={"mode": "classifier", "pooling": "last"}),
            fusion=FusionConfig(),
        )
    assert seen["mode"] == "classifier" and seen["pooling"] == "last" and seen["folds"] == 5


def test_notebook05_fpus23_organs_with_view_ablation(tmp_path):
    # FPUS23 adds the rows without the view field; the organs task is multi-label, scored by mAP.
    params = {"dataset": "synthetic_fpus23", "task": "organs", "n_seeds": 1, "stage1_folds": 1}
    metrics = execute_notebook(NOTEBOOKS / "05_reproduce.ipynb", tmp_path, params, smoke=True)
    assert metrics["task"] == "multilabel" and metrics["metric"] == "test_mAP"
    m = smoke_parameters(NOTEBOOKS / "05_reproduce.ipynb")["copies"]
    summary = metrics["summary"]
    assert "text only · no view field" in summary
    assert f"proposed (M={m}, all) + concat-linear · no view field" in summary
    for row in summary.values():
        assert row["n"] == 1 and 0.0 <= row["mean"] <= 1.0 and row["std"] is None
    assert (
        "± n/a" in (tmp_path / "comparison.md").read_text()
        and "± 0.00" not in (tmp_path / "comparison.md").read_text()
    )
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert "test_mAP" in runs.columns and runs["test_mAP"].notna().all()


def _tiny_grid(tmp_path):
    from mmkit.config import AugmentConfig, DataConfig, FusionConfig, ModelConfig, TextConfig, TrainConfig
    from mmkit.data import make_synthetic_food101, read_upmc_food101

    root = make_synthetic_food101(
        tmp_path / "food", n_classes=3, train_per_class=12, test_per_class=5, image_size=32
    )
    ds = read_upmc_food101(root, val_fraction=0.2)
    cfg = dict(
        data=DataConfig(), augment=AugmentConfig(image_size=32, copies=2, batch_size=16),
        model=ModelConfig(backbone="timm:test_resnet"), train=TrainConfig(epochs=1, lr=0.05, amp=False),
        text=TextConfig(text_folds=2), fusion=FusionConfig(bank_views=2, stage1_folds=2),
        repro=ReproduceConfig(stage2_epochs=2, n_boot=100),
    )  # fmt: skip
    return ds, cfg


def test_grid_jobs_gather_and_resume(tmp_path, monkeypatch):
    # Two one-seed jobs gathered give the table of one two-seed run; a rerun reuses every finished cell.
    import dataclasses
    import shutil

    import mmkit.train as train_mod
    from mmkit.reproduce import gather, proposed_method, run_comparison, save_comparison
    from mmkit.run import main

    ds, cfg = _tiny_grid(tmp_path)
    for seed in (0, 1):
        one = {**cfg, "repro": dataclasses.replace(cfg["repro"], seeds=[seed])}
        run_comparison(ds, out_dir=tmp_path / f"job{seed}", **one)
    assert (
        main(["gather", str(tmp_path / "job0"), str(tmp_path / "job1"), "--out", str(tmp_path / "gathered")])
        == 0
    )
    # One run over both seeds into a folder holding seed 0's cells: seed 0 is read back, seed 1 computed.
    shutil.copytree(tmp_path / "job0", tmp_path / "both")
    both = {**cfg, "repro": dataclasses.replace(cfg["repro"], n_seeds=2)}
    df = run_comparison(ds, out_dir=tmp_path / "both", **both)
    grid = json.loads((tmp_path / "both" / "grid.json").read_text())
    assert {c.split("/")[0] for c in grid["reused_cells"]} == {"seed0"} and len(grid["reused_cells"]) == 5
    proposed = proposed_method(both["repro"], both["augment"], both["fusion"])
    results = save_comparison(
        df, "test_accuracy", tmp_path / "both", proposed=proposed, task=ds.task, n_boot=100
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "gathered" / "comparison.csv"),
        pd.read_csv(tmp_path / "both" / "comparison.csv"),
    )
    gathered = json.loads((tmp_path / "gathered" / "metrics.json").read_text())
    assert gathered["verdict"] == json.loads(json.dumps(results["verdict"]))
    assert (tmp_path / "gathered" / "comparison.png").exists()
    assert any("cross-fitted (K=2)" in m for m in df["method"])

    def no_stage1(*args, **kwargs):
        raise AssertionError("a finished cell was rerun")

    monkeypatch.setattr(train_mod, "train_stage1", no_stage1)
    again = run_comparison(ds, out_dir=tmp_path / "both", **both)
    pd.testing.assert_frame_equal(df, again)
    with pytest.raises(ValueError, match="seed 0 is in both"):
        gather([tmp_path / "job0", tmp_path / "both"], tmp_path / "bad")
    # a run killed inside a cell left that cell's record unfinished (no rows): the rerun computes it again
    monkeypatch.undo()
    shutil.copytree(tmp_path / "job0", tmp_path / "killed")
    record = tmp_path / "killed" / "cells" / "seed0" / "baselines.json"
    record.write_text(json.dumps({"hash": json.loads(record.read_text())["hash"], "finished": False}))
    run_comparison(
        ds, out_dir=tmp_path / "killed", **{**cfg, "repro": dataclasses.replace(cfg["repro"], seeds=[0])}
    )
    killed = json.loads((tmp_path / "killed" / "grid.json").read_text())
    assert "seed0/baselines" not in killed["reused_cells"] and len(killed["reused_cells"]) == 4


def test_proposed_is_checked_before_the_run(tmp_path):
    from mmkit.reproduce import run_comparison

    ds, cfg = _tiny_grid(tmp_path)
    cfg["repro"] = ReproduceConfig(proposed="proposed (M=9, all) + gated")
    with pytest.raises(ValueError, match="not a row of this grid"):
        run_comparison(ds, out_dir=tmp_path / "x", **cfg)
