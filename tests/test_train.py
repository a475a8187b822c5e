"""The fit loop: exact resume, determinism, layer policy under training, selection on val, schedules,
gradient accumulation, the stage-2 style adapter, and stage 1 end to end on tiny data."""

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from mmkit.config import AugmentConfig, ModelConfig, TrainConfig
from mmkit.data.food101 import read_upmc_food101
from mmkit.data.synthetic import make_synthetic_food101
from mmkit.models import parse_train_blocks
from mmkit.train import (
    LOG_EVERY,
    batch_forward,
    build_stage1,
    collective_device,
    fit,
    image_forward,
    load_stage1,
    lr_lambda,
    stage1_loaders,
    train_stage1,
)

torch.set_num_threads(1)
AUG = AugmentConfig(image_size=32, batch_size=6, copies=2, preset="seed")


@pytest.fixture(scope="module")
def food(tmp_path_factory):
    root = make_synthetic_food101(
        tmp_path_factory.mktemp("food"), n_classes=3, train_per_class=8, test_per_class=3, image_size=32
    )
    return read_upmc_food101(root, val_fraction=0.25, seed=0)


def _states_equal(a, b):
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


class Killed(Exception):
    pass


class KillAt:
    """A loader that dies at (epoch, step): the process killed in the middle of an epoch."""

    def __init__(self, loader, epoch, step):
        self.loader, self.epoch, self.step, self.current = loader, epoch, step, 0

    def set_epoch(self, epoch):
        self.current = epoch
        self.loader.set_epoch(epoch)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if (self.current, i) == (self.epoch, self.step):
                raise Killed
            yield batch


def _stage1_fit(food, cfg, out_dir, train_loader=None, resume=False, policy="all"):
    net = build_stage1(food, ModelConfig("timm:test_resnet", train_blocks=policy), AUG, cfg.seed)
    loaders = stage1_loaders(food, AUG, cfg.seed)
    return fit(
        net,
        train_loader or loaders["train"],
        loaders["val"],
        cfg,
        task=food.task,
        classes=food.classes,
        forward=image_forward(net.backbone.norm, cfg.channels_last),
        out_dir=out_dir,
        resume=resume,
    )


def test_killed_mid_epoch_and_resumed_equals_straight_run(food, tmp_path):
    # momentum, warm-up + cosine, accumulation, BatchNorm: every piece of state the checkpoint must carry
    cfg = TrainConfig(epochs=3, lr=0.05, warmup_epochs=0.5, grad_accum=2, seed=7, weight_decay=1e-4)
    straight = _stage1_fit(food, cfg, tmp_path / "a")
    loaders = stage1_loaders(food, AUG, cfg.seed)
    with pytest.raises(Killed):
        _stage1_fit(food, cfg, tmp_path / "b", train_loader=KillAt(loaders["train"], epoch=1, step=2))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 0
    resumed = _stage1_fit(food, cfg, tmp_path / "b", resume=True)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert _states_equal(straight.model.state_dict(), resumed.model.state_dict())
    last_a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    last_b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert _states_equal(last_a["model"], last_b["model"])
    for ha, hb in zip(straight.history, resumed.history):
        assert {k: v for k, v in ha.items() if k != "seconds"} == {
            k: v for k, v in hb.items() if k != "seconds"
        }
    assert straight.best_epoch == resumed.best_epoch and straight.val_metrics == resumed.val_metrics
    assert not list((tmp_path / "b").glob("*.tmp")) and not list((tmp_path / "b").glob(".*.tmp"))


def test_selection_on_val_and_checkpoint_contents(food, tmp_path):
    cfg = TrainConfig(epochs=3, lr=0.1, seed=1, schedule="constant")
    result = _stage1_fit(food, cfg, tmp_path)
    scores = [h["val_score"] for h in result.history]
    assert result.best_epoch == int(np.argmax(scores)) and result.best_score == max(scores)
    assert result.val_metrics["accuracy"] == pytest.approx(result.history[result.best_epoch]["val_accuracy"])
    best = torch.load(result.checkpoint, weights_only=True)
    assert best["epoch"] == result.best_epoch
    assert _states_equal(best["model"], result.model.state_dict())
    last = torch.load(result.last, weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "history", "cfg"} <= set(last)
    assert last["epoch"] == 2 and len(last["history"]) == 3


def test_frozen_blocks_do_not_change_during_training(food, tmp_path):
    cfg = TrainConfig(epochs=1, lr=0.1, seed=2)
    policy = "last:1"
    init = build_stage1(food, ModelConfig("timm:test_resnet", train_blocks=policy), AUG, cfg.seed)
    before = {k: v.clone() for k, v in init.state_dict().items()}
    result = _stage1_fit(food, cfg, None, policy=policy)
    after = result.model.state_dict()
    bb = result.model.backbone
    on = parse_train_blocks(policy, len(bb.blocks))
    for block, trains in zip(bb.blocks, on):
        keys = [k for k in after for n in block.module_names if k.startswith(f"backbone.model.{n}.")]
        assert keys
        changed = [k for k in keys if not torch.equal(before[k], after[k])]
        # BatchNorm running statistics included: frozen blocks ran in eval mode although fit calls train()
        assert bool(changed) == trains, (block.name, changed[:3])
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_schedules():
    cfg = TrainConfig(epochs=4, warmup_epochs=1, schedule="cosine")
    f = lr_lambda(cfg, steps_per_epoch=10)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0) and f(25) == pytest.approx(0.5) and f(40) == pytest.approx(0.0)
    step = lr_lambda(TrainConfig(epochs=6, schedule="step", step_epochs=2, step_gamma=0.5), 10)
    assert [step(s) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_lambda(TrainConfig(schedule="constant"), 3)(100) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_lambda(TrainConfig(schedule="linear"), 3)


class ToyLoader:
    """Stage-2 style batches of cached features: dicts with "features", "label", "index"."""

    def __init__(self, x, y, batch_size, shuffle=True, seed=0):
        self.x, self.y, self.bs, self.shuffle, self.seed, self.epoch = x, y, batch_size, shuffle, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return math.ceil(len(self.x) / self.bs)

    def __iter__(self):
        n = len(self.x)
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        )
        for s in range(0, n, self.bs):
            i = torch.as_tensor(order[s : s + self.bs])
            yield {"features": self.x[i], "label": self.y[i], "index": i}


class Head(nn.Module):
    def __init__(self, d, c):
        super().__init__()
        self.linear = nn.Linear(d, c)

    def forward(self, batch):
        return self.linear(batch["features"])


def _toy(n=48, d=5, c=3, multilabel=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, c, generator=g)
    y = (x @ w > 0).float() if multilabel else (x @ w).argmax(1)
    return x, y


def test_grad_accumulation_matches_the_big_batch():
    x, y = _toy()
    results = []
    for bs, accum in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = Head(5, 3)
        cfg = TrainConfig(
            epochs=2, lr=0.3, momentum=0.0, grad_accum=accum, schedule="constant", channels_last=False
        )
        # the same samples in the same order: 8 per step either way
        r = fit(model, ToyLoader(x, y, bs, shuffle=False), None, cfg, forward=batch_forward)
        results.append(r.model.linear.weight.detach().clone())
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_stage2_style_fit_multilabel_learns_and_is_deterministic(tmp_path):
    x, y = _toy(n=180, multilabel=True)
    x, y, xv, yv = x[:120], y[:120], x[120:], y[120:]
    runs = []
    for k in range(2):
        torch.manual_seed(0)
        r = fit(
            Head(5, 3),
            ToyLoader(x, y, 16),
            ToyLoader(xv, yv, 32, shuffle=False),
            TrainConfig(epochs=6, lr=0.1, optimizer="adamw", schedule="cosine", warmup_epochs=1),
            task="multilabel",
            classes=["head", "arm", "legs"],
            forward=batch_forward,
            out_dir=tmp_path / str(k),
        )
        runs.append(r)
    assert runs[0].history[-1]["train_loss"] < runs[0].history[0]["train_loss"]
    assert runs[0].best_score > 0.8 and "val_mAP" in runs[0].history[0]  # mAP on a linearly separable toy
    assert _states_equal(runs[0].model.state_dict(), runs[1].model.state_dict())
    assert [h["val_score"] for h in runs[0].history] == [h["val_score"] for h in runs[1].history]


def test_fit_refuses_nothing_to_train_and_bad_settings():
    model = Head(5, 3)
    model.requires_grad_(False)
    x, y = _toy()
    with pytest.raises(ValueError, match="train_blocks"):
        fit(model, ToyLoader(x, y, 8), None, TrainConfig(epochs=1), forward=batch_forward)
    with pytest.raises(ValueError, match="optimizer"):
        fit(
            Head(5, 3),
            ToyLoader(x, y, 8),
            None,
            TrainConfig(epochs=1, optimizer="lion"),
            forward=batch_forward,
        )


def test_train_stage1_same_seed_same_result_and_reload(food, tmp_path):
    model = ModelConfig("timm:test_resnet", train_blocks="all")
    cfg = TrainConfig(epochs=2, lr=0.05, seed=3)
    a = train_stage1(food, model, cfg, AUG, out_dir=tmp_path / "a")
    b = train_stage1(food, model, cfg, AUG, out_dir=tmp_path / "b")
    assert _states_equal(a.model.state_dict(), b.model.state_dict())
    assert a.metrics["test"]["accuracy"] == b.metrics["test"]["accuracy"]
    assert a.metrics["test"]["n"] == len(food.records("test"))
    assert np.array(a.metrics["test"]["confusion_matrix"]).sum() == len(food.records("test"))
    assert (tmp_path / "a" / "config.json").exists()
    # the same weights give the same bytes: a rerun's checkpoint names the same caches
    assert (tmp_path / "a" / "best.pt").read_bytes() == (tmp_path / "b" / "best.pt").read_bytes()
    meta = torch.load(a.checkpoint, weights_only=True)["meta"]
    assert {k: meta[k] for k in ("backbone", "hub_tag", "weights_file", "image_size", "preset")} == {
        "backbone": "timm:test_resnet",
        "hub_tag": None,
        "weights_file": None,
        "image_size": 32,
        "preset": "seed",
    }
    assert meta["train_blocks"] == "all" and meta["classes"] == list(food.classes)
    assert meta["mmkit_version"] and len(meta["norm"]) == 2
    rng = torch.get_rng_state()
    clf = load_stage1(a.checkpoint)
    assert torch.equal(rng, torch.get_rng_state())  # loading leaves the global RNG alone
    assert clf.classes == list(food.classes) and clf.backbone.name == "timm:test_resnet"
    assert _states_equal(clf.state_dict(), {k: v.cpu() for k, v in a.model.state_dict().items()})
    # the stage-2 side reads the same file: the feature bank's loader takes the backbone weights from it
    from mmkit.features import load_backbone

    module, _, weights = load_backbone("timm:test_resnet", checkpoint=a.checkpoint)
    assert weights.startswith("checkpoint:")
    assert _states_equal(module.state_dict(), clf.backbone.state_dict())


def test_epoch_e_trains_on_the_loaders_epoch_e_draws(food):
    cfg = TrainConfig(epochs=2, lr=0.01, seed=5)
    net = build_stage1(food, ModelConfig("timm:test_resnet", train_blocks="none"), AUG, cfg.seed)
    loaders = stage1_loaders(food, AUG, cfg.seed)
    base = image_forward(net.backbone.norm)
    seen: list[list[int]] = []

    def recording(model, batch, device):
        if model.training:
            seen.append(batch["index"].tolist())
        return base(model, batch, device)

    fit(net, loaders["train"], None, cfg, forward=recording, classes=food.classes)
    expected = []
    fresh = stage1_loaders(food, AUG, cfg.seed)["train"]
    for epoch in range(2):
        fresh.set_epoch(epoch)
        expected += [b["index"].tolist() for b in fresh]
    assert seen == expected
    assert sorted(set(sum(seen[: len(fresh)], []))) == list(range(len(food.records("train"))))


def test_stage1_multilabel_fpus23_organs(tmp_path):
    from mmkit.data import read_fpus23
    from mmkit.data.synthetic import make_synthetic_fpus23

    root = make_synthetic_fpus23(tmp_path / "fpus", n_streams=8, frames_per_stream=6, width=48, height=32)
    ds = read_fpus23(root, task="organs", seed=0)
    assert ds.task == "multilabel"
    aug = AugmentConfig(image_size=32, batch_size=8, copies=2, preset="ultrasound")
    r = train_stage1(
        ds,
        ModelConfig("timm:test_efficientnet", train_blocks="first:2"),
        TrainConfig(epochs=2, lr=0.05, optimizer="adamw", seed=0),
        aug,
        out_dir=tmp_path / "run",
    )
    assert {"val_mAP", "val_macro_f1", "train_loss"} <= set(r.history[0])  # BCE on multi-hot targets
    for split in ("val", "test"):
        m = r.metrics[split]
        assert m["n"] == len(ds.records(split)) and set(m["per_label_f1"]) == set(ds.classes)
        assert 0.0 <= m["mAP"] <= 1.0
    assert r.best_epoch == int(np.argmax([h["val_score"] for h in r.history]))


def test_command_line_entry(tmp_path):
    from mmkit.report import read_metrics
    from mmkit.train import main

    out = tmp_path / "cli"
    args = ["--dataset", "synthetic_food101", "--data_root", str(tmp_path / "food"), "--backbone"]
    args += ["timm:test_resnet", "--image_size", "32", "--batch_size", "32", "--epochs", "1"]
    args += ["--lr", "0.05", "--out_dir", str(out)]
    assert main(args) == 0
    m = read_metrics(out)
    assert m["checkpoint"] == str(out / "best.pt") and (out / "last.pt").exists()
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["best_epoch"] == 0
    assert main(args + ["--resume", "True"]) == 0  # nothing left to train: reloads and scores the same
    assert read_metrics(out)["test_accuracy"] == m["test_accuracy"]


def test_collective_device_is_the_gpu_for_nccl_and_the_training_device_otherwise():
    assert collective_device("cuda:1", backend="nccl") == torch.device("cuda", 1)  # NCCL: CUDA tensors only
    assert collective_device("cpu", backend="gloo") == torch.device("cpu")
    assert collective_device("cuda:0", backend="gloo") == torch.device(
        "cuda", 0
    )  # gloo takes them as they are
    assert collective_device("cpu") == torch.device("cpu")  # no process group: the training device


def test_running_loss_is_read_once_per_interval_not_per_step(monkeypatch):
    # lr=0: the weights never move, so the epoch's train_loss must be the per-sample mean loss of the start
    # model over every sample, the short last batch (50 = 6 x 8 + 2) weighted by its 2 samples
    x, y = _toy(n=50)
    torch.manual_seed(0)
    model = Head(5, 3)
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(model({"features": x}), y))
    reads = []
    for name in ("item", "tolist", "__float__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda t, *a, _real=real, _name=name: reads.append(_name) or _real(t, *a)
        )
    cfg = TrainConfig(epochs=1, lr=0.0, schedule="constant", channels_last=False)
    r = fit(model, ToyLoader(x, y, 8), None, cfg, forward=batch_forward)
    monkeypatch.undo()
    steps = len(ToyLoader(x, y, 8))
    assert math.isclose(r.history[0]["train_loss"], expected, rel_tol=1e-6)
    # the progress bar every LOG_EVERY steps, the epoch's total once: far fewer reads than steps
    assert len(reads) <= math.ceil(steps / LOG_EVERY) + 3 < steps, reads


def _tagged_stage1(food, tmp_path, monkeypatch, tag):
    """Stage 1 on a timm model built under a hub tag, random-init (no network): timm still attaches the
    tag's pretrained_cfg, so the backbone takes that tag's mean/std, as a download would."""
    import timm

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: real(*a, **{**k, "pretrained": False}))
    aug = AugmentConfig(image_size=32, batch_size=8, copies=1, preset="light")
    model = ModelConfig("timm:resnet18d", pretrained=tag, train_blocks="last:1")
    r = train_stage1(food, model, TrainConfig(epochs=1, lr=0.01), aug, out_dir=tmp_path)
    monkeypatch.setattr(timm, "create_model", real)  # stage 2 must not need the hub at all
    return r


def test_stage2_takes_the_checkpoints_tag_norm_not_the_default_tags(food, tmp_path, monkeypatch):
    from timm.models import get_pretrained_cfg

    from mmkit.features import backbone_module, build_feature_bank
    from mmkit.models import create_backbone

    tag, default = "ra4_e3600_r224_in1k", "ra2_in1k"  # timm's first tag is the default
    tag_mean = tuple(get_pretrained_cfg(f"resnet18d.{tag}").mean)
    assert tag_mean != tuple(get_pretrained_cfg(f"resnet18d.{default}").mean)
    assert create_backbone("timm:resnet18d").norm[0] != tag_mean  # the rebuild of old
    r = _tagged_stage1(food, tmp_path, monkeypatch, tag)
    assert r.model.backbone.norm[0] == tag_mean
    meta = torch.load(r.checkpoint, weights_only=True)["meta"]
    assert meta["hub_tag"] == tag and tuple(meta["norm"][0]) == tag_mean
    clf = load_stage1(r.checkpoint)
    assert clf.backbone.norm == r.model.backbone.norm and clf.backbone.pretrained == tag
    # the live path and the bank both rebuild it with the tag's norm, and the bank's key records it
    live = backbone_module("timm:resnet18d", checkpoint=r.checkpoint)
    assert live.norm[0] == tag_mean
    bank = build_feature_bank(
        food, "timm:resnet18d", checkpoint=r.checkpoint, views=1, image_size=32,
        preset="light", batch_size=16, cache_dir=tmp_path / "bank", device="cpu",
    )  # fmt: skip
    assert tuple(bank.key["norm"][0]) == tag_mean
    from mmkit.augment import make_loader, normalize

    batch = next(
        iter(make_loader(food, "test", 64, preset="light", image_size=32, augment=False, shuffle=False))
    )
    with torch.no_grad():
        want = clf.backbone(normalize(batch["image"], clf.backbone.norm)).numpy()
    assert np.allclose(np.asarray(bank.plain["test"], np.float32), want, atol=2e-2)


def test_restore_stage1_settings_fills_open_fields_and_refuses_conflicts(food, tmp_path):
    import dataclasses
    import warnings

    from mmkit.train import restore_stage1_settings

    cfg = TrainConfig(epochs=1, lr=0.05)
    aug = dataclasses.replace(AUG, preset="light")
    r = train_stage1(food, ModelConfig("timm:test_resnet"), cfg, aug, out_dir=tmp_path / "s1")
    open_model, open_aug = ModelConfig(backbone=None), AugmentConfig(image_size=None, preset=None)
    m, a = restore_stage1_settings(r.checkpoint, open_model, open_aug, food)
    assert (m.backbone, a.image_size, a.preset) == ("timm:test_resnet", 32, "light")
    same = restore_stage1_settings(r.checkpoint, ModelConfig("timm:test_resnet"), aug, food)
    assert same[1].image_size == 32
    for field, model, augment in (
        ("image_size=64", open_model, dataclasses.replace(open_aug, image_size=64)),
        ("preset='seed'", open_model, dataclasses.replace(open_aug, preset="seed")),
        ("backbone='timm:test_vit'", ModelConfig("timm:test_vit"), open_aug),
    ):
        with pytest.raises(ValueError, match=rf"{re.escape(field)} was given.*trained with") as err:
            restore_stage1_settings(r.checkpoint, model, augment, food)
        assert "=None" in str(err.value)  # says how to take the checkpoint's
    # another dataset's checkpoint: another class count is an error, other names a warning
    fewer = dataclasses.replace(food, classes=food.classes[:2])
    with pytest.raises(ValueError, match="trained on 3 classes .* has 2"):
        restore_stage1_settings(r.checkpoint, open_model, open_aug, fewer)
    renamed = dataclasses.replace(food, classes=[c.upper() for c in food.classes])
    with pytest.warns(UserWarning, match="named differently"):
        restore_stage1_settings(r.checkpoint, open_model, open_aug, renamed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restore_stage1_settings(r.checkpoint, open_model, open_aug, food)
    # the same data carved with another seed: some of its val rows were stage 1's training rows
    reshuffled = read_upmc_food101(food.meta["root"], val_fraction=0.25, seed=1)
    with pytest.raises(
        ValueError, match=r"fine-tuned on \d+ val rows of this dataset .* run notebook 03 again"
    ):
        restore_stage1_settings(r.checkpoint, open_model, open_aug, reshuffled)
    # no checkpoint: open fields take the fallback, else the dataclass default
    m, a = restore_stage1_settings(None, open_model, open_aug, fallback={"image_size": 48})
    assert (m.backbone, a.image_size, a.preset) == (ModelConfig().backbone, 48, AugmentConfig().preset)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        restore_stage1_settings(tmp_path / "none.pt", open_model, open_aug)


def test_select_on_follows_the_headline_metric_and_is_a_parameter(food, tmp_path):
    import dataclasses

    from mmkit.metrics import headline_metric
    from mmkit.train import resolve_select_on

    head = dataclasses.replace(
        food, meta={"task": "head", "headline_metric": "macro_f1"}
    )  # read_fpus23 sets it
    assert headline_metric(head.task, head) == "macro_f1"  # data_cards/fpus23.md: 71% one class
    assert resolve_select_on(TrainConfig(), head).select_on == "macro_f1"
    assert resolve_select_on(TrainConfig(), food).select_on == "accuracy"
    assert (
        resolve_select_on(TrainConfig(select_on="balanced_accuracy"), head).select_on == "balanced_accuracy"
    )
    cfg = TrainConfig(epochs=3, lr=0.1, seed=1, schedule="constant", select_on="macro_f1")
    result = _stage1_fit(food, cfg, tmp_path)
    f1 = [h["val_macro_f1"] for h in result.history]
    assert result.best_epoch == int(np.argmax(f1)) and [h["val_score"] for h in result.history] == f1
    with pytest.raises(KeyError, match="select_on='auc'.*notebook parameter select_on"):
        _stage1_fit(food, dataclasses.replace(cfg, select_on="auc", epochs=1), tmp_path / "x")
