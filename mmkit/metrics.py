"""Classification metrics, thin wrappers over scikit-learn.

``compute_metrics(y_true, scores, task, classes)`` is the one entry point: stage 1, stage 2 and the
notebooks all report through it, so a number means the same thing everywhere.

- multiclass: ``y_true`` int [N], ``scores`` [N, C] (logits or probabilities; the prediction is the argmax).
  Keys: accuracy, balanced_accuracy, macro_f1, per_class (precision/recall/f1/support per class name),
  confusion_matrix (rows = true class, columns = predicted, in ``classes`` order), and roc_auc for two classes.
- multilabel: ``y_true`` multi-hot [N, C], ``scores`` [N, C] logits (a label is predicted where the score
  exceeds ``threshold``, 0.0 for logits; pass 0.5 for probabilities). Keys: accuracy (exact match of the
  whole label set), macro_f1, micro_f1, per_label_f1, mAP (mean over labels with at least one positive),
  per_label_ap, per_class (the report).

Example:
    >>> m = compute_metrics([0, 1, 1], [[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]], "multiclass", ["a", "b"])
    >>> round(m["accuracy"], 3), m["confusion_matrix"]
    (0.667, [[1, 0], [1, 1]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from sklearn import metrics as skm


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors (also on a GPU)
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def compute_metrics(
    y_true: Any,
    scores: Any,
    task: str,
    classes: Sequence[str],
    threshold: Optional[float] = None,
) -> dict[str, Any]:
    """Metrics of ``scores`` [N, C] against ``y_true`` (see the module docstring for the keys).

    Example:
        >>> y = np.array([[1, 0], [0, 1], [1, 1]])
        >>> m = compute_metrics(y, np.array([[3.0, -1.0], [-2.0, 1.0], [1.0, -0.5]]), "multilabel", ["x", "y"])
        >>> {k: round(v, 3) for k, v in m["per_label_f1"].items()}, round(m["mAP"], 3)
        ({'x': 1.0, 'y': 0.667}, 1.0)
    """
    classes = [str(c) for c in classes]
    y, s = _as_numpy(y_true), _as_numpy(scores).astype(np.float64)
    if s.ndim != 2 or s.shape[1] != len(classes):
        raise ValueError(f"scores must be [N, {len(classes)}] (one column per class), got shape {s.shape}")
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} rows but scores has {len(s)}")
    if task == "multiclass":
        return _multiclass(y.astype(np.int64).reshape(-1), s, classes)
    if task == "multilabel":
        if y.shape != s.shape:
            raise ValueError(f"multilabel y_true must be multi-hot {s.shape}, got {y.shape}")
        return _multilabel(y.astype(np.int64), s, classes, 0.0 if threshold is None else float(threshold))
    raise ValueError(f"task must be 'multiclass' or 'multilabel', got {task!r}")


def _multiclass(y: np.ndarray, s: np.ndarray, classes: list[str]) -> dict[str, Any]:
    labels = list(range(len(classes)))
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise ValueError(f"labels must lie in [0, {len(classes) - 1}], got {y.min()}..{y.max()}")
    pred = s.argmax(1) if len(s) else np.zeros(0, np.int64)
    out: dict[str, Any] = {"n": int(len(y)), "classes": classes}
    if not len(y):
        return out | {"accuracy": float("nan"), "macro_f1": float("nan"), "confusion_matrix": []}
    out["accuracy"] = float(skm.accuracy_score(y, pred))
    out["balanced_accuracy"] = float(_balanced_accuracy(y, pred, labels))
    out["macro_f1"] = float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0))
    out["per_class"] = skm.classification_report(
        y, pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=labels).tolist()
    if len(classes) == 2 and len(np.unique(y)) == 2:
        # softmax difference is monotone in the logit difference: rank by it
        out["roc_auc"] = float(skm.roc_auc_score(y, s[:, 1] - s[:, 0]))
    return out


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, labels: list[int]) -> float:
    # mean recall over the classes present in y (sklearn's definition, without its warning on absent ones)
    recall = skm.recall_score(y, pred, labels=[c for c in labels if (y == c).any()], average=None)
    return float(np.mean(recall)) if len(recall) else float("nan")


def _multilabel(y: np.ndarray, s: np.ndarray, classes: list[str], threshold: float) -> dict[str, Any]:
    pred = (s > threshold).astype(np.int64)
    out: dict[str, Any] = {"n": int(len(y)), "classes": classes, "threshold": threshold}
    if not len(y):
        return out | {"accuracy": float("nan"), "macro_f1": float("nan"), "mAP": float("nan")}
    out["accuracy"] = float(skm.accuracy_score(y, pred))  # exact match of the label set
    out["macro_f1"] = float(skm.f1_score(y, pred, average="macro", zero_division=0))
    out["micro_f1"] = float(skm.f1_score(y, pred, average="micro", zero_division=0))
    f1 = skm.f1_score(y, pred, average=None, zero_division=0)
    out["per_label_f1"] = {c: float(v) for c, v in zip(classes, f1)}
    # AP is undefined for a label with no positives: report it as NaN and leave it out of the mean
    ap = {
        c: float(skm.average_precision_score(y[:, j], s[:, j])) if y[:, j].any() else float("nan")
        for j, c in enumerate(classes)
    }
    out["per_label_ap"] = ap
    present = [v for v in ap.values() if not np.isnan(v)]
    out["mAP"] = float(np.mean(present)) if present else float("nan")
    out["per_class"] = skm.classification_report(
        y, pred, target_names=classes, output_dict=True, zero_division=0
    )
    return out


def headline_metric(task: str, dataset: Any = None) -> str:
    """The task's main number, and the default metric that selects the epoch (``select_on="auto"``):
    accuracy (multiclass) or mAP (multilabel). A ``dataset`` can name its own in
    ``meta["headline_metric"]``; FPUS23's head task (71% of the published test set is one class) reports
    macro_f1, as its data card says.

    Example:
        >>> headline_metric("multiclass"), headline_metric("multilabel")
        ('accuracy', 'mAP')
    """
    if dataset is not None:
        meta = getattr(dataset, "meta", None) or {}
        if meta.get("headline_metric"):
            return str(meta["headline_metric"])
        if getattr(dataset, "name", None) == "fpus23" and meta.get("task") == "head":
            return "macro_f1"
    return "mAP" if task == "multilabel" else "accuracy"


def selection_value(
    metrics: dict[str, Any], metric: str = "auto", task: str = "multiclass", dataset: Any = None
) -> float:
    """The number that picks the best epoch from ``metrics``: ``metric`` (the ``select_on`` setting) or,
    for "auto", the task's ``headline_metric``. NaN (an empty split) counts as -inf."""
    key = metric if metric != "auto" else headline_metric(task, dataset)
    if key not in metrics:
        raise KeyError(
            f"select_on={key!r} is not a metric of this task; choose one of "
            f"{sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and k != 'n')} "
            "(notebook parameter select_on, TrainConfig(select_on=...))"
        )
    v = float(metrics[key])
    return -np.inf if np.isnan(v) else v


__all__ = ["compute_metrics", "headline_metric", "selection_value"]
