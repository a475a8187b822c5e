"""The verdict's statistics on hand-built predictions: the comparator is chosen on validation, identical rows
give a zero interval, the metrics match compute_metrics, Holm matches a hand computation, and the interval
covers a true zero difference 95% of the time in grids whose seeds share their test rows."""

import doctest

import numpy as np
import pandas as pd
import pytest

import mmkit.verdict as verdict_mod
from mmkit.metrics import compute_metrics
from mmkit.verdict import (
    BEST_SINGLE,
    holm,
    paired_bootstrap,
    predictions_path,
    verdict_family,
    verdict_words,
)


def _write(run, seed, method, scores, y, ids):
    path = predictions_path(run, seed, method)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, scores=scores, targets=y, ids=np.array(ids, dtype=np.str_))


def _onehot_scores(pred, n_classes):
    return np.eye(n_classes)[pred] * 2.0 - 1.0


def _grid(tmp_path, right, y, val, n_classes=3, groups=None):
    """runs.csv rows and saved predictions: ``right[method]`` [S, N] bool (a row is right or predicts the
    next class), ``val[method]`` the validation score of every seed."""
    rows = []
    ids = [f"r{i}" for i in range(len(y))]
    for method, ok in right.items():
        for s, row_ok in enumerate(ok):
            pred = np.where(row_ok, y, (y + 1) % n_classes)
            _write(tmp_path, s, method, _onehot_scores(pred, n_classes), y, ids)
            rows.append(
                {
                    "method": method,
                    "group": (groups or {}).get(method, "single modality"),
                    "seed": s,
                    "test_accuracy": float(row_ok.mean()),
                    "val_accuracy": val[method],
                }
            )
    return pd.DataFrame(rows)


def test_best_single_is_chosen_on_validation_not_test(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    right = {
        "text only": rng.random((2, 120)) < 0.9,  # best on test
        "image · frozen + linear": rng.random((2, 120)) < 0.6,  # best on validation
        "proposed": rng.random((2, 120)) < 0.8,
    }
    val = {"text only": 0.70, "image · frozen + linear": 0.75, "proposed": 0.9}
    df = _grid(tmp_path, right, y, val, groups={"proposed": "proposed"})
    plan = [{"claim": "(a) proposed vs best single", "proposed": "proposed", "comparator": BEST_SINGLE}]
    v = verdict_family(df, [tmp_path], "accuracy", plan, n_boot=500)
    c = v["family"][0]
    assert c["comparator"] == "image · frozen + linear" and c["comparator_chosen_on"] == "val_accuracy"
    expected = [
        float(right["proposed"][s].mean() - right["image · frozen + linear"][s].mean()) for s in (0, 1)
    ]
    assert c["per_seed_diff"] == pytest.approx(expected, abs=1e-12)
    assert v["correction"] == "holm" and v["metric"] == "accuracy" and v["n_boot"] == 500
    assert c["text"] in verdict_words(v)


def test_macro_f1_verdict_chooses_and_scores_on_macro_f1(tmp_path):
    # FPUS23's head task: most rows are one class, so "always the majority" wins accuracy, not macro-F1.
    rng = np.random.default_rng(8)
    n = 200
    y = (rng.random(n) < 0.2).astype(int)  # 80% class 0
    majority = np.zeros((2, n), int)
    balanced = np.where(rng.random((2, n)) < 0.65, y, 1 - y)
    proposed = np.where(rng.random((2, n)) < 0.85, y, 1 - y)
    rows, ids = [], [f"r{i}" for i in range(n)]
    names = ["0", "1"]
    for method, preds in (("majority", majority), ("balanced", balanced), ("proposed", proposed)):
        for s in range(2):
            scores = _onehot_scores(preds[s], 2)
            _write(tmp_path, s, method, scores, y, ids)
            m = compute_metrics(y, scores, "multiclass", names)
            group = "proposed" if method == "proposed" else "single modality"
            # validation agrees with test here: majority is best on accuracy, balanced on macro-F1
            rows.append({"method": method, "group": group, "seed": s, "val_accuracy": m["accuracy"],
                         "val_macro_f1": m["macro_f1"], "test_accuracy": m["accuracy"],
                         "test_macro_f1": m["macro_f1"]})  # fmt: skip
    df = pd.DataFrame(rows)
    plan = [{"claim": "(a)", "proposed": "proposed", "comparator": BEST_SINGLE}]
    c = verdict_family(df, [tmp_path], "macro_f1", plan, n_boot=200)["family"][0]
    assert c["comparator"] == "balanced" and c["comparator_chosen_on"] == "val_macro_f1"
    by = df.set_index(["method", "seed"])["test_macro_f1"]
    assert c["per_seed_diff"] == pytest.approx(
        [by["proposed", s] - by["balanced", s] for s in (0, 1)], abs=1e-12
    )
    assert "test macro_f1" in c["text"]
    assert (
        verdict_family(df, [tmp_path], "accuracy", plan, n_boot=200)["family"][0]["comparator"] == "majority"
    )


def test_one_seed_says_its_interval_covers_test_rows_only(tmp_path):
    rng = np.random.default_rng(9)
    y = rng.integers(0, 3, 100)
    df = _grid(
        tmp_path, {"a": rng.random((1, 100)) < 0.8, "b": rng.random((1, 100)) < 0.6}, y, {"a": 0, "b": 0}
    )
    c = verdict_family(df, [tmp_path], "accuracy", [{"claim": "x", "proposed": "a", "comparator": "b"}], 500)
    assert (
        c["family"][0]["seed_variance_estimated"] is False and "test-row noise only" in c["family"][0]["text"]
    )
    assert c["family"][0]["ci_low"] < c["family"][0]["diff_mean"] < c["family"][0]["ci_high"]


def test_identical_predictions_give_a_zero_interval(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    same = rng.random((3, 200)) < 0.7
    df = _grid(tmp_path, {"a": same, "b": same.copy()}, y, {"a": 0.5, "b": 0.6})
    plan = [{"claim": "(b) a vs b", "proposed": "a", "comparator": "b"}]
    c = verdict_family(df, [tmp_path], "accuracy", plan, n_boot=2000)["family"][0]
    assert (c["ci_low"], c["ci_high"], c["diff_mean"]) == (0.0, 0.0, 0.0)
    assert c["p_value"] == 1.0 and c["p_holm"] == 1.0 and c["decision"] == "not shown different"
    assert c["comparator_chosen_on"] == "named before the run"


def test_a_clear_difference_is_better_and_its_reverse_worse(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 400)
    good, bad = rng.random((3, 400)) < 0.9, rng.random((3, 400)) < 0.5
    df = _grid(tmp_path, {"good": good, "bad": bad}, y, {"good": 0.5, "bad": 0.5})
    plan = [
        {"claim": "(a) good vs bad", "proposed": "good", "comparator": "bad"},
        {"claim": "(b) bad vs good", "proposed": "bad", "comparator": "good"},
    ]
    fam = verdict_family(df, [tmp_path], "accuracy", plan, n_boot=2000)["family"]
    assert [c["decision"] for c in fam] == ["better", "worse"]
    assert fam[0]["ci_low"] > 0 > fam[1]["ci_high"]


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_multiclass_point_estimates_match_compute_metrics(metric):
    rng = np.random.default_rng(3)
    n, c = 150, 5
    y = rng.integers(0, c - 1, n)  # the last class never occurs nor is predicted: it counts in macro-F1, as 0
    a = rng.normal(size=(2, n, c)) + 1.5 * np.eye(c)[y] - 9.0 * np.eye(c)[c - 1]
    b = rng.normal(size=(2, n, c)) + 0.5 * np.eye(c)[y] - 9.0 * np.eye(c)[c - 1]
    r = paired_bootstrap(y, a, b, metric, n_boot=50)
    names = [str(k) for k in range(c)]
    expected = [
        compute_metrics(y, a[s], "multiclass", names)[metric]
        - compute_metrics(y, b[s], "multiclass", names)[metric]
        for s in range(2)
    ]
    assert r["per_seed_diff"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "mAP"])
def test_multilabel_point_estimates_match_compute_metrics(metric):
    rng = np.random.default_rng(4)
    n, c = 120, 4
    y = (rng.random((n, c)) < 0.3).astype(int)
    y[:, 3] = 0  # a label with no positive: left out of mAP, 0 in macro-F1
    # rounded scores make ties, which average precision counts as one threshold
    a = np.round(rng.normal(size=(2, n, c)) + 1.5 * y, 1)
    b = np.round(rng.normal(size=(2, n, c)) + 0.5 * y, 1)
    r = paired_bootstrap(y, a, b, metric, n_boot=50)
    names = [str(k) for k in range(c)]
    expected = [
        compute_metrics(y, a[s], "multilabel", names)[metric]
        - compute_metrics(y, b[s], "multilabel", names)[metric]
        for s in range(2)
    ]
    assert r["per_seed_diff"] == pytest.approx(expected, abs=1e-12)


def test_weighted_metrics_equal_compute_metrics_on_the_resampled_rows():
    # A replicate's weights are counts: the weighted metric is the metric of the rows repeated that often.
    rng = np.random.default_rng(5)
    n, c = 60, 3
    w = np.bincount(rng.integers(0, n, n), minlength=n)
    rows = np.repeat(np.arange(n), w)
    y = rng.integers(0, c, n)
    s = rng.normal(size=(n, c)) + np.eye(c)[y]
    ym = (rng.random((n, c)) < 0.4).astype(int)
    sm = np.round(rng.normal(size=(n, c)) + ym, 1)
    names = [str(k) for k in range(c)]
    for metric in ("accuracy", "macro_f1"):
        got = verdict_mod._Scorer(y, s, metric, False)(w[:, None].astype(float))[0]
        assert got == pytest.approx(compute_metrics(y[rows], s[rows], "multiclass", names)[metric], abs=1e-12)
    for metric in ("accuracy", "macro_f1", "mAP"):
        got = verdict_mod._Scorer(ym, sm, metric, True)(w[:, None].astype(float))[0]
        assert got == pytest.approx(
            compute_metrics(ym[rows], sm[rows], "multilabel", names)[metric], abs=1e-12
        )


def test_holm_matches_a_hand_computation():
    # sorted: .01 (x4 = .04), .02 (x3 = .06), .03 (x2 = .06), .04 (x1 = .04 -> kept monotone at .06)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.2]) == [0.2]


def test_decision_uses_the_holm_adjusted_p_value(tmp_path, monkeypatch):
    # Two claims with p = .03 each: each alone would be "better" at .05, Holm makes both .06.
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 50)
    ok = rng.random((2, 50)) < 0.7
    df = _grid(tmp_path, {"a": ok, "b": ok.copy()}, y, {"a": 0.5, "b": 0.5})
    real = verdict_mod.paired_bootstrap

    def fixed_p(*args, **kwargs):
        return {**real(*args, **kwargs), "p_value": 0.03, "diff_mean": 0.01}

    monkeypatch.setattr(verdict_mod, "paired_bootstrap", fixed_p)
    plan = [
        {"claim": "(a)", "proposed": "a", "comparator": "b"},
        {"claim": "(b)", "proposed": "b", "comparator": "a"},
    ]
    fam = verdict_family(df, [tmp_path], "accuracy", plan, n_boot=10)["family"]
    assert [c["p_holm"] for c in fam] == pytest.approx([0.06, 0.06])
    assert [c["decision"] for c in fam] == ["not shown different"] * 2
    assert (
        verdict_family(df, [tmp_path], "accuracy", plan[:1], n_boot=10)["family"][0]["decision"] == "better"
    )


def test_bad_plans_name_the_fix(tmp_path):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 30)
    ok = rng.random((1, 30)) < 0.7
    df = _grid(tmp_path, {"a": ok, "b": ok}, y, {"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="not a row of the grid"):
        verdict_family(df, [tmp_path], "accuracy", [{"claim": "x", "proposed": "c", "comparator": "a"}])
    with pytest.raises(ValueError, match="lacks"):
        verdict_family(df, [tmp_path], "accuracy", [{"claim": "x", "proposed": "a"}])
    with pytest.raises(ValueError, match="headline_metric"):
        verdict_family(df, [tmp_path], "f2", [{"claim": "x", "proposed": "a", "comparator": "b"}])
    with pytest.raises(ValueError, match="multi-hot"):
        paired_bootstrap(y, np.zeros((1, 30, 3)), np.zeros((1, 30, 3)), "mAP")


def test_module_examples():
    assert doctest.testmod(verdict_mod, optionflags=doctest.ELLIPSIS).failed == 0


def _simulated_grid(rng, n_seeds, n_rows=120, n_classes=3, seed_sd=0.15, row_sd=1.0, shared=0.7):
    """Two rows of a grid with the same expected accuracy, scored by ``n_seeds`` seeds on the same test rows.

    Each test row has a difficulty and a lean towards a or b (``row_sd``); each seed of a and of b shifts
    its accuracy (``seed_sd``); whether a seed gets a test row right is drawn per seed, from a draw the
    seeds share with probability ``shared`` (seeds agree on most rows, as networks trained on the same data
    do).
    Swapping a and b leaves the distribution unchanged, so the true difference is 0.
    """
    y = rng.integers(0, n_classes, n_rows)
    ease, lean = rng.normal(0.8, 1.0, n_rows), rng.normal(0.0, row_sd, n_rows)
    common = rng.random(n_rows)
    scores = []
    for sign in (1, -1):
        p = 1 / (1 + np.exp(-(ease + sign * lean + rng.normal(0, seed_sd, (n_seeds, 1)))))
        u = np.where(rng.random(p.shape) < shared, common, rng.random(p.shape))
        scores.append(_onehot_scores(np.where(u < p, y, (y + 1) % n_classes), n_classes))
    return y, scores[0], scores[1]


def _coverage(n_seeds, grids=1000, n_boot=1000, **noise):
    rng = np.random.default_rng(2024)
    hits = 0
    for g in range(grids):
        y, a, b = _simulated_grid(rng, n_seeds, **noise)
        r = paired_bootstrap(y, a, b, "accuracy", n_boot=n_boot, seed=g)
        hits += r["ci_low"] <= 0.0 <= r["ci_high"]
    return hits / grids


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_the_95_interval_covers_a_true_zero_95_percent_of_the_time(n_seeds):
    # 1000 grids with seed-to-seed and test-row noise of similar size (the mix where intervals that add the
    # seed part as a t, or that use Welch's degrees of freedom, stray most from 95%). 1,000 replicates per
    # grid instead of 10,000 keep the test to seconds; they only add Monte Carlo noise to each endpoint.
    # Resampling the test rows apart for each seed covers 75-86% here (drawing the weights inside the seed
    # loop), 83-89% with the old verdict's loop.
    assert 0.93 <= _coverage(n_seeds) <= 0.97


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_the_interval_covers_when_the_seeds_dominate_the_noise(n_seeds):
    # Seed-to-seed noise well above the test rows' (seed_sd 1.0, row_sd 0.2): here the seed part of the
    # interval carries it, and resampling the seeds themselves would under-cover (87% at 3 seeds).
    assert 0.93 <= _coverage(n_seeds, seed_sd=1.0, row_sd=0.2) <= 0.97


def test_replicates_where_map_is_undefined_are_counted_and_left_out():
    # one positive row in 40: about 37% of the row resamples miss it, and mAP is undefined there
    rng = np.random.default_rng(3)
    y = np.zeros((40, 2), dtype=np.int64)
    y[5, 0] = 1
    a, b = rng.normal(size=(3, 40, 2)), rng.normal(size=(3, 40, 2))
    r = paired_bootstrap(y, a, b, "mAP", n_boot=2000)
    assert 0.3 * 2000 < r["n_dropped"] < 0.45 * 2000
    assert np.isfinite([r["ci_low"], r["ci_high"], r["p_value"]]).all()
