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


def test_explorer_redraws_on_preset_and_seed(toy):
    panel = augmentation_explorer(toy, preset="seed", copies=2, n_samples=2, image_size=32)
    controls, sliders, message, picture = panel.children
    choose, _, seed_box, _, reseed = controls.children
    assert [s.description for s in sliders.children] == ["rotate", "hflip", "vflip"]
    first = picture.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"  # the first rendering exists without any interaction
    choose.value = "ultrasound"
    assert "speckle" in [s.description for s in sliders.children]
    second = picture.value
    reseed.click()
    assert seed_box.value == 1
    assert len({first, second, picture.value}) == 3 and message.value == ""
    sliders.children[0].value = 80.0  # a strength change redraws too
    assert picture.value not in (first, second)
