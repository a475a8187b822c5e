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
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the bars, never on one
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
    cell_labels: Optional[list[list[tuple[str, str]]]] = None,
):
    """A grid of augmented views: rows are samples, columns their copies.

    ``views`` is a uint8 array ``[N, M, H, W, 3]`` (``mmkit.augment.preview``) or a loader batch's
    ``image`` tensor ``[N*M, 3, H, W]`` together with its ``copy`` column (pass ``views=(images, copy)``).
    ``cell_labels[i][j]`` = (text, colour) written under view (i, j) (e.g. a model's prediction).

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
    # Labels are set in points, which the explorer renders at 1 px per point: 9-10 px text.
    extra = 0.3 if cell_labels else 0.0
    fig, axes = plt.subplots(
        n, m, figsize=(size * m + 0.6, (size + extra) * n + (0.5 if title else 0)), squeeze=False
    )
    for i in range(n):
        for j in range(m):
            ax = axes[i, j]
            ax.imshow(views[i, j], cmap="gray" if views.shape[-1] == 1 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and col_labels:
                ax.set_title(col_labels[j], fontsize=9)
            if j == 0 and row_labels:
                ax.set_ylabel(row_labels[i], fontsize=10)
            if cell_labels:
                text, colour = cell_labels[i][j]
                ax.set_xlabel(text, fontsize=8, color=colour)
    if title:  # wrapped to the figure's width (about 0.55 em per character at 10 pt)
        fig.suptitle(textwrap.fill(title, max(20, int(fig.get_figwidth() * 72 / 5.5))), fontsize=10)
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

    def cut(text: str, n: int = 18) -> str:  # ids are often one long word: textwrap.shorten would drop it
        return text if len(text) <= n else text[: n - 1] + "…"

    return f"{cut(Path(r.id).name)}\n[{cut(_label_text(r.label))}]"


def _prediction_labels(model, grid: np.ndarray) -> list[list[tuple[str, str]]]:
    """'class 87%' under every view; green where it matches the prediction on the clean (first) column."""
    from mmkit.agreement import predict_views

    idx, conf = predict_views(model, grid)
    classes = list(getattr(model, "classes", None) or range(int(idx.max()) + 1))
    return [
        [
            (
                f"{str(classes[k])[:14]} {c:.0%}",
                "black" if j == 0 else ("tab:green" if k == row[0] else "tab:red"),
            )
            for j, (k, c) in enumerate(zip(row, crow))
        ]
        for row, crow in zip(idx, conf)
    ]


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
    model=None,
    sample_seed: Optional[int] = None,
    **params: float,
):
    """The ``copies`` views that ``make_loader`` draws of ``n_samples`` samples (same seeds, same pixels),
    with the evaluation view in the first column. ``sample_seed`` (default ``seed``) picks the samples.

    With ``model`` (a stage-1 classifier, ``mmkit.train.load_stage1``) every view is labelled with the
    model's predicted class and probability: green where it matches its prediction on the clean view, red
    where the augmentation changed it.

    Example:
        >>> fig = plot_copies(ds, preset="ultrasound", copies=6, rotate=20)  # doctest: +SKIP
    """
    from mmkit.augment import build_preset, preview

    p = build_preset(preset, image_size, **params)
    idx = _sample_indices(ds, split, n_samples, seed if sample_seed is None else sample_seed, indices)
    views = preview(ds, split, idx, p, copies=copies, seed=seed, epoch=epoch)
    evals = preview(ds, split, idx, p, copies=1, seed=seed, train=False)
    grid = np.concatenate([evals, views], axis=1)
    cols = ["eval"] + [f"copy {c}" for c in range(copies)]
    strengths = ", ".join(f"{k}={v:g}" for k, v in p.params.items())
    title = f"preset {p.name!r} ({strengths}), seed {seed}, epoch {epoch}"
    labels = _prediction_labels(model, grid) if model is not None else None
    # At most ~13 inches wide (940 px at the explorer's 72 dpi): JupyterLab then shows the picture at its
    # own size instead of scaling it, and its labels, down to the cell's width.
    size = min(1.8, 12.5 / len(cols))
    rows = [_row_label(ds, split, i) for i in idx]
    return plot_views(grid, rows, cols, size=size, title=title, cell_labels=labels)


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


def plot_label_agreement(table, ax=None):
    """Lines of label agreement (``mmkit.agreement.label_agreement``) against strength, one per preset.

    Example:
        >>> fig = plot_label_agreement(label_agreement(ds, clf))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 3.2))
    for name, rows in table.groupby("preset", sort=False):
        ax.plot(rows["strength"], 100 * rows["agreement"], marker="o", label=name)
    ax.set_xlabel("strength (1 = the preset's defaults)")
    ax.set_ylabel("copies agreeing with clean view (%)")
    ax.set_ylim(0, 102)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("does the prediction survive the augmentation?")
    fig.tight_layout()
    return fig


class AugmentationExplorer:
    """The explorer panel: ``controls`` (ipywidgets) and the picture, which is a plain PNG display output
    redrawn in place. A saved notebook, nbconvert HTML or a viewer without a kernel therefore shows the
    last picture drawn, whatever becomes of the widgets. Built by ``augmentation_explorer``."""

    def __init__(self, ds, split, preset, copies, n_samples, image_size, seed, model, save_dir):
        import ipywidgets as W

        from mmkit.augment import PRESETS, build_preset

        start: dict[str, float] = {}
        if preset not in PRESETS:  # a preset file: start from its preset and strengths
            loaded = build_preset(preset, image_size)
            if loaded.name not in PRESETS:
                raise ValueError(
                    f"{preset}: the explorer moves the strengths of {sorted(PRESETS)}, not {loaded.name!r}"
                )
            preset, start = loaded.name, dict(loaded.params)
        self.ds, self.split, self.n_samples, self.image_size, self.model = (
            ds, split, n_samples, image_size, model,
        )  # fmt: skip
        self.sample_seed = seed
        self.png = b""
        self._handle: Any = None
        self.choose = W.Dropdown(options=sorted(PRESETS), value=preset, description="preset")
        self.copies = W.IntSlider(value=copies, min=1, max=8, description="copies")
        self.seed = W.IntText(value=seed, description="seed", layout=W.Layout(width="160px"))
        self.epoch = W.IntText(value=0, description="epoch", layout=W.Layout(width="160px"))
        self.reseed = W.Button(
            description="reseed", tooltip="new random views of the same samples (seed + 1)"
        )
        self.resample = W.Button(description="new samples", tooltip="other samples, same views' seed")
        self.path = W.Text(
            value=str(Path(save_dir) / f"preset_{preset}.json"), description="file",
            layout=W.Layout(width="420px"),
        )  # fmt: skip
        self.save = W.Button(description="save preset", tooltip="write this preset, with these strengths")
        self.sliders = W.VBox()
        self.message = W.HTML()
        self.choose.observe(self._on_preset, names="value")
        for w in (self.seed, self.epoch, self.copies):
            w.observe(self.redraw, names="value")
        self.reseed.on_click(self._on_reseed)
        self.resample.on_click(self._on_resample)
        self.save.on_click(self._on_save)
        self._make_sliders(preset, start)
        row1 = W.HBox([self.choose, self.copies, self.seed, self.epoch])
        row2 = W.HBox([self.reseed, self.resample, self.path, self.save])
        self.controls = W.VBox([row1, row2, self.sliders, self.message])
        self.redraw()

    @property
    def params(self) -> dict[str, float]:
        return {s.description: s.value for s in self.sliders.children}

    def _make_sliders(self, name: str, values: Optional[dict[str, float]] = None) -> None:
        import ipywidgets as W

        from mmkit.augment import PARAM_RANGES, preset_params

        items = []
        for k, v in {**preset_params(name), **(values or {})}.items():
            lo, hi, step, _ = PARAM_RANGES[k]
            s = W.FloatSlider(
                value=float(v), min=lo, max=hi, step=step, description=k, continuous_update=False
            )
            s.observe(self.redraw, names="value")
            items.append(s)
        self.sliders.children = items

    def redraw(self, *_: Any) -> None:
        import matplotlib.pyplot as plt

        try:
            fig = plot_copies(
                self.ds, self.split, self.choose.value, self.copies.value, self.n_samples, self.image_size,
                self.seed.value, self.epoch.value, model=self.model, sample_seed=self.sample_seed,
                **self.params,
            )  # fmt: skip
        except ValueError as err:  # a strength albumentations rejects: say so, keep the panel alive
            self.message.value = f"<b>cannot draw:</b> {html.escape(str(err))}"
            return
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=72)  # 1 px per point: 8-9 pt labels stay 8-9 px tall
        plt.close(fig)
        self.png, self.message.value = buf.getvalue(), ""
        if self._handle is not None:
            from IPython.display import Image

            self._handle.update(Image(data=self.png, format="png"))

    def _on_preset(self, change: dict) -> None:
        self._make_sliders(change["new"])
        self.path.value = str(Path(self.path.value).with_name(f"preset_{change['new']}.json"))
        self.redraw()

    def _on_reseed(self, _: Any) -> None:
        self.seed.value += 1  # redraws through its observer

    def _on_resample(self, _: Any) -> None:
        self.sample_seed += 1
        self.redraw()

    def _on_save(self, _: Any) -> None:
        from mmkit.augment import save_preset

        try:
            path = save_preset(self.choose.value, self.path.value, self.image_size, **self.params)
        except (OSError, ValueError) as err:
            self.message.value = f"<b>cannot save:</b> {html.escape(str(err))}"
            return
        path = path.resolve()  # JupyterLab runs a notebook in its own folder: say where exactly
        self.message.value = (
            f"saved <code>{html.escape(str(path))}</code>: pass <code>preset={html.escape(repr(str(path)))}"
            "</code> to notebooks 03-05"
        )

    def _ipython_display_(self) -> None:
        from IPython.display import Image, display

        display(self.controls)
        self._handle = display(Image(data=self.png, format="png"), display_id=True)


def augmentation_explorer(
    ds,
    split: str = "train",
    preset: str = "seed",
    copies: int = 4,
    n_samples: int = 4,
    image_size: int = 224,
    seed: int = 0,
    model=None,
    save_dir: str = ".",
) -> AugmentationExplorer:
    """An ipywidgets panel over ``plot_copies``: pick a preset, move its strength sliders (each over its
    whole valid range, ``mmkit.augment.PARAM_RANGES``), "reseed" (new views of the same samples), "new
    samples", and "save preset" (``mmkit.augment.save_preset`` to the file named beside it, for the
    ``preset`` parameter of notebooks 03-05). With ``model`` (``load_stage1``) every copy is labelled with
    the model's prediction.

    Display it (or let it be a cell's last value): the controls, then the picture as a PNG output that
    redraws in place. Nothing blocks, so a headless papermill run just records its first rendering.

    Example:
        >>> augmentation_explorer(ds, preset="food", save_dir="runs/02_augmentations")  # doctest: +SKIP
    """
    return AugmentationExplorer(ds, split, preset, copies, n_samples, image_size, seed, model, save_dir)
