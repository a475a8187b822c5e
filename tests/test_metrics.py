"""compute_metrics: the numbers every stage reports, checked against values worked out by hand."""

import math

import numpy as np
import pytest
import torch

from mmkit.metrics import compute_metrics, selection_value


def test_multiclass_by_hand():
    y = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 0, 2]
    scores = np.eye(3)[pred] * 2.0 - 1.0
    m = compute_metrics(y, scores, "multiclass", ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: a: p=1/2 r=1/2 -> .5; b: p=2/3 r=1 -> .8; c: p=1 r=1/2 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["b"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["c"]["support"] == 2
    assert m["n"] == 6 and "roc_auc" not in m


def test_multiclass_keeps_absent_classes_in_the_matrix_and_takes_tensors():
    y = torch.tensor([0, 0, 1])
    scores = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 3.0, 0]])
    m = compute_metrics(y, scores, "multiclass", ["a", "b", "never"])
    assert np.array(m["confusion_matrix"]).shape == (3, 3)
    assert m["per_class"]["never"]["support"] == 0
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # mean recall over present classes


def test_binary_auc_ranks_by_logit_difference():
    y = [0, 0, 1, 1]
    scores = [[0.0, -1.0], [0.0, 0.5], [0.0, 0.2], [0.0, 2.0]]  # ranks: 0.2 < 0.5 -> one wrong pair of four
    m = compute_metrics(y, scores, "multiclass", ["no", "yes"])
    assert m["roc_auc"] == pytest.approx(0.75)


def test_multilabel_per_label_f1_and_map():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    s = np.array([[2.0, -1, -1], [-0.5, 1, -1], [-1, 0.5, -2], [-1, 2, -3]])
    m = compute_metrics(y, s, "multilabel", ["head", "arm", "legs"])
    # head predicted on row 0 only: p=1, r=1/2 -> 2/3; arm predicted rows 1,2,3: p=2/3, r=1 -> .8; legs: 0
    assert m["per_label_f1"] == pytest.approx({"head": 2 / 3, "arm": 0.8, "legs": 0.0})
    # AP head: ranks 2.0(+), -0.5(+) -> 1.0; arm: 2(-) 1(+) .5(+) -> (1/2 + 2/3)/2; legs has no positive
    assert m["per_label_ap"]["head"] == pytest.approx(1.0)
    assert m["per_label_ap"]["arm"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert math.isnan(m["per_label_ap"]["legs"])
    assert m["mAP"] == pytest.approx((1.0 + (1 / 2 + 2 / 3) / 2) / 2)
    assert m["accuracy"] == pytest.approx(2 / 4)  # rows 0 and 2 have exactly the right label set
    assert compute_metrics(y, 1 / (1 + np.exp(-s)), "multilabel", ["h", "a", "l"], threshold=0.5)[
        "macro_f1"
    ] == pytest.approx(m["macro_f1"])


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        compute_metrics([0, 1], np.zeros((2, 2)), "multiclass", ["a", "b", "c"])
    with pytest.raises(ValueError, match="rows"):
        compute_metrics([0, 1, 1], np.zeros((2, 2)), "multiclass", ["a", "b"])
    with pytest.raises(ValueError, match="labels must lie"):
        compute_metrics([0, 5], np.zeros((2, 2)), "multiclass", ["a", "b"])
    with pytest.raises(ValueError, match="task"):
        compute_metrics([0, 1], np.zeros((2, 2)), "regression", ["a", "b"])


def test_selection_value():
    m = compute_metrics([0, 1], [[1.0, 0], [1.0, 0]], "multiclass", ["a", "b"])
    assert selection_value(m, "auto", "multiclass") == 0.5
    assert selection_value(m, "macro_f1", "multiclass") == pytest.approx(1 / 3)
    with pytest.raises(KeyError, match="mAP"):
        selection_value(m, "mAP")
    empty = compute_metrics(np.zeros(0, int), np.zeros((0, 2)), "multiclass", ["a", "b"])
    assert selection_value(empty) == -np.inf


def test_fpus23_head_selects_on_macro_f1_under_any_dataset_name(tmp_path):
    from mmkit.data import make_synthetic_fpus23, read_fpus23
    from mmkit.metrics import headline_metric

    root = make_synthetic_fpus23(tmp_path / "s", n_streams=4, frames_per_stream=4, width=48, height=28)
    head, organs = read_fpus23(root, task="head"), read_fpus23(root, task="organs")
    head.name = organs.name = "synthetic_fpus23"  # as load_dataset names it
    assert headline_metric(head.task, head) == "macro_f1"
    assert headline_metric(organs.task, organs) == "mAP"
