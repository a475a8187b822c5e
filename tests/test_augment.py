"""The batch-augmentation loader and presets: shapes, copies, determinism, epochs, DDP split, parameters."""

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mmkit.augment import (
    NORMS,
    PRESETS,
    build_preset,
    decode_image,
    make_loader,
    normalize,
    preset_params,
    preview,
)
from mmkit.data.records import DataError, Dataset, Record


def _write(path: Path, rng: np.random.Generator, h: int, w: int, mode: str) -> Path:
    # Smooth gradients plus noise: rotations and crops visibly change such an image.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=2)
    arr = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    """11 train, 3 val, multiclass; mixed sizes, grayscale JPEGs and a palette PNG."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    recs = []
    for i in range(14):
        h, w = [(40, 56), (64, 48), (33, 33)][i % 3]
        mode = "L" if i % 4 == 0 else "RGB"
        ext = "png" if i == 5 else "jpg"
        p = _write(root / f"img{i}.{ext}", rng, h, w, mode)
        if i == 5:
            Image.open(p).convert("P").save(p)
        recs.append(Record(id=p.name, image_path=p, text=f"text {i}", label="a" if i % 2 else "b"))
    return Dataset("toy", ["a", "b"], {"train": recs[:11], "val": recs[11:], "test": []})


def _all(loader) -> list[dict]:
    return list(loader)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_batch_shapes_dtypes_and_grouping(toy, preset):
    loader = make_loader(toy, "train", batch_size=4, copies=3, preset=preset, image_size=32, seed=1)
    batches = _all(loader)
    assert len(loader) == len(batches) == 3  # 11 samples, batch 4, no drop_last
    b = batches[0]
    assert b["image"].dtype == torch.uint8 and b["image"].shape == (12, 3, 32, 32)
    assert b["label"].dtype == torch.int64 and b["label"].shape == (12,)
    assert b["copy"].tolist() == [0, 1, 2] * 4
    # sample-major: the index, id, text and label of copies are repeated
    idx = b["index"].view(4, 3)
    assert (idx == idx[:, :1]).all()
    recs = toy.records("train")
    targets = toy.targets("train")
    for k in range(12):
        i = int(b["index"][k])
        assert b["id"][k] == recs[i].id and b["text"][k] == recs[i].text
        assert int(b["label"][k]) == targets[i]
    # every training sample once per epoch, last batch partial
    seen = torch.cat([x["index"][x["copy"] == 0] for x in batches])
    assert sorted(seen.tolist()) == list(range(11))
    assert batches[-1]["image"].shape[0] == 3 * 3


def test_copies_differ_and_each_image_is_decoded_once(toy, monkeypatch):
    import mmkit.augment as aug

    aug.decode_cache().clear()  # other tests may have cached these images already
    calls = []
    real = aug.decode_image
    monkeypatch.setattr(
        aug, "decode_image", lambda path, min_size=None: calls.append(path) or real(path, min_size)
    )
    b = next(iter(make_loader(toy, "train", batch_size=4, copies=4, preset="seed", image_size=32, seed=0)))
    assert len(calls) == 4 and len(set(calls)) == 4  # 4 samples x 4 copies, 4 decodes
    views = b["image"].view(4, 4, 3, 32, 32).float()
    for s in range(4):
        for c in range(1, 4):
            assert (views[s, 0] - views[s, c]).abs().mean() > 1.0, "two copies of a sample are identical"


def test_deterministic_across_num_workers(toy):
    kw = dict(batch_size=3, copies=2, preset="food", image_size=32, seed=7)
    a = _all(make_loader(toy, "train", num_workers=0, **kw))
    b = _all(make_loader(toy, "train", num_workers=2, **kw))
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["index"], y["index"])
        assert x["id"] == y["id"]


def test_epochs_and_seeds_change_augmentation(toy):
    kw = dict(batch_size=11, copies=2, preset="seed", image_size=32, shuffle=False)
    loader = make_loader(toy, "train", seed=3, **kw)
    loader.set_epoch(0)
    e0 = next(iter(loader))["image"]
    loader.set_epoch(1)
    e1 = next(iter(loader))["image"]
    loader.set_epoch(0)
    again = next(iter(loader))["image"]
    assert torch.equal(e0, again)
    assert not torch.equal(e0, e1)
    # iterating again without set_epoch moves on to the next epoch instead of repeating it
    assert loader.epoch == 0
    list(loader)
    assert loader.epoch == 1
    other_seed = next(iter(make_loader(toy, "train", seed=4, **kw)))["image"]
    assert not torch.equal(e0, other_seed)


def test_shuffle_order_depends_on_epoch(toy):
    loader = make_loader(toy, "train", batch_size=11, seed=0)
    loader.set_epoch(0)
    o0 = next(iter(loader))["index"].tolist()
    loader.set_epoch(1)
    o1 = next(iter(loader))["index"].tolist()
    assert sorted(o0) == sorted(o1) == list(range(11)) and o0 != o1


def test_eval_split_is_ordered_single_copy_and_deterministic(toy):
    loader = make_loader(toy, "val", batch_size=2, copies=4, preset="seed", image_size=32)
    batches = _all(loader)
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2]]
    assert batches[0]["copy"].tolist() == [0, 0]
    loader.set_epoch(5)
    assert torch.equal(_all(loader)[0]["image"], batches[0]["image"])


def test_ranks_get_disjoint_samples_with_all_copies(toy):
    kw = dict(batch_size=2, copies=3, preset="light", image_size=32, seed=5)
    per_rank = []
    for rank in (0, 1):
        loader = make_loader(toy, "train", distributed=(rank, 2), **kw)
        loader.set_epoch(2)
        batches = _all(loader)
        assert len(loader) == len(batches) == 3  # 11 samples: shards of 6 and 5, 3 steps on both ranks
        assert all(1 <= len(b["id"]) // 3 <= 2 for b in batches)  # at most batch_size samples a step
        idx = torch.cat([b["index"] for b in batches])
        counts = torch.bincount(idx)
        assert set(counts[counts > 0].tolist()) == {3}  # every sample's 3 copies on this rank
        assert loader.num_samples == len(set(idx.tolist()))
        per_rank.append(set(idx.tolist()))
    assert per_rank[0].isdisjoint(per_rank[1])
    # an odd count: every training sample is seen exactly once per epoch across ranks, none dropped
    assert per_rank[0] | per_rank[1] == set(range(11))
    # drop_last keeps full batches only: ranks are cut to equal shares
    cut = [make_loader(toy, "train", distributed=(r, 2), drop_last=True, **kw) for r in (0, 1)]
    assert len(cut[0]) == len(cut[1]) == 2
    # evaluation: every sample exactly once across ranks, nothing dropped
    val = [
        set(torch.cat([b["index"] for b in make_loader(toy, "val", 1, distributed=(r, 2))]).tolist())
        for r in (0, 1)
    ]
    assert val[0].isdisjoint(val[1]) and val[0] | val[1] == {0, 1, 2}


def test_multilabel_targets_repeat(tmp_path):
    rng = np.random.default_rng(1)
    recs = [
        Record(id=f"{i}", image_path=_write(tmp_path / f"{i}.jpg", rng, 40, 40, "RGB"), text="", label=lab)
        for i, lab in enumerate([["head"], ["arm", "legs"], []])
    ]
    ds = Dataset("ml", ["head", "arm", "legs"], {"train": recs, "val": [], "test": []}, task="multilabel")
    b = next(
        iter(
            make_loader(
                ds, "train", batch_size=3, copies=2, preset="ultrasound", image_size=32, shuffle=False
            )
        )
    )
    assert b["label"].dtype == torch.float32 and b["label"].shape == (6, 3)
    assert b["label"][2:4].tolist() == [[0, 1, 1], [0, 1, 1]]


def test_seed_preset_is_the_published_pipeline():
    p = build_preset("seed", image_size=224)
    (resize,) = p.pre.transforms
    assert isinstance(resize, A.Resize) and (resize.height, resize.width) == (244, 244)
    rot, crop, hflip, vflip = p.train.transforms
    assert isinstance(rot, A.Rotate) and tuple(rot.limit) == (-15, 15) and rot.p == 1.0
    assert rot.interpolation == cv2.INTER_NEAREST and rot.border_mode == cv2.BORDER_CONSTANT
    assert isinstance(crop, A.RandomCrop) and (crop.height, crop.width) == (224, 224)
    assert isinstance(hflip, A.HorizontalFlip) and hflip.p == 0.5
    assert isinstance(vflip, A.VerticalFlip) and vflip.p == 0.5
    (ev,) = p.eval.transforms
    assert isinstance(ev, A.Resize) and (ev.height, ev.width) == (224, 224)
    # scaled by image_size / 224
    q = build_preset("seed", image_size=112)
    assert q.pre.transforms[0].height == 122 and q.train.transforms[1].height == 112
    assert q.eval.transforms[0].height == 112


def test_presets_have_no_colour_jitter_for_ultrasound_and_accept_strengths():
    us = build_preset("ultrasound", 64)
    names = {type(t).__name__ for t in us.train.transforms}
    assert "ColorJitter" not in names and {"RandomGamma", "MultiplicativeNoise", "Affine"} <= names
    assert preset_params("food")["jitter"] == 0.3
    assert build_preset("seed", 64, rotate=40).train.transforms[0].limit == (-40, 40)
    with pytest.raises(ValueError, match="no parameter"):
        build_preset("seed", 64, jitter=0.1)
    with pytest.raises(ValueError, match="unknown preset"):
        build_preset("nope")


def test_preview_matches_loader(toy):
    b = next(
        iter(
            make_loader(
                toy, "train", batch_size=2, copies=3, preset="food", image_size=32, seed=9, shuffle=False
            )
        )
    )
    views = preview(toy, "train", indices=[0, 1], preset="food", copies=3, image_size=32, seed=9)
    assert views.shape == (2, 3, 32, 32, 3)
    assert np.array_equal(views.reshape(6, 32, 32, 3), b["image"].permute(0, 2, 3, 1).numpy())


def test_decode_grayscale_and_16bit(tmp_path):
    g = tmp_path / "g.png"
    Image.fromarray(np.full((5, 7), 100, np.uint8), "L").save(g)
    assert decode_image(g).shape == (5, 7, 3)
    s = tmp_path / "s.png"
    Image.fromarray((np.arange(35).reshape(5, 7) * 1000).astype(np.uint16)).save(s)
    arr = decode_image(s)
    assert arr.dtype == np.uint8 and arr.max() == 255 and arr.min() == 0  # stretched, not clipped
    big = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((400, 480, 3), np.uint8)).save(big)
    assert decode_image(big, min_size=100).shape == (100, 120, 3)  # JPEG decoded at 1/4 scale


def test_bad_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = Dataset("bad", ["a"], {"train": [Record(id="broken.jpg", image_path=bad, text="", label="a")]})
    with pytest.raises(DataError, match="broken.jpg.*train record 0"):
        next(iter(make_loader(ds, "train", batch_size=1)))


def test_normalize():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    y = normalize(x, "imagenet")
    mean, std = NORMS["imagenet"]
    ref = (x.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert y.dtype == torch.float32 and torch.allclose(y, ref, atol=1e-5)
    z = normalize(x, ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), channels_last=True)
    assert torch.allclose(z, normalize(x, "half")) and z.is_contiguous(memory_format=torch.channels_last)
    assert normalize(x, "clip").shape == x.shape
    with pytest.raises(TypeError, match="uint8"):
        normalize(x.float(), "imagenet")
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize(x, "foo")


def test_copy_stats():
    from mmkit.augment import copy_stats

    v = np.zeros((3, 2, 4, 4, 3), np.uint8)
    v[:, 1] = 6  # every second copy 6 grey levels brighter
    v[1] += 30
    v[2] += 60
    stats = copy_stats(v)
    assert stats["copy_diff"] == pytest.approx(6.0)
    assert stats["sample_diff"] == pytest.approx((30 + 60 + 30) / 3)


def test_drop_last_and_distributed_arguments(toy):
    loader = make_loader(toy, "train", batch_size=4, copies=2, image_size=32, drop_last=True)
    batches = _all(loader)
    assert len(loader) == len(batches) == 2 and all(b["image"].shape[0] == 8 for b in batches)
    assert loader.num_samples == 8
    with pytest.raises(RuntimeError, match="init_process_group"):
        make_loader(toy, "train", batch_size=4, distributed=True)  # torch.distributed not initialised
    with pytest.raises(ValueError, match="rank"):
        make_loader(toy, "train", batch_size=4, distributed=(2, 2))


def test_batch_plan_of_an_empty_split_under_ddp():
    from mmkit.augment import _BatchPlan

    for rank in (0, 1):
        plan = _BatchPlan(0, 4, True, False, rank, 2, 0, True)
        assert len(plan) == 0 and plan.batches(0) == []


def test_ddp_cut_is_logged_once_with_the_numbers(caplog):
    from mmkit.augment import _BatchPlan

    # 11 samples, 2 ranks, batch_size 1: shards of 6 and 5 cannot step in lockstep, so 1 sample is cut
    with caplog.at_level("WARNING", logger="mmkit.augment"):
        plans = [_BatchPlan(11, 1, True, False, rank, 2, 0, True) for rank in (0, 1)]
    assert [p.cut for p in plans] == [1, 1] and len(plans[0]) == len(plans[1]) == 5
    seen = set(plans[0].indices(0)) | set(plans[1].indices(0))
    assert len(seen) == 11 - 1
    logged = [r.getMessage() for r in caplog.records if r.name == "mmkit.augment"]
    assert len(logged) == 1 and "1 of the 11 training samples are left out" in logged[0]  # rank 0 only
    assert "batch_size=1" in logged[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mmkit.augment"):
        even = _BatchPlan(11, 2, True, False, 0, 2, 0, True)  # shards cut into equal step counts: no cut
        _BatchPlan(11, 4, False, False, 0, 2, 0, False)  # evaluation is never cut
    assert even.cut == 0 and not caplog.records
