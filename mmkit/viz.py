"""Pure plotting functions: each takes data and returns a matplotlib Figure (notebooks only call these).

Example:
    >>> fig = plot_class_balance(ds)  # doctest: +SKIP
    >>> fig.savefig("balance.png")  # doctest: +SKIP
"""

from __future__ import annotations

import textwrap
from typing import Any, Optional

import numpy as np

# --- data (owner: data engineer) ----------------------------------------------------------------------

_BOX_COLOURS = {"head": "tab:red", "arm": "tab:green", "abdomen": "tab:blue", "legs": "tab:orange"}


def _labels(label) -> list[str]:
    return list(label) if isinstance(label, list) else [label]


def plot_class_balance(ds, ax=None):
    """Bar chart of samples per class (per label for multi-label data), one bar group per split.

    Example:
        >>> fig = plot_class_balance(load_dataset(DataConfig()))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    fig, ax = (
        (ax.figure, ax) if ax is not None else plt.subplots(figsize=(max(5, 0.6 * len(ds.classes) + 3), 3.5))
    )
    splits = [s for s in ds.splits if ds.splits[s]]
    width = 0.8 / max(1, len(splits))
    x = np.arange(len(ds.classes))
    for i, split in enumerate(splits):
        counts = {c: 0 for c in ds.classes}
        for r in ds.records(split):
            for lab in _labels(r.label):
                counts[lab] += 1
        ax.bar(
            x + i * width, [counts[c] for c in ds.classes], width, label=f"{split} ({len(ds.records(split))})"
        )
    ax.set_xticks(x + width * (len(splits) - 1) / 2, ds.classes, rotation=30, ha="right")
    ax.set_ylabel("samples" if ds.task == "multiclass" else "samples with label")
    ax.set_title(f"{ds.name}: class balance")
    ax.legend()
    fig.tight_layout()
    return fig


def draw_boxes(ax, boxes: list[dict[str, Any]], scale: tuple[float, float] = (1.0, 1.0)) -> None:
    """Draw CVAT-style boxes (``label``, ``xtl``, ``ytl``, ``xbr``, ``ybr``) on an image axes.

    ``scale`` = (x, y) factors from the annotation's pixel grid to the shown image's.
    """
    from matplotlib.patches import Rectangle

    sx, sy = scale
    for b in boxes:
        colour = _BOX_COLOURS.get(b["label"], "white")
        w, h = (b["xbr"] - b["xtl"]) * sx, (b["ybr"] - b["ytl"]) * sy
        ax.add_patch(
            Rectangle((b["xtl"] * sx, b["ytl"] * sy), w, h, fill=False, edgecolor=colour, linewidth=1.5)
        )
        ax.text(b["xtl"] * sx, b["ytl"] * sy, b["label"], color=colour, fontsize=7, va="bottom")


def plot_examples(
    ds, split: str = "train", n: int = 12, cols: int = 4, seed: int = 0, width: int = 32, boxes: bool = True
):
    """A grid of ``n`` random samples of ``split``: the image, its label and its text (boxes drawn when the
    record's meta has them, as FPUS23's do).

    Example:
        >>> fig = plot_examples(ds, "test", n=8, seed=1)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    recs = ds.records(split)
    rng = np.random.default_rng(seed)
    pick = (
        [recs[i] for i in sorted(rng.choice(len(recs), size=min(n, len(recs)), replace=False))]
        if recs
        else []
    )
    rows = max(1, int(np.ceil(len(pick) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, r in zip(axes.ravel(), pick):
        with Image.open(r.image_path) as im:
            img = np.asarray(im.convert("RGB"))
        ax.imshow(img)
        if boxes and r.meta.get("boxes"):
            w0, h0 = r.meta.get("width") or img.shape[1], r.meta.get("height") or img.shape[0]
            draw_boxes(ax, r.meta["boxes"], (img.shape[1] / w0, img.shape[0] / h0))
        label = ", ".join(_labels(r.label)) or "(none)"
        ax.set_title(f"[{label}]\n" + "\n".join(textwrap.wrap(r.text, width)[:3]), fontsize=7)
    fig.suptitle(f"{ds.name} / {split}: examples with their text")
    fig.tight_layout()
    return fig


def plot_text_lengths(ds, ax=None, bins: Optional[int] = None):
    """Histogram of text lengths in words, per split.

    Example:
        >>> fig = plot_text_lengths(ds)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.2))
    lengths = {s: [len(t.split()) for t in ds.texts(s)] for s in ds.splits if ds.splits[s]}
    top = max((max(v) for v in lengths.values()), default=1)
    edges = np.arange(0, top + 2) - 0.5 if bins is None and top <= 60 else (bins or 30)
    for split, v in lengths.items():
        ax.hist(v, bins=edges, alpha=0.5, label=f"{split} (median {np.median(v):.0f})")
    ax.set_xlabel("words per text")
    ax.set_ylabel("samples")
    ax.set_title(f"{ds.name}: text lengths")
    ax.legend()
    fig.tight_layout()
    return fig


# --- comparison (notebook 05) -------------------------------------------------------------------------


def plot_comparison(summary, metric: str = "accuracy", ax=None):
    """Horizontal bars of each method's mean with ± std error bars (``summary`` from
    ``mmkit.reproduce.summarize``), coloured by group.

    Example:
        >>> fig = plot_comparison(summarize(df, "test_accuracy"))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    n = len(summary)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 0.38 * n + 1.2))
    groups = list(dict.fromkeys(summary["group"]))
    colours = {g: plt.get_cmap("tab10")(i) for i, g in enumerate(groups)}
    y = np.arange(n)[::-1]
    ax.barh(
        y,
        100 * summary["mean"],
        xerr=100 * summary["std"],
        color=[colours[g] for g in summary["group"]],
        capsize=3,
    )
    ax.set_yticks(y, summary["method"], fontsize=8)
    ax.set_xlabel(f"test {metric} (%), mean ± std over seeds")
    lo = max(0.0, 100 * float((summary["mean"] - summary["std"]).min()) - 5)
    ax.set_xlim(lo, 100)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups]
    ax.legend(handles, groups, fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
