"""Augmentation plots and the explorer widget (the data plots are tested with notebook 01)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from PIL import Image

from mmkit.augment import make_loader, preview
from mmkit.data.records import Dataset, Record
from mmkit.viz import augmentation_explorer, plot_copies, plot_presets, plot_views


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("vz")
    rng = np.random.default_rng(0)
    recs = []
    for i in range(5):
        p = root / f"v{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (48, 40 + 4 * i, 3), dtype=np.uint8)).save(p)
        recs.append(Record(id=p.name, image_path=p, text=f"t{i}", label="a" if i % 2 else "b"))
    return Dataset("toy", ["a", "b"], {"train": recs, "val": [], "test": []})


def _shown(fig) -> list[np.ndarray]:
    return [ax.images[0].get_array() for ax in fig.axes if ax.images]


def test_plot_copies_shows_the_loaders_views(toy):
    import matplotlib.pyplot as plt

    fig = plot_copies(toy, preset="food", copies=3, n_samples=2, image_size=32, seed=4, indices=[1, 3])
    shown = _shown(fig)
    assert len(shown) == 2 * 4  # eval + 3 copies per sample
    views = preview(toy, "train", [1, 3], "food", copies=3, image_size=32, seed=4)
    assert np.array_equal(np.asarray(shown[1]), views[0, 0])  # row 0: eval, copy 0, ...
    assert np.array_equal(np.asarray(shown[4 + 3]), views[1, 2])
    assert "food" in fig._suptitle.get_text()
    plt.close(fig)


def test_plot_views_from_a_loader_batch(toy):
    import matplotlib.pyplot as plt

    b = next(iter(make_loader(toy, "train", batch_size=2, copies=3, image_size=32)))
    fig = plot_views((b["image"], b["copy"]))
    shown = _shown(fig)
    assert len(shown) == 6
    assert np.array_equal(np.asarray(shown[5]), b["image"][5].permute(1, 2, 0).numpy())
    plt.close(fig)


def test_plot_presets_grid(toy):
    import matplotlib.pyplot as plt

    fig = plot_presets(toy, ("seed", "ultrasound"), n_samples=2, copies=2, image_size=32)
    assert len(_shown(fig)) == 2 * (1 + 2 * 2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["eval", "seed 0", "seed 1", "ultrasound 0", "ultrasound 1"]
    plt.close(fig)


def _explorer(toy, **kw):
    from mmkit.viz import AugmentationExplorer

    panel = augmentation_explorer(toy, copies=2, n_samples=2, image_size=32, **kw)
    assert isinstance(panel, AugmentationExplorer)
    return panel


def test_explorer_redraws_on_preset_seed_and_strength(toy):
    panel = _explorer(toy, preset="seed")
    assert [s.description for s in panel.sliders.children] == ["rotate", "hflip", "vflip"]
    first = panel.png
    assert first[:8] == b"\x89PNG\r\n\x1a\n"  # the first rendering exists without any interaction
    panel.choose.value = "ultrasound"
    assert "speckle" in [s.description for s in panel.sliders.children]
    second = panel.png
    panel.reseed.click()
    assert panel.seed.value == 1
    assert len({first, second, panel.png}) == 3 and panel.message.value == ""
    panel.sliders.children[0].value = 80.0  # a strength change redraws too
    assert panel.png not in (first, second)


def test_every_slider_spans_its_valid_range(toy):
    # tests/test_presets.py builds and draws every preset at both ends of these ranges
    from mmkit.augment import PARAM_RANGES, PRESETS, preset_params

    panel = _explorer(toy, preset="seed")
    for name in PRESETS:
        panel.choose.value = name
        assert [s.description for s in panel.sliders.children] == list(preset_params(name))
        for s in panel.sliders.children:
            assert (s.min, s.max, s.step) == PARAM_RANGES[s.description][:3], (name, s.description)
    gamma = next(s for s in panel.sliders.children if s.description == "gamma")
    gamma.value = gamma.max  # the reported failure: ultrasound's gamma at its maximum
    assert panel.message.value == "" and panel.params["gamma"] == gamma.max


def test_reseed_keeps_the_samples_new_samples_keeps_the_seed(toy, monkeypatch):
    import mmkit.viz as viz

    calls = []
    real = viz.plot_copies
    monkeypatch.setattr(viz, "plot_copies", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    panel = _explorer(toy, preset="seed")
    panel.reseed.click()
    panel.resample.click()
    (a0, k0), (a1, k1), (a2, k2) = calls
    assert (a1[6], k1["sample_seed"]) == (1, 0)  # reseed: views' seed + 1, same samples
    assert (a2[6], k2["sample_seed"]) == (1, 1)  # new samples: other samples, same views' seed


def test_explorer_saves_the_preset_it_shows(toy, tmp_path):
    from mmkit.augment import build_preset, preview

    panel = _explorer(toy, preset="ultrasound", save_dir=str(tmp_path))
    gamma = next(s for s in panel.sliders.children if s.description == "gamma")
    gamma.value = 0.95
    panel.save.click()
    path = tmp_path / "preset_ultrasound.json"
    assert path.is_file() and str(path) in panel.message.value
    saved = build_preset(str(path), 32)
    assert saved.params == panel.params and saved.params["gamma"] == 0.95
    reopened = _explorer(toy, preset=str(path))  # the explorer starts from a preset file's strengths
    assert reopened.choose.value == "ultrasound" and reopened.params == panel.params
    shown = preview(toy, "train", [0, 1], "ultrasound", copies=2, image_size=32, seed=0, **panel.params)
    assert np.array_equal(preview(toy, "train", [0, 1], str(path), copies=2, image_size=32, seed=0), shown)


def test_explorer_labels_each_copy_with_the_models_prediction(toy):
    import matplotlib.pyplot as plt

    from mmkit.config import AugmentConfig, ModelConfig
    from mmkit.train import build_stage1

    clf = build_stage1(toy, ModelConfig("timm:test_resnet"), AugmentConfig(image_size=32)).eval()
    clf.classes = list(toy.classes)
    fig = plot_copies(toy, preset="seed", copies=3, n_samples=2, image_size=32, model=clf)
    labels = [ax.get_xlabel() for ax in fig.axes if ax.images]
    assert len(labels) == 2 * 4 and all(lab.split()[0] in toy.classes and lab.endswith("%") for lab in labels)
    plt.close(fig)
    panel = _explorer(toy, preset="seed", model=clf)
    assert panel.png[:4] == b"\x89PNG"


def test_class_balance_legend_covers_no_bar():
    import matplotlib.pyplot as plt

    from mmkit.viz import plot_class_balance

    recs = {s: [Record(id=f"{s}{i}", image_path="x", text="", label="ab"[i % 2]) for i in range(n)]
            for s, n in (("train", 40), ("val", 12), ("test", 10))}  # fmt: skip
    fig = plot_class_balance(Dataset("toy", ["a", "b"], recs))
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert not any(bar.get_window_extent().overlaps(legend) for bar in ax.patches)
    plt.close(fig)


def test_labels_stay_readable_at_8_copies(toy):
    import io

    from PIL import Image as PILImage

    panel = _explorer(toy, preset="seed")
    panel.copies.value = 8
    width, _ = PILImage.open(io.BytesIO(panel.png)).size
    assert width <= 1000  # JupyterLab shows it at its own size: 10 px row labels stay 10 px
    fig = plot_copies(toy, preset="seed", copies=8, n_samples=2, image_size=32)
    assert fig.axes[0].yaxis.label.get_fontsize() >= 10 and fig.axes[0].title.get_fontsize() >= 9
