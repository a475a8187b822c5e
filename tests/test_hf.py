"""dataset='hf': a Hugging Face `datasets` dataset written by the test itself (no network) read as records."""

import pytest
from PIL import Image

from mmkit.config import DataConfig
from mmkit.data import DataError, load_dataset, read_hf

datasets = pytest.importorskip("datasets")


def _images(n, off=0):
    return [Image.new("RGB", (8, 8), (i + off, 100, 200)) for i in range(n)]


def test_a_saved_dataset_dict_with_images_and_class_labels(tmp_path):
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["cat", "dog"]),
        }
    )

    def part(n, off):
        return datasets.Dataset.from_dict(
            {
                "image": _images(n, off),
                "caption": [f"a photo {off + i}" for i in range(n)],
                "label": [i % 2 for i in range(n)],
            },
            features=features,
        )

    folder = tmp_path / "hfset"
    datasets.DatasetDict({"train": part(20, 0), "test": part(6, 100)}).save_to_disk(str(folder))
    cache = tmp_path / "cache"
    cfg = DataConfig(
        dataset="hf", hf_dataset=str(folder), text_col="caption", image_cache=str(cache), val_fraction=0.2
    )
    ds = load_dataset(cfg)
    assert ds.classes == ["cat", "dog"] and ds.task == "multiclass"
    assert ds.summary() == {"train": 16, "val": 4, "test": 6}  # val carved from train: the dict has none
    rec = ds.records("test")[0]
    assert rec.text.startswith("a photo 10") and rec.label in ("cat", "dog")
    assert rec.image_path.is_file() and cache in rec.image_path.parents
    with Image.open(rec.image_path) as im:
        assert im.size == (8, 8)
    n_files = len(list(cache.rglob("*.png")))
    assert n_files == 26
    load_dataset(cfg)  # a second read reuses the files
    assert len(list(cache.rglob("*.png"))) == n_files


def test_a_single_dataset_with_paths_multilabel_and_groups(tmp_path):
    paths = []
    for i, im in enumerate(_images(30)):
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        im.save(p)
        paths.append(str(p))
    d = datasets.Dataset.from_dict(
        {
            "file": paths,
            "text": [f"t {i}" for i in range(30)],
            "tags": [["a", "b"] if i % 3 else ["a"] for i in range(30)],
            "event": [f"e{i // 5}" for i in range(30)],
        }
    )
    d.save_to_disk(str(tmp_path / "single"))
    ds = read_hf(str(tmp_path / "single"), image_col="file", label_col="tags", group_col="event")
    assert ds.task == "multilabel" and ds.classes == ["a", "b"] and sum(ds.summary().values()) == 30
    groups = {k: {r.group for r in v} for k, v in ds.splits.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"])


def test_no_such_dataset_names_the_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"notebook parameter hf_dataset"):
        read_hf(str(tmp_path / "nope" / "x"))
    with pytest.raises(ValueError, match=r"needs hf_dataset"):
        load_dataset(DataConfig(dataset="hf"))


def test_image_cache_follows_mmkit_cache(tmp_path, monkeypatch):
    from mmkit.data.manifest import default_image_cache

    monkeypatch.delenv("MMKIT_CACHE", raising=False)
    assert default_image_cache().parts[-2:] == ("data", "image_cache")
    monkeypatch.setenv("MMKIT_CACHE", str(tmp_path / "cache"))
    assert default_image_cache() == tmp_path / "cache" / "image_cache"
