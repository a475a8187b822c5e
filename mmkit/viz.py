"""Pure plotting functions: each takes data and returns a matplotlib Figure (notebooks only call these).

Example:
    >>> fig = plot_class_balance(ds)  # doctest: +SKIP
    >>> fig.savefig("balance.png")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
import textwrap
from pathlib import Path
from typing import Any, Optional

import numpy as np

# --- data (owner: data engineer) ----------------------------------------------------------------------

_BOX_COLOURS = {"head": "tab:red", "arm": "tab:green", "abdomen": "tab:blue", "legs": "tab:orange"}


def _labels(label) -> list[str]:
    return list(label) if isinstance(label, list) else [label]


def _label_text(label) -> str:
    return ", ".join(_labels(label)) or "(none)"  # "(none)": a multi-label record with no label


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
        ax.set_title(f"[{_label_text(r.label)}]\n" + "\n".join(textwrap.wrap(r.text, width)[:3]), fontsize=7)
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


# --- augmentation (owner: augmentation engineer; notebook 02) -----------------------------------------


def plot_views(
    views,
    row_labels: Optional[list[str]] = None,
    col_labels: Optional[list[str]] = None,
    size: float = 1.8,
    title: Optional[str] = None,
):
    """A grid of augmented views: rows are samples, columns their copies.

    ``views`` is a uint8 array ``[N, M, H, W, 3]`` (``mmkit.augment.preview``) or a loader batch's
    ``image`` tensor ``[N*M, 3, H, W]`` together with its ``copy`` column (pass ``views=(images, copy)``).

    Example:
        >>> fig = plot_views(preview(ds, "train", [0, 1], "food", copies=4))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if isinstance(views, tuple):  # (images [N*M, 3, H, W], copy [N*M]) from a loader batch
        images, copy = views
        arr = np.asarray(images.permute(0, 2, 3, 1).cpu())
        views = arr.reshape(-1, int(copy.max()) + 1, *arr.shape[1:])
    views = np.asarray(views)
    n, m = views.shape[:2]
    fig, axes = plt.subplots(n, m, figsize=(size * m, size * n + (0.4 if title else 0)), squeeze=False)
    for i in range(n):
        for j in range(m):
            ax = axes[i, j]
            ax.imshow(views[i, j], cmap="gray" if views.shape[-1] == 1 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and col_labels:
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0 and row_labels:
                ax.set_ylabel(row_labels[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _sample_indices(ds, split: str, n_samples: int, seed: int, indices=None) -> list[int]:
    if indices is not None:
        return list(indices)
    n = len(ds.records(split))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=min(n_samples, n), replace=False))


def _row_label(ds, split: str, i: int) -> str:
    r = ds.records(split)[i]

    def cut(text: str, n: int = 20) -> str:  # ids are often one long word: textwrap.shorten would drop it
        return text if len(text) <= n else text[: n - 1] + "…"

    return f"{cut(Path(r.id).name)}\n[{cut(_label_text(r.label))}]"


def plot_copies(
    ds,
    split: str = "train",
    preset: str = "seed",
    copies: int = 4,
    n_samples: int = 4,
    image_size: int = 224,
    seed: int = 0,
    epoch: int = 0,
    indices=None,
    **params: float,
):
    """The ``copies`` views that ``make_loader`` draws of ``n_samples`` samples (same seeds, same pixels),
    with the evaluation view in the first column.

    Example:
        >>> fig = plot_copies(ds, preset="ultrasound", copies=6, rotate=20)  # doctest: +SKIP
    """
    from mmkit.augment import build_preset, preview

    p = build_preset(preset, image_size, **params)
    idx = _sample_indices(ds, split, n_samples, seed, indices)
    views = preview(ds, split, idx, p, copies=copies, seed=seed, epoch=epoch)
    evals = preview(ds, split, idx, p, copies=1, seed=seed, train=False)
    grid = np.concatenate([evals, views], axis=1)
    cols = ["eval"] + [f"copy {c}" for c in range(copies)]
    strengths = ", ".join(f"{k}={v:g}" for k, v in p.params.items())
    title = f"preset {p.name!r} ({strengths}), seed {seed}, epoch {epoch}"
    return plot_views(grid, [_row_label(ds, split, i) for i in idx], cols, title=title)


def plot_presets(
    ds,
    presets=("seed", "light", "food", "ultrasound"),
    split: str = "train",
    n_samples: int = 3,
    copies: int = 2,
    image_size: int = 224,
    seed: int = 0,
    indices=None,
):
    """Side by side: each sample's evaluation view, then ``copies`` training views under every preset.

    Example:
        >>> fig = plot_presets(ds, ("seed", "food"), n_samples=2)  # doctest: +SKIP
    """
    from mmkit.augment import build_preset, preview

    idx = _sample_indices(ds, split, n_samples, seed, indices)
    parts = [preview(ds, split, idx, build_preset(presets[0], image_size), copies=1, seed=seed, train=False)]
    cols = ["eval"]
    for name in presets:
        parts.append(preview(ds, split, idx, build_preset(name, image_size), copies=copies, seed=seed))
        cols += [f"{name} {c}" for c in range(copies)]
    grid = np.concatenate(parts, axis=1)
    return plot_views(grid, [_row_label(ds, split, i) for i in idx], cols, title="presets side by side")


_SLIDERS = {  # parameter name -> (min, max, step) for the explorer
    "rotate": (0.0, 90.0, 1.0),
    "hflip": (0.0, 1.0, 0.05),
    "vflip": (0.0, 1.0, 0.05),
    "blur": (0.0, 1.0, 0.05),
    "scale_min": (0.05, 1.0, 0.05),
}


def augmentation_explorer(
    ds,
    split: str = "train",
    preset: str = "seed",
    copies: int = 4,
    n_samples: int = 4,
    image_size: int = 224,
    seed: int = 0,
):
    """An ipywidgets panel over ``plot_copies``: pick a preset, move its strength sliders, reseed.

    Returns the widget (display it, or let it be a cell's last value); nothing blocks, so a headless
    papermill run just records its first rendering.

    Example:
        >>> augmentation_explorer(ds, preset="food")  # doctest: +SKIP
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from mmkit.augment import PRESETS, preset_params

    choose = W.Dropdown(options=sorted(PRESETS), value=preset, description="preset")
    seed_box = W.IntText(value=seed, description="seed", layout=W.Layout(width="160px"))
    epoch_box = W.IntText(value=0, description="epoch", layout=W.Layout(width="160px"))
    copies_box = W.IntSlider(value=copies, min=1, max=8, description="copies")
    reseed = W.Button(description="reseed", tooltip="draw new random views (seed + 1)")
    sliders = W.VBox()
    # The grid goes in as a PNG: an Image widget renders the same in JupyterLab, VS Code and a saved
    # notebook, and (unlike an Output widget) it holds its content outside a running kernel too.
    picture = W.Image(format="png")
    message = W.HTML()

    def make_sliders(name: str) -> None:
        items = []
        for k, v in preset_params(name).items():
            lo, hi, step = _SLIDERS.get(k, (0.0, max(1.0, 3 * float(v)), 0.01))
            s = W.FloatSlider(
                value=float(v), min=lo, max=hi, step=step, description=k, continuous_update=False
            )
            s.observe(redraw, names="value")
            items.append(s)
        sliders.children = items

    def redraw(*_: Any) -> None:
        params = {s.description: s.value for s in sliders.children}
        try:
            fig = plot_copies(
                ds, split, choose.value, copies_box.value, n_samples, image_size, seed_box.value,
                epoch_box.value, **params,
            )  # fmt: skip
        except ValueError as err:  # e.g. a strength albumentations rejects: say so, keep the panel alive
            message.value = f"<b>cannot draw:</b> {html.escape(str(err))}"
            return
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        picture.value, message.value = buf.getvalue(), ""

    def on_preset(change: dict) -> None:
        make_sliders(change["new"])
        redraw()

    def on_reseed(_: Any) -> None:
        seed_box.value += 1  # triggers redraw through its observer

    choose.observe(on_preset, names="value")
    for w in (seed_box, epoch_box, copies_box):
        w.observe(redraw, names="value")
    reseed.on_click(on_reseed)
    make_sliders(preset)
    redraw()
    controls = W.HBox([choose, copies_box, seed_box, epoch_box, reseed])
    return W.VBox([controls, sliders, message, picture])
