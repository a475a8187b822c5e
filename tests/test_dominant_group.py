"""Grouped data where one group holds most of the rows (a tweet set grouped by news event: one event has 75%).

The grouped split must keep enough groups in train for the k-fold text logits and cross-fitting, warn about
the dominant group, and stop at load, with a fix, when the data cannot give train enough groups.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmkit.config import DataConfig
from mmkit.data import DataError, DataWarning, load_dataset, read_manifest
from mmkit.data.records import Record, fill_train_groups, grouped_split
from mmkit.folds import assign_folds

# The real manifest's shape, scaled down: one event with 75% of the rows, 14 small events.
SMALL = [14, 13, 12, 12, 11, 11, 10, 10, 10, 9, 9, 8, 8, 7]
BIG = 3 * sum(SMALL)  # 75% of the rows


def _manifest(tmp_path: Path, sizes: list[int], seed: int = 0) -> Path:
    """A CSV manifest with one image file per row and the group column ``event`` (event0 is the first size)."""
    rng = np.random.default_rng(seed)
    img_dir = tmp_path / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    first = img_dir / "0.png"
    Image.new("RGB", (6, 6), (10, 200, 30)).save(first)
    rows = []
    for g, size in enumerate(sizes):
        for j in range(size):
            path = img_dir / f"{g}_{j}.png"
            if not path.exists():
                path.symlink_to(first)
            label = f"c{int(rng.choice(3, p=[0.5, 0.3, 0.2]))}"
            rows.append([f"img/{path.name}", f"text {g} {j}", label, f"event{g}"])
    out = tmp_path / "m.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "text", "label", "event"])
        w.writerows(rows)
    return out


def _groups(ds) -> dict[str, set[str]]:
    return {k: {r.group for r in v} for k, v in ds.splits.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_dominant_group_leaves_train_enough_groups_for_the_folds(tmp_path, seed):
    path = _manifest(tmp_path, [BIG, *SMALL])
    n = BIG + sum(SMALL)
    with pytest.warns(DataWarning) as caught:
        ds = read_manifest(path, group_col="event", seed=seed, check_images="none", min_train_groups=5)
    groups = _groups(ds)
    assert len(groups["train"]) >= 5 and "event0" in groups["train"], groups
    assert ds.meta["groups_per_split"] == {k: len(v) for k, v in groups.items()}
    assert not (
        groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"]
    )
    assert sum(ds.summary().values()) == n
    # Near the requested shares: train holds the big event and only the 4 groups the folds need beyond it,
    # and val / test share the other 10 groups about 1:2 as val_fraction=0.1 : test_fraction=0.2 ask.
    assert len(groups["train"]) == 5
    share = {k: len(v) / n for k, v in ds.splits.items()}
    assert share["train"] <= (BIG + sum(sorted(SMALL)[-4:])) / n + 1e-9, share
    rest = share["val"] + share["test"]  # what the big event and the folds leave: 1 : 2, within one group
    assert abs(share["val"] - rest / 3) <= max(SMALL) / n + 1e-9, share
    assert len(groups["val"]) >= 2 and len(groups["test"]) >= 2, groups
    messages = [str(w.message) for w in caught]
    assert any("group 'event0' holds 75% of the" in m and "(train)" in m for m in messages), messages
    assert any(
        re.search(r"train held [12] group\(s\), fewer than the 5 .* moved into train \(\d from (test|val)", m)
        for m in messages
    ), messages
    assert any("group 'event0' holds 75%" in m for m in ds.meta["warnings"])
    assert any("fewer than the 5 that k-fold" in m for m in ds.meta["warnings"])
    # and the folds the text features and cross-fitting need can now be made
    train = ds.records("train")
    folds = assign_folds(train, 5, seed=seed)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]


def test_the_same_split_when_train_already_holds_enough_groups():
    rng = np.random.default_rng(0)
    recs = [
        Record(f"{g}_{j}", Path(f"{g}_{j}.png"), "t", f"c{rng.integers(3)}", group=f"g{g}")
        for g, size in enumerate([40, 30, 25, 22, 20, 18, 15, 12, 10, 8, 6, 5])
        for j in range(size)
    ]
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    for seed in range(3):
        plain = grouped_split(recs, fractions, seed, report=False)
        kept = grouped_split(recs, fractions, seed, report=False, min_train_groups=5)
        assert len({r.group for r in plain["train"]}) >= 5
        assert {k: [r.id for r in v] for k, v in plain.items()} == {
            k: [r.id for r in v] for k, v in kept.items()
        }


def test_fill_train_groups_never_empties_a_split_and_keeps_the_shares():
    recs = [Record(f"{g}_{j}", Path("x.png"), "t", "a", group=f"g{g}") for g, size in enumerate([60, 5, 5, 5, 5, 10, 10]) for j in range(size)]  # fmt: skip
    splits = {
        "train": [r for r in recs if r.group == "g0"],
        "val": [r for r in recs if r.group in ("g1", "g2")],
        "test": [r for r in recs if r.group in ("g3", "g4", "g5", "g6")],
    }
    moves = fill_train_groups(splits, {"train": 0.7, "val": 0.1, "test": 0.2}, 3, np.random.default_rng(0))
    # the two 5-row groups of test: a 10-row group would overshoot train more, and val (10 rows, share 0.1)
    # would lose half its rows for one group
    assert [name for name, _ in moves] == ["test", "test"] and {g for _, g in moves} == {"g3", "g4"}
    assert {r.group for r in splits["test"]} == {"g5", "g6"}
    # asked for more than the data allows: val and test keep one group each, train gets the rest
    moves = fill_train_groups(splits, {"train": 0.7, "val": 0.1, "test": 0.2}, 10, np.random.default_rng(0))
    assert len({r.group for r in splits["val"]}) == 1 and len({r.group for r in splits["test"]}) == 1
    assert len({r.group for r in splits["train"]}) == 5


def test_load_warns_with_a_fix_and_the_folds_stop_when_train_cannot_hold_enough_groups(tmp_path):
    # one big event and 4 small ones: with val and test one group each, train can hold 3 groups, not 5.
    # Loading (notebooks 01 and 03 need no folds) warns; making 5 folds (04 / 05, before training) stops.
    path = _manifest(tmp_path, [60, 6, 5, 5, 4])
    cfg = DataConfig(dataset="manifest", data_root=str(path), group_col="event", check_images="none")
    with pytest.warns(DataWarning, match=r"train holds 3 group\(s\) .*fewer than the 5") as rec:
        short = load_dataset(cfg)
    text = " ".join(str(w.message) for w in rec)
    assert "Lower text_folds and stage1_folds to 3 or fewer" in text
    assert "DataConfig(min_train_groups=3)" in text and "group_col=None" in text
    assert any("train holds 3 group(s)" in w for w in short.meta["warnings"])
    with pytest.raises(ValueError, match=r"3 groups cannot make 5 folds; lower text_folds / stage1_folds"):
        assign_folds(short.records("train"), 5, seed=0)
    # the fix it names works: 3 folds, train keeps 3 groups
    ds = load_dataset(DataConfig(**{**cfg.__dict__, "min_train_groups": 3}))
    assert len(_groups(ds)["train"]) == 3
    assert sorted(set(assign_folds(ds.records("train"), 3, seed=0).tolist())) == [0, 1, 2]


@pytest.fixture(scope="module")
def dominant_manifest(tmp_path_factory) -> Path:
    """The synthetic Food-101 (images and titles a model can learn) as a manifest grouped by ``event``:
    event0 holds 75% of the rows, 14 small events share the rest (the real tweet manifest's shape)."""
    root = tmp_path_factory.mktemp("dominant")
    ds = load_dataset(DataConfig(dataset="synthetic_food101", data_root=str(root / "food")))
    recs = [r for split in ("train", "val", "test") for r in ds.records(split)]
    order = np.random.default_rng(0).permutation(len(recs))
    n_big = round(0.75 * len(recs))
    event = {int(i): ("event0" if k < n_big else f"event{1 + k % 14}") for k, i in enumerate(order)}
    out = root / "tweets.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "text", "label", "event"])
        w.writerows([str(r.image_path), r.text, r.label, event[i]] for i, r in enumerate(recs))
    return out


def _manifest_parameters(path: Path) -> dict:
    # text_folds=5 is the notebooks' default, the setting that stopped both notebooks before
    return {"dataset": "manifest", "data_root": str(path), "group_col": "event", "text_folds": 5}


def _check_grouped_run(metrics: dict) -> None:
    assert metrics["groups_per_split"]["train"] >= 5, metrics["groups_per_split"]
    warnings_ = metrics["data_warnings"]
    assert any("group 'event0' holds 75%" in w for w in warnings_), warnings_
    assert any("fewer than the 5 that k-fold" in w and "moved into train" in w for w in warnings_), warnings_


def test_notebook04_runs_on_a_manifest_with_a_dominant_group(dominant_manifest, tmp_path):
    from mmkit.run import NOTEBOOKS, execute_notebook

    params = {**_manifest_parameters(dominant_manifest), "bank_dir": str(tmp_path / "bank")}
    metrics = execute_notebook(
        NOTEBOOKS / "04_multimodal_fusion.ipynb", tmp_path / "nb04", params, smoke=True
    )
    _check_grouped_run(metrics)
    assert metrics["text_out_of_fold"] and set(metrics["baselines"]) == {"image-only", "text-only"}
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_notebook05_runs_on_a_manifest_with_a_dominant_group(dominant_manifest, tmp_path):
    from mmkit.run import NOTEBOOKS, execute_notebook

    params = {**_manifest_parameters(dominant_manifest), "n_seeds": 1, "stage1_folds": 2}
    metrics = execute_notebook(NOTEBOOKS / "05_reproduce.ipynb", tmp_path / "nb05", params, smoke=True)
    _check_grouped_run(metrics)
    assert metrics["n_seeds"] == 1 and metrics["cross_fitting"]["folds"] == 2


def test_more_folds_than_min_train_groups_is_not_refused_before_loading():
    # data with many groups gives train plenty whatever min_train_groups says: only the loaded split can
    # tell (a warning at load, then the folds' error with the fix), so the input check stays silent
    from mmkit.checks import input_problems

    grouped = {"dataset": "hf", "hf_dataset": "tweets", "group_col": "event", "min_train_groups": 5}
    assert input_problems({**grouped, "text_folds": 10, "stage1_folds": 8}) == []


def test_a_reader_that_moves_no_groups_gets_only_the_fixes_that_apply():
    from mmkit.data.checks import require_train_groups
    from mmkit.data.records import Dataset

    def recs(groups):
        return [Record(f"{g}{i}", Path("x.png"), "t", "a", group=g) for g in groups for i in range(3)]

    ds = Dataset("fpus", ["a"], {"train": recs("abc"), "val": recs("d"), "test": recs("ef")})  # no grouped_by
    with pytest.raises(DataError, match=r"train holds 3 group\(s\)") as err:
        require_train_groups(ds, "fpus23/", 5)
    assert "Lower text_folds and stage1_folds to 3 or fewer" in str(err.value)
    assert "group_col" not in str(err.value) and "more streams" in str(err.value)
    require_train_groups(ds, "fpus23/", 3)  # enough for 3 folds
