"""Data cards: Hugging Face-style front matter that parses, a body with the agreed sections, and figures
that match what the generator writes and what the real samples hold."""

import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml

from mmkit.data import make_synthetic_food101, make_synthetic_fpus23, read_fpus23, read_upmc_food101

CARDS = Path(__file__).resolve().parents[1] / "data_cards"
SECTIONS = ["## Structure", "## Provenance", "## Splits", "## Known issues", "## Citation"]


def _card(name: str) -> tuple[dict, str]:
    text = (CARDS / f"{name}.md").read_text(encoding="utf-8")
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, flags=re.S)
    assert m, f"{name}.md must start with YAML front matter between --- lines"
    return yaml.safe_load(m.group(1)), m.group(2)


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _splits(config: dict) -> dict[str, int]:
    return {s["name"]: s["num_examples"] for s in config["splits"]}


@pytest.mark.parametrize("name", ["upmc_food101", "fpus23", "synthetic"])
def test_card_parses_and_has_the_sections(name):
    meta, body = _card(name)
    for key in (
        "license",
        "task_categories",
        "size_categories",
        "source_datasets",
        "dataset_info",
        "mmkit_reader",
    ):
        assert meta.get(key), f"{name}.md: front matter lacks {key}"
    assert callable(_resolve(meta["mmkit_reader"]))
    for config in meta["dataset_info"]:
        assert all(isinstance(n, int) and n > 0 for n in _splits(config).values())
        if "mmkit_reader" in config:
            assert callable(_resolve(config["mmkit_reader"]))
    positions = [body.find(s) for s in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), f"{name}.md: sections {SECTIONS} in order"


def test_synthetic_card_counts_match_the_generator(tmp_path):
    meta, _ = _card("synthetic")
    configs = {c["config_name"]: c for c in meta["dataset_info"]}
    food, fpus = configs["synthetic_food101"], configs["synthetic_fpus23"]
    for make, config in ((make_synthetic_food101, food), (make_synthetic_fpus23, fpus)):
        defaults = {k: p.default for k, p in inspect.signature(make).parameters.items()}
        assert config["generator_settings"].items() <= defaults.items()
        assert _resolve(config["generator"]) is make
    root = make_synthetic_food101(tmp_path / "food")
    ds = read_upmc_food101(root)
    assert _splits(food) == ds.summary() and food["num_classes"] == len(ds.classes)
    assert food["on_disk"] == {s: len(list((root / "images" / s).glob("*/*.jpg"))) for s in ("train", "test")}
    root = make_synthetic_fpus23(tmp_path / "fpus")
    ds = read_fpus23(root)
    assert _splits(fpus) == ds.summary()
    assert fpus["num_boxes"] == ds.meta["n_boxes"] and fpus["num_streams"] == len(
        list((root / "four_poses").iterdir())
    )


def test_fpus23_card_figures_match_the_real_sample(shared_dir):
    meta, _ = _card("fpus23")
    config = meta["dataset_info"][0]
    files = sorted((shared_dir / "data" / "fpus23_annotations_sample").glob("annotation/*/annotations.xml"))
    texts = [f.read_text(encoding="utf-8") for f in files]
    assert config["num_streams"] == len(files)
    assert config["num_boxes"] == sum(t.count("<box ") for t in texts)
    assert _splits(config) == {"all": sum(t.count("<image ") for t in texts)}


def test_fpus23_card_unboxed_counts_match_the_real_sample(shared_dir):
    meta, body = _card("fpus23")
    config = meta["dataset_info"][0]
    files = sorted((shared_dir / "data" / "fpus23_annotations_sample").glob("annotation/*/annotations.xml"))
    frames = {f.parent.name: f.read_text(encoding="utf-8").count("<image ") for f in files}
    unboxed = {
        f.parent.name: frames[f.parent.name] for f in files if "<box " not in f.read_text(encoding="utf-8")
    }
    assert config["unboxed_streams"] == unboxed
    keep, drop = sum(frames.values()), sum(frames.values()) - sum(unboxed.values())
    assert f"| {keep:,} frames |" in body and f"| {drop:,} frames |" in body
