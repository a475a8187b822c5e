"""Does an augmentation keep the label? A stage-1 model's predictions on augmented copies against its
prediction on the clean (evaluation) view of the same sample.

The question people explore augmentations to answer is which strengths still keep the class visible. A
trained classifier gives a measurable stand-in: a copy on which the model still predicts what it predicts on
the clean view kept the evidence the model uses; a copy that flips the prediction probably cut it away.

Example:
    >>> clf = load_stage1("runs/03_unimodal_finetune/best.pt")  # doctest: +SKIP
    >>> label_agreement(ds, clf, strengths=(0.5, 1.0, 2.0))  # doctest: +SKIP
         preset  strength  agreement  copy_accuracy  clean_accuracy  confidence  views
    0      seed       0.5      0.953          0.781           0.797       0.912    128
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch


def model_image_size(model: Any, default: int = 224) -> int:
    """The input size a stage-1 classifier was trained at (its backbone's), else ``default``."""
    size = getattr(getattr(model, "backbone", None), "image_size", None)
    return int(size) if size else int(default)


@torch.no_grad()
def predict_views(model: Any, views: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class index, its probability) of every view of a uint8 ``[N, M, H, W, 3]`` array, each
    ``[N, M]``. Probabilities are softmax (multiclass) or sigmoid (a multi-label model: its top label).

    Example:
        >>> idx, conf = predict_views(clf, preview(ds, "val", [0, 1], "seed", copies=3))  # doctest: +SKIP
    """
    from mmkit.augment import normalize

    n, m = views.shape[:2]
    flat = torch.from_numpy(np.ascontiguousarray(views.reshape(n * m, *views.shape[2:]))).permute(0, 3, 1, 2)
    norm = getattr(getattr(model, "backbone", None), "norm", "imagenet")
    device = next(model.parameters()).device
    meta = getattr(model, "meta", None) or {}  # load_stage1 keeps the checkpoint's meta (task, classes)
    multilabel = meta.get("task", getattr(model, "task", None)) == "multilabel"
    was = model.training
    model.eval()
    probs = []
    for start in range(0, len(flat), batch_size):
        logits = model(normalize(flat[start : start + batch_size].contiguous(), norm, device=device)).float()
        probs.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).cpu())
    model.train(was)
    p = torch.cat(probs) if probs else torch.zeros(0, 1)
    conf, idx = p.max(1)
    return idx.numpy().reshape(n, m), conf.numpy().reshape(n, m)


def label_agreement(
    dataset: Any,
    model: Any,
    presets: Sequence[str] = ("seed", "light", "food", "ultrasound"),
    strengths: Sequence[float] = (0.5, 1.0, 2.0),
    split: str = "val",
    n_samples: int = 32,
    copies: int = 4,
    seed: int = 0,
    image_size: Optional[int] = None,
):
    """Per preset and strength (``mmkit.augment.scaled_params``: 0 does nothing, 1 is the default, 2 twice
    as strong), how often ``model``'s prediction on an augmented copy equals its prediction on the clean
    view of the same sample, over ``n_samples`` samples of ``split`` x ``copies`` copies.

    Returns a DataFrame: preset, strength, agreement, copy_accuracy and clean_accuracy (against the true
    label; NaN for multi-label data or a model of other classes), confidence (mean probability of the predicted class on the copies),
    views. ``image_size`` defaults to the size the model was trained at.

    Example:
        >>> label_agreement(ds, clf, ("seed",), (1.0, 3.0), n_samples=16)  # doctest: +SKIP
    """
    import pandas as pd

    from mmkit.augment import build_preset, preview, scaled_params

    size = image_size or model_image_size(model)
    recs = dataset.records(split)
    if not recs:
        raise ValueError(f"split {split!r} has no records: pass split='train' or another split with data")
    rng = np.random.default_rng(seed)
    idx = sorted(int(i) for i in rng.choice(len(recs), size=min(n_samples, len(recs)), replace=False))
    targets = dataset.targets(split)[idx]
    named = getattr(model, "classes", None)
    # Accuracy needs the model's classes to be this dataset's (agreement does not: it compares the model
    # with itself).
    same_classes = named is None or [str(c) for c in named] == [str(c) for c in dataset.classes]
    truth = targets if targets.ndim == 1 and same_classes else None
    from mmkit.progress import progress

    rows = []
    bar = progress(total=len(presets) * len(strengths), desc="label agreement", unit="setting")
    for name in presets:
        for strength in strengths:
            bar.set_postfix_str(f"{name} x{strength:g}")
            p = build_preset(name, size, **scaled_params(name, float(strength)))
            clean, _ = predict_views(model, preview(dataset, split, idx, p, seed=seed, train=False))
            pred, conf = predict_views(model, preview(dataset, split, idx, p, copies=copies, seed=seed))
            rows.append(
                {
                    "preset": name,
                    "strength": float(strength),
                    "agreement": float((pred == clean).mean()),
                    "copy_accuracy": float((pred == truth[:, None]).mean()) if truth is not None else np.nan,
                    "clean_accuracy": float((clean[:, 0] == truth).mean()) if truth is not None else np.nan,
                    "confidence": float(conf.mean()),
                    "views": int(pred.size),
                }
            )
            bar.update()
    bar.set_postfix_str("")
    bar.close()
    return pd.DataFrame(rows)


__all__ = ["label_agreement", "model_image_size", "predict_views"]
