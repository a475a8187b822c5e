"""Feature bank: frozen extraction, reuse on the same key, rebuild on any change; bank batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from mmkit.data import make_synthetic_food101, read_upmc_food101
from mmkit.features import BankLoader, build_feature_bank, load_backbone_weights
from mmkit.text import TextFeatures


class TinyNet(nn.Module):
    """A Backbone-shaped module (num_features, norm) with BatchNorm, to check that 'frozen' means eval."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.num_features, self.norm = 8, "imagenet"
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert not torch.is_grad_enabled(), "the bank must run the backbone without gradients"
        return self.net(x)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = make_synthetic_food101(
        tmp_path_factory.mktemp("food"), n_classes=3, train_per_class=8, test_per_class=3, image_size=32
    )
    return read_upmc_food101(root)


def _build(ds, cache, module, **kw):
    opts = {"views": 3, "image_size": 32, "preset": "seed", "seed": 0, "batch_size": 24, "device": "cpu"}
    opts.update(kw)
    return build_feature_bank(ds, module, cache_dir=cache, **opts)


def test_bank_is_frozen_float16_and_complete(ds, tmp_path):
    net = TinyNet()
    net.train()
    running = net.net[1].running_mean.clone()
    bank = _build(ds, tmp_path, net)
    n = len(ds.records("train"))
    assert bank.features["train"].shape == (n, 3, 8) and bank.features["train"].dtype == np.float16
    assert bank.plain["test"].shape == (len(ds.records("test")), 8) and not bank.reused
    assert torch.equal(net.net[1].running_mean, running)  # eval(): BatchNorm statistics untouched
    assert net.training  # the caller's mode is given back
    views = np.asarray(bank.features["train"], dtype=np.float32)
    assert np.abs(views[:, 0] - views[:, 1]).max() > 1e-3  # K different augmented views
    assert np.isfinite(views).all() and (np.abs(views).sum(-1) > 0).all()  # every (sample, view) written


def test_bank_reused_on_same_key_rebuilt_on_any_change(ds, tmp_path):
    net = TinyNet()
    first = _build(ds, tmp_path, net)
    calls = net.calls
    again = _build(ds, tmp_path, net)
    assert again.reused and again.path == first.path and net.calls == calls  # no forward pass at all
    assert np.array_equal(np.asarray(again.plain["val"]), np.asarray(first.plain["val"]))

    changes = {
        "views": {"views": 2},
        "image_size": {"image_size": 48},
        "preset": {"preset": "light"},
        "seed": {"seed": 1},
    }
    paths = {first.path}
    for part, kw in changes.items():
        bank = _build(ds, tmp_path, net, **kw)
        assert not bank.reused and bank.path not in paths, part
        paths.add(bank.path)
        assert _build(ds, tmp_path, net, **kw).reused, part
    # other weights of the same architecture
    other = _build(ds, tmp_path, TinyNet(seed=1))
    assert not other.reused and other.path not in paths
    paths.add(other.path)
    # a checkpoint: same file reuses, a changed file rebuilds
    ckpt = tmp_path / "stage1.pt"
    torch.save({"model": {f"backbone.{k}": v for k, v in TinyNet(seed=2).state_dict().items()}}, ckpt)
    b1 = _build(ds, tmp_path, TinyNet(), checkpoint=ckpt)
    assert not b1.reused and b1.path not in paths
    assert _build(ds, tmp_path, TinyNet(), checkpoint=ckpt).reused
    torch.save({"model": {f"backbone.{k}": v for k, v in TinyNet(seed=3).state_dict().items()}}, ckpt)
    b2 = _build(ds, tmp_path, TinyNet(), checkpoint=ckpt)
    assert not b2.reused and b2.path != b1.path
    # other data
    fewer = dataclasses.replace(ds, splits={**ds.splits, "train": ds.records("train")[1:]})
    assert not _build(ds=fewer, cache=tmp_path, module=net).reused


def test_checkpoint_loader_unwraps_and_names_bad_files(tmp_path):
    src, dst = TinyNet(seed=5), TinyNet(seed=6)
    path = tmp_path / "c.pt"
    torch.save({"model": {f"backbone.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, path)
    load_backbone_weights(dst, path)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    torch.save({"model": {"other.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="c.pt: .* backbone weights missing"):
        load_backbone_weights(dst, path)


def _text_table(ds) -> TextFeatures:
    table = TextFeatures(encoder="ids", kind="logits", out_of_fold=True)
    for split in ("train", "val", "test"):
        ids = ds.ids(split)
        table.add(split, ids, np.array([[hash(i) % 997] for i in ids], dtype=np.float32))
    return table


def test_bank_loader_draws_m_of_k_views_seeded_and_joins_by_id(ds, tmp_path):
    bank = _build(ds, tmp_path, TinyNet(), views=4)
    text = _text_table(ds)
    loader = BankLoader(bank, text, ds, "train", batch_size=5, copies=3, seed=7)
    batches = list(loader)
    n = len(ds.records("train"))
    assert len(batches) == len(loader) and sum(len(b["id"]) for b in batches) == 3 * n
    views = np.asarray(bank.features["train"], dtype=np.float32)
    for b in batches:
        idx, copy = b["index"].numpy(), b["copy"].numpy()
        assert np.allclose(b["features"].numpy(), views[bank.rows("train", b["id"]), copy])
        for s in range(0, len(idx), 3):  # M distinct views of each sample, sample-major
            assert len(set(idx[s : s + 3])) == 1 and len(set(copy[s : s + 3])) == 3
        assert np.array_equal(b["text_features"].numpy(), text.lookup("train", b["id"]))
        assert np.array_equal(b["label"].numpy(), ds.targets("train")[idx])
    again = list(BankLoader(bank, text, ds, "train", batch_size=5, copies=3, seed=7))
    assert all(torch.equal(a["features"], b["features"]) for a, b in zip(batches, again))
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))["features"], batches[0]["features"])
    # a dataset whose records are shuffled still gets each id's own features
    rng = np.random.default_rng(0)
    recs = ds.records("val")
    shuffled = dataclasses.replace(
        ds, splits={**ds.splits, "val": [recs[i] for i in rng.permutation(len(recs))]}
    )
    val = next(iter(BankLoader(bank, text, shuffled, "val", batch_size=100)))
    assert np.allclose(
        val["features"].numpy(), np.asarray(bank.plain["val"], np.float32)[bank.rows("val", val["id"])]
    )
    assert np.array_equal(val["text_features"].numpy(), text.lookup("val", val["id"]))
    with pytest.raises(ValueError, match="K=4"):
        BankLoader(bank, text, ds, "train", batch_size=5, copies=5)


def test_named_backbone_with_checkpoint_reuses_without_building(ds, tmp_path, monkeypatch):
    import mmkit.models
    from mmkit.models import create_backbone

    torch.manual_seed(1)
    ckpt = tmp_path / "stage1.pt"
    torch.save({"model": create_backbone("timm:test_resnet").state_dict(), "epoch": 0}, ckpt)
    import mmkit.features

    hashed = []
    real_sha = mmkit.features.checkpoint_weights_sha256
    monkeypatch.setattr(
        mmkit.features, "checkpoint_weights_sha256", lambda path: hashed.append(path) or real_sha(path)
    )
    first = _build(ds, tmp_path / "bank", "timm:test_resnet", checkpoint=ckpt)
    assert hashed == [ckpt]  # the checkpoint is hashed once to name the bank, not again to build it
    assert not first.reused and first.key["weights"].startswith("checkpoint:")
    assert first.key["backbone"] == "timm:test_resnet" and first.dim == 96

    def no_build(*args, **kwargs):
        raise AssertionError("a reused bank must not build the backbone")

    monkeypatch.setattr(mmkit.models, "create_backbone", no_build)
    again = _build(ds, tmp_path / "bank", "timm:test_resnet", checkpoint=ckpt)
    assert again.reused and again.path == first.path


def test_backbone_module_is_a_fresh_copy_and_hashes_nothing(monkeypatch):
    # The live path trains the module it gets: each run needs its own, and the caller's stays untouched.
    import mmkit.features as features
    from mmkit.models import create_backbone

    monkeypatch.setattr(features, "file_sha256", lambda *a, **k: pytest.fail("backbone_module hashed a file"))
    monkeypatch.setattr(
        features, "weights_sha256", lambda *a, **k: pytest.fail("backbone_module hashed weights")
    )
    torch.manual_seed(0)
    original = create_backbone("timm:test_resnet")
    before = {k: v.clone() for k, v in original.state_dict().items()}
    copy_ = features.backbone_module(original)
    assert copy_ is not original
    with torch.no_grad():
        for p in copy_.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    a = features.backbone_module("timm:test_resnet", seed=3)
    b = features.backbone_module("timm:test_resnet", seed=3)
    assert a is not b and all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())
    )


def test_bank_rebuilds_when_an_image_is_overwritten(tmp_path):
    import shutil

    from PIL import Image

    root = make_synthetic_food101(
        tmp_path / "food", n_classes=3, train_per_class=4, test_per_class=2, image_size=32
    )
    ds = read_upmc_food101(root)
    net = TinyNet()
    first = _build(ds, tmp_path / "bank", net)
    assert _build(ds, tmp_path / "bank", net).reused
    target = ds.records("test")[0].image_path
    before = np.asarray(first.plain["test"][0], np.float32).copy()
    shutil.copy(target, tmp_path / "keep.jpg")
    Image.new("RGB", (32, 32), (250, 10, 10)).save(target)  # same path and id, other bytes
    again = _build(ds, tmp_path / "bank", net)
    assert not again.reused and again.path != first.path
    assert not np.allclose(np.asarray(again.plain["test"][0], np.float32), before)
    assert again.key["mmkit"] and again.key["albumentations"]  # versions are part of the key


def test_checkpoint_bank_keyed_on_weights_not_file_bytes(ds, tmp_path):
    from mmkit.features import checkpoint_weights_sha256
    from mmkit.train import atomic_save

    state = {f"backbone.{k}": v for k, v in TinyNet(seed=2).state_dict().items()}
    a, b = tmp_path / "a" / "best.pt", tmp_path / "b.pt"
    atomic_save({"model": state, "epoch": 1}, a)
    torch.save({"model": state, "epoch": 4, "history": [1.0]}, b)  # other bytes, same weights
    assert a.read_bytes() != b.read_bytes()
    assert checkpoint_weights_sha256(a) == checkpoint_weights_sha256(b)
    first = _build(ds, tmp_path / "bank", TinyNet(), checkpoint=a)
    assert _build(ds, tmp_path / "bank", TinyNet(), checkpoint=b).path == first.path
    # atomic_save writes the same object to the same bytes (the archive is not named after the tmp file)
    atomic_save({"model": state, "epoch": 1}, tmp_path / "c" / "best.pt")
    assert (tmp_path / "c" / "best.pt").read_bytes() == a.read_bytes()


def test_stale_tmp_folders_of_killed_builds_are_cleaned(ds, tmp_path):
    import os
    import subprocess
    import sys

    import mmkit.features as features

    cache = tmp_path / "bank"
    cache.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(gone.stdout)  # a process that has exited
    dead = cache / f"abc.tmp-{features._HOST}-{dead_pid}-1"
    live = cache / f"abc.tmp-{features._HOST}-{os.getpid()}-2"
    other_host = cache / f"abc.tmp-elsewhere-{dead_pid}-3"
    old = cache / "abc.tmp-123"
    for d in (dead, live, other_host, old):
        d.mkdir()
        (d / "train_views.npy").write_bytes(b"half")
    os.utime(old, (0, 0))
    bank = _build(ds, cache, TinyNet())
    assert not dead.exists() and not old.exists()  # killed builds' leftovers
    assert live.exists() and other_host.exists()  # a live build, another host's: not ours to remove
    assert sorted(p.name for p in cache.iterdir()) == sorted([bank.path.name, live.name, other_host.name])


def test_default_bank_dir_under_out_dir_or_mmkit_cache(monkeypatch, tmp_path):
    from mmkit.features import default_bank_dir

    monkeypatch.delenv("MMKIT_CACHE", raising=False)
    assert default_bank_dir(tmp_path / "run") == tmp_path / "run" / "feature_bank"
    with pytest.raises(ValueError, match="MMKIT_CACHE"):
        default_bank_dir(None)
    monkeypatch.setenv("MMKIT_CACHE", str(tmp_path / "cache"))
    assert default_bank_dir(tmp_path / "run") == tmp_path / "cache" / "feature_bank"


def test_bank_views_epochs_uses_every_view_exactly_once(ds, tmp_path):
    from mmkit.features import resolve_bank_views

    epochs, m = 3, 2
    k = resolve_bank_views("epochs", epochs, m)
    assert k == 6 and resolve_bank_views(8, epochs, m) == 8
    with pytest.raises(ValueError, match="epochs"):
        resolve_bank_views("all", epochs, m)
    from mmkit.features import describe_bank_views

    assert "approximation" in describe_bank_views(4, epochs, m) and "K=4" in describe_bank_views(4, epochs, m)
    assert "approximation" not in describe_bank_views("epochs", epochs, m)
    assert "K=6" in describe_bank_views("epochs", epochs, m)
    bank = _build(ds, tmp_path, TinyNet(), views=k)
    text = _text_table(ds)
    loader = BankLoader(bank, text, ds, "train", batch_size=5, copies=m, seed=3, each_once=True)
    assert isinstance(loader.views, np.memmap)  # read per batch from the .npy file, not copied into RAM
    views = np.asarray(bank.features["train"], dtype=np.float32)
    seen: dict[tuple[str, int], int] = {}
    per_epoch = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        batches = list(loader)
        per_epoch.append(batches)
        for b in batches:
            copy = b["copy"].numpy()
            assert set(copy) == set(range(epoch * m, epoch * m + m))  # this epoch's own views
            assert np.allclose(b["features"].numpy(), views[bank.rows("train", b["id"]), copy])
            for i, c in zip(b["id"], copy.tolist()):
                seen[(i, c)] = seen.get((i, c), 0) + 1
    n = len(ds.records("train"))
    assert len(seen) == n * k and set(seen.values()) == {1}  # every (sample, view) drawn exactly once
    # a resumed run (a fresh loader set to an epoch) repeats that epoch's draws exactly
    again = BankLoader(bank, text, ds, "train", batch_size=5, copies=m, seed=3, each_once=True)
    again.set_epoch(1)
    for a, b in zip(again, per_epoch[1]):
        assert a["id"] == b["id"] and torch.equal(a["features"], b["features"])
    again.set_epoch(epochs)  # past the views the bank holds: an error, not a silent reuse
    with pytest.raises(ValueError, match="K=6"):
        next(iter(again))


def test_bank_loader_reads_the_memmap_per_batch(ds, tmp_path):
    bank = _build(ds, tmp_path, TinyNet(), views=3)
    text = _text_table(ds)
    train = BankLoader(bank, text, ds, "train", batch_size=4, copies=2, seed=0)
    val = BankLoader(bank, text, ds, "val", batch_size=4)
    assert isinstance(train.views, np.memmap) and isinstance(val.plain, np.memmap)
    first = next(iter(train))
    assert first["features"].dtype == torch.float32 and first["features"].shape == (8, 8)
