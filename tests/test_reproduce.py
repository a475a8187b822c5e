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
    # M=1 trains `copies` times the epochs (equal compute with M copies); copies=1 does not repeat it.
    assert stage1_variants(ReproduceConfig(ablation_blocks="first:2"), 4) == [
        (1, "all", 4),
        (4, "all", 1),
        (4, "first:2", 1),
    ]
    assert [v.tag for v in stage1_variants(ReproduceConfig(ablation_blocks="first:2"), 4)] == [
        "M=1, all, 4× epochs",
        "M=4, all",
        "M=4, first:2",
    ]
    assert stage1_variants(ReproduceConfig(ablation_blocks="first:1"), 1) == [
        (1, "all", 1),
        (1, "first:1", 1),
    ]


def test_markdown_table_names_k_views_and_share():
    s = summarize(
        pd.DataFrame(
            [
                {"method": "p", "group": "proposed", "seed": 0, "test_accuracy": 0.5, "bank_views": 8,
                 "stage2_views": 80, "approximation": True, "stage1_views": 24, "trainable_share": 0.25},
                {"method": "q", "group": "proposed", "seed": 0, "test_accuracy": 0.5, "bank_views": 80,
                 "stage2_views": 80, "approximation": False, "stage1_views": 24, "trainable_share": 1.0},
                {"method": "t", "group": "single modality", "seed": 0, "test_accuracy": 0.4},
            ]
        ),
        "test_accuracy",
    )  # fmt: skip
    table = markdown_table(s, "accuracy")
    assert "K (bank views)" in table and "views seen per image" in table
    assert (
        "| p | proposed | 50.00 ± n/a | 1 | 8 (approximation: 80 drawn from 8 cached) | 24 / 80 | 25.00% |"
        in table
    )
    assert (
        "| q | proposed | 50.00 ± n/a | 1 | 80 (each view once) | 24 / 80 | 100.00% |" in table
    )  # bank_views="epochs": every view drawn once, no approximation
    assert "| t | single modality | 40.00 ± n/a | 1 | – | – | – |" in table


def test_verdict_plan_names_the_three_claims():
    from mmkit.config import AugmentConfig, DataConfig, FusionConfig
    from mmkit.reproduce import grid_methods, verdict_plan
    from mmkit.verdict import BEST_SINGLE

    augment, repro = AugmentConfig(copies=4), ReproduceConfig()
    plan = verdict_plan(augment, FusionConfig(), repro)
    assert [(c["proposed"], c["comparator"]) for c in plan] == [
        ("proposed (M=4, all) + concat-linear", BEST_SINGLE),
        ("proposed (M=4, all) + concat-linear", "image+text · frozen + concat-linear"),
        ("proposed (M=4, all) + concat-linear", "proposed (M=1, all, 4× epochs) + concat-linear"),
    ]
    # another proposed head: the frozen backbone gets that head too, so claim (b) has its comparator
    gated = ReproduceConfig(proposed="proposed (M=4, all) + gated")
    plan = verdict_plan(augment, FusionConfig(), gated)
    assert plan[1] == {
        "claim": "(b) proposed vs the same fusion head on the frozen backbone",
        "proposed": "proposed (M=4, all) + gated",
        "comparator": "image+text · frozen + gated",
    }
    methods = grid_methods(DataConfig(), augment, FusionConfig(), gated)
    assert all(c["comparator"] in methods or c["comparator"] == BEST_SINGLE for c in plan)
    assert "image+text · frozen + gated" not in grid_methods(DataConfig(), augment, FusionConfig(), repro)
    # one copy: no M=1 comparison to make
    assert len(verdict_plan(AugmentConfig(copies=1), FusionConfig(), repro)) == 2


def test_a_stored_plan_refuses_another_proposed(tmp_path):
    from mmkit.reproduce import load_plan, store_plan

    plan = [{"claim": "(a)", "proposed": "proposed (M=4, all) + concat-linear", "comparator": "x"}]
    store_plan(tmp_path, plan[0]["proposed"], plan)
    store_plan(tmp_path, plan[0]["proposed"], plan)  # the same again: a resume
    other = [{**plan[0], "proposed": "proposed (M=4, all) + gated"}]
    with pytest.raises(
        ValueError, match=r"proposed='proposed \(M=4, all\) \+ concat-linear'.*gated.*new out_dir"
    ):
        store_plan(tmp_path, other[0]["proposed"], other)
    with pytest.raises(ValueError, match="new out_dir"):  # same proposed, another family
        store_plan(tmp_path, plan[0]["proposed"], plan + [{**plan[0], "claim": "(b)"}])
    assert load_plan(tmp_path) == {"proposed": plan[0]["proposed"], "plan": plan}


def test_trainable_share_of_the_layer_policy():
    from mmkit.models import ImageClassifier, apply_layer_policy, create_backbone, trainable_share

    def share(policy):
        return trainable_share(
            ImageClassifier(apply_layer_policy(create_backbone("timm:test_resnet"), policy), 3)
        )

    assert share("all") == 1.0 and 0.0 < share("first:1") < share("first:2") < 1.0 and share("none") == 0.0


def test_crossfit_summary_and_closing_words():
    from mmkit.config import AugmentConfig, FusionConfig
    from mmkit.reproduce import closing_words, crossfit_summary

    main, cross = "proposed (M=2, all) + late", "proposed (M=2, all) + late · cross-fitted (K=3)"
    summary = pd.DataFrame({"method": [main, cross, "text only"], "mean": [0.6, 0.55, 0.7]})
    timings = pd.DataFrame(
        {"phase": ["stage 1 (M=2, all)", "stage 1 cross-fit (3 folds)", "stage 1 (M=2, all)", "bank build"],
         "seconds": [3.0, 12.0, 5.0, 99.0]}
    )  # fmt: skip
    c = crossfit_summary(
        summary, timings, 2, AugmentConfig(copies=2), FusionConfig(head="late", stage1_folds=3)
    )
    assert c == {
        "folds": 3,
        "stage1_seconds_per_seed": 4.0,
        "crossfit_stage1_seconds_per_seed": 6.0,
        "cost_ratio": 1.5,
        "test_mean_k1": 0.6,
        "test_mean_crossfit": 0.55,
    }
    assert crossfit_summary(summary, timings, 2, AugmentConfig(copies=2), FusionConfig(stage1_folds=1)) == {}
    results = {"metric": "test_macro_f1", "n_seeds": 2,
               "summary": {m: {"mean": v, "std": 0.01, "n": 2} for m, v in zip(summary["method"], summary["mean"])}}  # fmt: skip
    words = closing_words(results, "demo", c)
    assert words.startswith(
        "Over 2 seeds on **demo**, the best row overall by test macro_f1 was *text only* at 70.0% ± 1.0."
    )
    assert "cost 1.5 times" in words and "from 60.0% to 55.0%" in words


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
        f"image · fine-tuned (M=1, all, {m}× epochs)",
        f"image · fine-tuned (M={m}, all)",
        f"image · fine-tuned (M={m}, first:1)",
        f"proposed (M=1, all, {m}× epochs) + concat-linear",
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
    # The verdict: the family named before the run, each claim with its paired CI, Holm-corrected.
    v = metrics["verdict"]
    assert v["metric"] == "accuracy" and v["correction"] == "holm"
    proposed = f"proposed (M={m}, all) + concat-linear"
    singles = {"text only", "image · frozen + linear"} | {
        k for k in summary if k.startswith("image · fine-tuned")
    }
    a, b, c = v["family"]
    # (a)'s comparator is the single-modality row best on validation, named in the family
    assert (
        a["proposed"] == proposed
        and a["comparator"] in singles
        and a["comparator_chosen_on"] == "val_accuracy"
    )
    assert (b["proposed"], b["comparator"]) == (proposed, "image+text · frozen + concat-linear")
    assert (c["proposed"], c["comparator"]) == (proposed, f"proposed (M=1, all, {m}× epochs) + concat-linear")
    for claim in v["family"]:
        assert (
            claim["ci_low"] <= claim["diff_mean"] <= claim["ci_high"] and claim["p_holm"] >= claim["p_value"]
        )
        assert len(claim["per_seed_diff"]) == n_seeds and claim["text"]
    assert json.loads((tmp_path / "plan.json").read_text())["proposed"] == proposed
    # M=1 at equal compute saw as many augmented views per image as M copies, in both stages
    runs = pd.read_csv(tmp_path / "runs.csv")
    views = runs.groupby("method")[["stage1_views", "stage2_views"]].first()
    one, main = f"proposed (M=1, all, {m}× epochs) + concat-linear", proposed
    assert (
        views.loc[one].tolist()
        == views.loc[main].tolist()
        == [
            smoke["epochs"] * m,
            smoke["stage2_epochs"] * m,
        ]
    )
    assert views.loc[f"image · fine-tuned (M=1, all, {m}× epochs)", "stage1_views"] == smoke["epochs"] * m
    # every stage-1 row reports the share of the backbone it trained; first:1 trains part of it
    share = runs.groupby("method")["trainable_share"].first()
    assert share[f"image · fine-tuned (M={m}, all)"] == 1.0
    assert 0.0 < share[f"image · fine-tuned (M={m}, first:1)"] < 1.0
    # K names the bank's views; smoke's K=2 < stage-2 epochs x M: an approximation, said in the table
    k = runs.groupby("method")["bank_views"].first()
    assert k[proposed] == smoke["bank_views"] and pd.isna(k["text only"])
    table = (tmp_path / "comparison.md").read_text()
    k = smoke["bank_views"]
    assert f"| {k} (approximation: {smoke['stage2_epochs'] * m} drawn from {k} cached) |" in table
    # text_folds is honoured; only the cross-fitted row's text uses the stage-1 folds
    folds = runs.groupby("method")["text_folds"].first()
    cross_row = f"{proposed} · cross-fitted (K={smoke['stage1_folds']})"
    assert folds[cross_row] == smoke["stage1_folds"] != smoke["text_folds"]
    assert folds["text only"] == folds[proposed] == smoke["text_folds"]
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
    assert "The paper's figures, on the paper's data" in table and "92.64" in table
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


def test_notebook05_fpus23_head_scores_macro_f1(tmp_path):
    # FPUS23 head names macro-F1 its headline (ds.meta; most test rows are one class): the table, the
    # baseline choice, the verdict, the summary and the saved JSON must all use it, not accuracy.
    params = {
        "dataset": "synthetic_fpus23",
        "task": "head",
        "n_seeds": 1,
        "stage1_folds": 1,
        "view_ablation": False,
    }
    metrics = execute_notebook(NOTEBOOKS / "05_reproduce.ipynb", tmp_path, params, smoke=True)
    assert metrics["metric"] == "test_macro_f1"
    assert json.loads((tmp_path / "grid.json").read_text())["metric"] == "test_macro_f1"
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert "val_macro_f1" in runs.columns and "val_accuracy" not in runs.columns
    v = metrics["verdict"]
    assert v["metric"] == "macro_f1" and len(v["family"]) == 3
    assert v["family"][0]["comparator_chosen_on"] == "val_macro_f1"
    best_on_val = runs[runs["group"].isin(["single modality", "stage 1"])].set_index("method")["val_macro_f1"]
    assert v["family"][0]["comparator"] == best_on_val.idxmax()
    test = runs.set_index("method")["test_macro_f1"]
    for claim in v["family"]:  # the verdict's difference is the table's macro-F1 difference
        diff = test[claim["proposed"]] - test[claim["comparator"]]
        assert claim["per_seed_diff"][0] == pytest.approx(diff, abs=1e-6)
    assert "test macro_f1 (%)" in (tmp_path / "comparison.md").read_text()
    summary = metrics["summary"]
    assert summary["text only"]["mean"] == pytest.approx(test["text only"])


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


def test_text_only_row_is_the_same_with_and_without_cross_fitting(tmp_path):
    # text_folds is honoured: turning cross-fitting on (stage1_folds=2) leaves the text-only baseline as it
    # was; only the cross-fitted row's text uses the stage-1 folds.
    import dataclasses

    import numpy as np

    from mmkit.config import TextConfig
    from mmkit.reproduce import _Grid, predictions_path

    ds, cfg = _tiny_grid(tmp_path)
    scores, text = {}, {}
    for k in (1, 2):
        one = {
            **cfg,
            "text": TextConfig(text_folds=3),
            "fusion": dataclasses.replace(cfg["fusion"], stage1_folds=k),
        }
        grid = _Grid(ds, **one, out_dir=tmp_path / f"k{k}", device="cpu", resume=False)
        rows, _, _ = grid.run_cell(0, "baselines")
        assert {r["method"]: r["text_folds"] for r in rows}["text only"] == 3
        with np.load(predictions_path(tmp_path / f"k{k}", 0, "text only")) as z:
            scores[k] = z["scores"]
        ids = ds.ids("train")
        text[k] = grid.text_features(0, "baselines").lookup("train", ids)
    np.testing.assert_array_equal(scores[1], scores[2])
    np.testing.assert_array_equal(text[1], text[2])
    crossfit_text = grid.text_features(0, "crossfit", crossfit=True).lookup("train", ids)
    assert not np.allclose(crossfit_text, text[2])  # 2 stage-1 folds, not 3 text folds


def test_text_folds_differing_from_stage1_folds_warns(tmp_path):
    import dataclasses

    from mmkit.config import TextConfig
    from mmkit.reproduce import run_comparison

    ds, cfg = _tiny_grid(tmp_path)
    cfg = {**cfg, "text": TextConfig(text_folds=3), "repro": dataclasses.replace(cfg["repro"], seeds=[])}
    # the empty seed list stops the run right after its checks, before anything trains
    with (
        pytest.warns(UserWarning, match="text_folds=3 but stage1_folds=2"),
        pytest.raises(ValueError, match="seeds"),
    ):
        run_comparison(ds, out_dir=tmp_path / "x", **cfg)


def test_grid_jobs_gather_and_resume(tmp_path, monkeypatch):
    # Two one-seed jobs gathered give the table of one two-seed run; a rerun reuses every finished cell.
    import dataclasses
    import shutil

    import mmkit.train as train_mod
    from mmkit.reproduce import gather, load_plan, run_comparison, save_comparison, verdict_plan
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
    plan = load_plan(tmp_path / "both")["plan"]
    assert plan == verdict_plan(both["augment"], both["fusion"], both["repro"])
    results = save_comparison(df, "test_accuracy", tmp_path / "both", plan=plan, n_boot=100)
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
    # the verdict was fixed at the first run: a resume that names another proposed row is refused
    gated = {**both, "repro": dataclasses.replace(both["repro"], proposed="proposed (M=2, all) + gated")}
    with pytest.raises(
        ValueError, match=r"concat-linear.*this run names proposed='proposed \(M=2, all\) \+ gated'"
    ):
        run_comparison(ds, out_dir=tmp_path / "both", **gated)
    # jobs of one grid must share the plan
    grid1 = json.loads((tmp_path / "job1" / "grid.json").read_text())
    grid1["plan"] = grid1["plan"][:1]
    (tmp_path / "job1" / "grid.json").write_text(json.dumps(grid1))
    with pytest.raises(ValueError, match="differ in plan"):
        gather([tmp_path / "job0", tmp_path / "job1"], tmp_path / "bad")
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


def test_gather_refuses_a_run_without_a_plan(tmp_path):
    from mmkit.reproduce import gather

    run = tmp_path / "old"
    run.mkdir()
    pd.DataFrame(
        [{"method": "text only", "group": "single modality", "seed": 0, "test_accuracy": 0.5}]
    ).to_csv(run / "runs.csv", index=False)
    grid = {"proposed": "p", "task": "multiclass", "metric": "test_accuracy", "methods": ["text only"]}
    (run / "grid.json").write_text(json.dumps(grid))
    with pytest.raises(ValueError, match="holds no verdict plan"):
        gather([run], tmp_path / "out")
