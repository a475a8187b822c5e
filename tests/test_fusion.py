"""Fusion heads, modality dropout and substitution, stage-2 training (selection, resume), and the claim
that fusion helps: every head beats each single modality on the synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmkit.config import AugmentConfig, FusionConfig, ModelConfig, TextConfig, TrainConfig
from mmkit.data import make_synthetic_food101, read_upmc_food101
from mmkit.experiment import run_fusion_experiment
from mmkit.features import build_feature_bank
from mmkit.heads import HEADS, FusionModel, feature_stats, make_head, modality_dropout_masks
from mmkit.stage2 import train_stage2
from mmkit.text import compute_text_features


class RandomConvNet(nn.Module):
    """A tiny random-init backbone (Backbone-shaped: num_features, norm)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(3, 32, 5, 2, 2), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            )  # fmt: skip
        self.num_features, self.norm = 256, "imagenet"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("name", HEADS)
def test_heads_and_missing_modality_substitution(name):
    g = torch.Generator().manual_seed(0)
    img_mean, img_std = torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.5
    txt_mean, txt_std = torch.randn(3, generator=g), torch.rand(3, generator=g) + 0.5
    image, text = torch.randn(5, 6, generator=g), torch.randn(5, 3, generator=g)
    absent = torch.tensor([False, True, True, False, True])
    for fill in ("mean", "zero"):
        model = FusionModel(
            make_head(name, 6, 3, 4, hidden=8), (img_mean, img_std), (txt_mean, txt_std), fill
        ).eval()
        assert model(image, text).shape == (5, 4)
        substitute = img_mean.expand(5, 6) if fill == "mean" else torch.zeros(5, 6)
        expected = model(torch.where(absent[:, None], substitute, image), text)
        assert torch.allclose(model(image, text, image_present=~absent), expected, atol=1e-6)
        got = model(image, text, text_present=~absent)
        t_sub = txt_mean.expand(5, 3) if fill == "mean" else torch.zeros(5, 3)
        assert torch.allclose(got, model(image, torch.where(absent[:, None], t_sub, text)), atol=1e-6)
        assert torch.allclose(got[~absent], model(image, text)[~absent], atol=1e-6)  # present rows untouched
    with pytest.raises(ValueError, match="unknown fusion head"):
        make_head("bilinear", 6, 3, 4)


def test_modality_dropout_masks():
    image, text = modality_dropout_masks(20_000, 0.3, torch.Generator().manual_seed(0))
    assert not (~image & ~text).any()  # never both
    assert abs((~image | ~text).float().mean().item() - 0.3) < 0.02
    assert abs((~image).float().mean().item() - 0.15) < 0.02
    again = modality_dropout_masks(20_000, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(image, again[0]) and torch.equal(text, again[1])


@pytest.fixture(scope="module")
def food(tmp_path_factory):
    """Four classes, 200 training images each; titles name their class only 20% of the time, so
    neither modality alone is enough (each ~70%) and their errors are independent."""
    root = make_synthetic_food101(
        tmp_path_factory.mktemp("food"), n_classes=4, train_per_class=200, test_per_class=100, image_size=32,
        name_p=0.2,
    )  # fmt: skip
    return read_upmc_food101(root, val_fraction=0.2)


STAGE2 = dict(
    augment=AugmentConfig(image_size=32, batch_size=32, copies=2),
    model=ModelConfig(backbone="unused", train_blocks="none"),
    train=TrainConfig(epochs=20, lr=1e-2, optimizer="adamw", weight_decay=0.3, seed=0),
    text=TextConfig(text_encoder="tfidf", text_folds=5),
)


def test_every_head_beats_each_single_modality(food, tmp_path):
    fusion = FusionConfig(bank_views=4, bank_dir=str(tmp_path / "bank"), compare_heads=True)
    exp = run_fusion_experiment(food, backbone=RandomConvNet(), fusion=fusion, out_dir=tmp_path, **STAGE2)
    assert set(exp.results) == set(HEADS) and set(exp.baselines) == {"image-only", "text-only"}
    for split in ("val", "test"):
        image = exp.baselines["image-only"][split]["accuracy"]
        text = exp.baselines["text-only"][split]["accuracy"]
        assert 0.5 < image < 0.85 and 0.5 < text < 0.85, (split, image, text)  # each informative, imperfect
        for head, result in exp.results.items():
            fused = result.metrics[split]["accuracy"]
            assert fused > max(image, text), (split, head, fused, image, text)
    # the missing-modality report: the fused head without text falls back to about image-only, and so on
    report = exp.missing["test"]
    assert set(report) == {"both", "no_text", "no_image"}
    assert report["both"]["accuracy"] > report["no_text"]["accuracy"]
    assert report["both"]["accuracy"] > report["no_image"]["accuracy"]
    # checkpoints of the selected epoch are on disk for every head
    assert all((tmp_path / "stage2" / h / "best.pt").exists() for h in HEADS)


def test_resume_continues_exactly(food, tmp_path):
    bank = build_feature_bank(
        food, RandomConvNet(), views=3, image_size=32, cache_dir=tmp_path / "bank", device="cpu"
    )
    text, _ = compute_text_features(food, "tfidf", folds=3)
    fusion = FusionConfig(modality_dropout=0.2)
    aug = AugmentConfig(batch_size=64, copies=2)

    def run(epochs: int, out, resume: bool, on_epoch_end=None):
        cfg = TrainConfig(epochs=epochs, lr=1e-2, optimizer="adamw", weight_decay=0.1, seed=3)
        return train_stage2(
            food,
            text,
            bank=bank,
            head="gated",
            fusion=fusion,
            train=cfg,
            augment=aug,
            out_dir=out,
            resume=resume,
            on_epoch_end=on_epoch_end,
        )

    straight = run(4, tmp_path / "a", False)

    # interrupt a second run after epoch 1 (its checkpoint is written before on_epoch_end), then resume
    def stop_after_epoch_1(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt("simulated interruption")

    with pytest.raises(KeyboardInterrupt):
        run(4, tmp_path / "b", False, stop_after_epoch_1)
    resumed = run(4, tmp_path / "b", True)
    assert len(resumed.history) == 4
    losses = [h["train_loss"] for h in straight.history]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(losses, abs=1e-6)
    assert resumed.best_epoch == straight.best_epoch
    for k, v in straight.model.state_dict().items():
        assert torch.allclose(v, resumed.model.state_dict()[k], atol=1e-6), k
    assert resumed.metrics["test"]["accuracy"] == pytest.approx(straight.metrics["test"]["accuracy"])


def test_selection_uses_validation_not_test(food, tmp_path):
    bank = build_feature_bank(
        food, RandomConvNet(), views=2, image_size=32, cache_dir=tmp_path / "bank", device="cpu"
    )
    text, _ = compute_text_features(food, "tfidf", folds=3)
    cfg = TrainConfig(epochs=5, lr=3e-2, optimizer="adamw", weight_decay=0.0, seed=0)
    result = train_stage2(
        food, text, bank=bank, head="concat-mlp", train=cfg, augment=AugmentConfig(batch_size=32)
    )
    scores = [h["val_score"] for h in result.history]
    assert result.best_epoch == int(np.argmax(scores))
    assert result.metrics["val"]["accuracy"] == pytest.approx(max(scores))
    stats = feature_stats(torch.ones(3, 2, 4))
    assert stats[0].shape == (4,) and (stats[1] > 0).all()


def test_multilabel_fpus23_organs_end_to_end(tmp_path):
    from mmkit.data import make_synthetic_fpus23, read_fpus23

    # 24 short streams, not 12 long ones: a grouped test split of two or three streams can hold labels that
    # every test frame carries (their AP is 1 whatever the scores), and chance then sits near the model
    root = make_synthetic_fpus23(tmp_path / "fpus", n_streams=24, frames_per_stream=10, width=84, height=48)
    ds = read_fpus23(root, task="organs")
    assert ds.task == "multilabel"
    stage2 = {**STAGE2, "train": TrainConfig(epochs=10, lr=1e-2, optimizer="adamw", weight_decay=0.3)}
    fusion = FusionConfig(head="gated", bank_views=2, bank_dir=str(tmp_path / "bank"), compare_heads=False)
    exp = run_fusion_experiment(ds, backbone=RandomConvNet(), fusion=fusion, **stage2)
    test = exp.results["gated"].metrics["test"]
    y = ds.targets("test")
    assert set(test["per_label_f1"]) == set(ds.classes)
    # chance: the mAP of random scores on these very targets (about the prevalence), averaged over draws
    from mmkit.metrics import compute_metrics

    rng = np.random.default_rng(0)
    chance = np.mean(
        [compute_metrics(y, rng.random(y.shape), "multilabel", ds.classes)["mAP"] for _ in range(20)]
    )
    assert test["mAP"] > chance + 0.02, (test["mAP"], chance)
    assert exp.text.out_of_fold and exp.text.values["train"].shape == (len(ds.records("train")), 4)
    assert {r["input"] for r in exp.missing_rows()} == {"both", "no_text", "no_image"}


def test_live_path_trains_only_the_chosen_blocks(tmp_path):
    from mmkit.models import create_backbone

    root = make_synthetic_food101(
        tmp_path / "food", n_classes=3, train_per_class=8, test_per_class=3, image_size=32
    )
    ds = read_upmc_food101(root)
    text, _ = compute_text_features(ds, "tfidf", folds=3)
    torch.manual_seed(0)
    backbone = create_backbone("timm:test_resnet")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    cfg = TrainConfig(epochs=2, lr=1e-2, optimizer="sgd", seed=0)
    aug = AugmentConfig(image_size=32, batch_size=8, copies=2)
    result = train_stage2(ds, text, backbone=backbone, train_blocks="last:1", train=cfg, augment=aug)
    assert result.model.backbone is backbone and result.metrics["test"]["n"] == len(ds.records("test"))
    key_of = {v.data_ptr(): k for k, v in backbone.state_dict().items()}
    frozen = {key_of[t.data_ptr()] for b in backbone.blocks[:-1] for t in b.state_dict().values()}
    trainable = {key_of[t.data_ptr()] for b in backbone.blocks[-1:] for t in b.state_dict().values()}
    changed = {k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])}
    assert frozen and changed and changed <= trainable  # nothing frozen moved, BatchNorm statistics included


def _food_and_stage1(tmp_path):
    """A tiny 3-class synthetic Food-101 and one epoch of stage 1 on it: (dataset, augment config, result)."""
    from mmkit.train import train_stage1

    root = make_synthetic_food101(
        tmp_path / "food", n_classes=3, train_per_class=8, test_per_class=3, image_size=32
    )
    ds = read_upmc_food101(root)
    aug = AugmentConfig(image_size=32, batch_size=8)
    s1 = train_stage1(
        ds,
        ModelConfig(backbone="timm:test_resnet"),
        TrainConfig(epochs=1, lr=0.05),
        aug,
        out_dir=tmp_path / "s1",
    )
    return ds, aug, s1


def test_stage2_from_a_stage1_checkpoint(tmp_path):
    ds, aug, s1 = _food_and_stage1(tmp_path)
    fusion = FusionConfig(
        checkpoint=str(s1.checkpoint), bank_views=2, bank_dir=str(tmp_path / "bank"), compare_heads=False
    )
    stage2 = {
        **STAGE2,
        "augment": aug,
        "train": TrainConfig(epochs=2, lr=1e-2),
        "text": TextConfig(text_folds=3),
    }
    # another backbone named explicitly contradicts the checkpoint: an error naming both
    stage2["model"] = ModelConfig(backbone="timm:resnet18")
    with pytest.raises(ValueError, match="backbone='timm:resnet18' was given.*backbone='timm:test_resnet'"):
        run_fusion_experiment(ds, fusion=fusion, **stage2)
    stage2["model"] = ModelConfig(backbone=None)  # None: the checkpoint's
    exp = run_fusion_experiment(ds, fusion=fusion, **stage2)
    assert exp.bank.key["backbone"] == "timm:test_resnet" and exp.bank.key["weights"].startswith(
        "checkpoint:"
    )
    assert exp.results["concat-linear"].metrics["test"]["n"] == len(ds.records("test"))


def test_stage2_honours_the_configured_device(monkeypatch):
    # TrainConfig.device applies to stage 2 as it does to stage 1 (an explicit device= still wins).
    import mmkit.train as train_mod
    from mmkit.config import TrainConfig
    from mmkit.stage2 import train_stage2

    asked = []

    def record(device=None):
        asked.append(device)
        raise RuntimeError("stop")

    monkeypatch.setattr(train_mod, "default_device", record)
    for kw in (
        {"train": TrainConfig(device="cuda:1")},
        {"train": TrainConfig(device="cuda:1"), "device": "cpu"},
    ):
        with pytest.raises(RuntimeError, match="stop"):
            train_stage2(None, None, bank=object(), **kw)
    assert asked == ["cuda:1", "cpu"]


def test_cross_fitted_bank_rows_come_from_backbones_that_never_saw_them(tmp_path):
    # stage1_folds=2: two backbones, each fine-tuned without one fold, encode that fold's training rows and
    # every val/test row; the checkpoint's own backbone encodes none of them (it only gives the CKA); the
    # text's out-of-fold logits hold out the same folds.
    import torch as _torch

    from mmkit.crossfit import fold_dataset
    from mmkit.folds import assign_folds

    ds, aug, s1 = _food_and_stage1(tmp_path)
    fusion = FusionConfig(
        checkpoint=str(s1.checkpoint), bank_views=2, bank_dir=str(tmp_path / "bank"), compare_heads=False,
        stage1_folds=2,
    )  # fmt: skip
    stage2 = {**STAGE2, "augment": aug, "model": ModelConfig(backbone="timm:test_resnet"),
              "train": TrainConfig(epochs=2, lr=1e-2), "text": TextConfig(text_folds=3)}  # fmt: skip
    from mmkit.train import load_stage1

    state = _torch.random.get_rng_state()
    load_stage1(s1.checkpoint)
    assert _torch.equal(state, _torch.random.get_rng_state())  # loading leaves the caller's RNG alone
    with pytest.warns(UserWarning, match="text_folds=3 is overridden by stage1_folds=2"):
        exp = run_fusion_experiment(ds, fusion=fusion, out_dir=tmp_path / "out", **stage2)
    assert exp.settings["text_folds_used"] == 2  # recorded, and notebook 04 writes it to metrics.json
    fold_of = assign_folds(ds.records("train"), 2, seed=0, y=ds.targets("train"))
    ids = ds.ids("train")
    opts = dict(image_size=32, batch_size=32, cache_dir=tmp_path / "bank", device="cpu")
    full = build_feature_bank(ds, "timm:test_resnet", checkpoint=s1.checkpoint, views=1, **opts)
    assert full.reused  # built by the experiment for the CKA only
    for k in range(2):
        fold_ckpt = tmp_path / "out" / "stage1_crossfit" / f"fold{k}" / "best.pt"
        assert fold_ckpt.exists()
        held = np.flatnonzero(fold_of == k)
        alone = build_feature_bank(
            fold_dataset(ds, held, keep_val=True, keep_test=True), "timm:test_resnet", checkpoint=fold_ckpt,
            views=2, **opts,
        )  # fmt: skip
        assert alone.reused  # the experiment built exactly this bank for fold k
        held_ids = [ids[i] for i in held]
        np.testing.assert_array_equal(
            exp.bank.lookup("train", held_ids, plain=False), alone.lookup("train", held_ids, plain=False)
        )
        for split in ("val", "test"):  # every fold backbone scores every val/test row
            np.testing.assert_array_equal(
                exp.bank.lookup(split, ds.ids(split))[:, k], alone.lookup(split, ds.ids(split))
            )
            assert not np.array_equal(alone.lookup(split, ds.ids(split)), full.lookup(split, ds.ids(split)))
    assert not np.array_equal(exp.bank.lookup("train", ids), full.lookup("train", ids))
    # val (epoch selection) and test batches carry both folds' features: the head's prediction is their mean
    main = exp.results["concat-linear"]
    assert all(
        next(iter(main.loaders[s]))["features"].shape[1:] == (2, exp.bank.dim) for s in ("val", "test")
    )
    cka = exp.bank.meta["cka"]
    assert len(cka["fold_vs_full"]) == 2 and all(
        0 < c <= 1 for c in cka["fold_vs_full"] + cka["fold_vs_fold"]
    )
    # the saved model would hold one backbone: it cannot reproduce the K-backbone predictions
    from mmkit.model import save_model

    with pytest.raises(ValueError, match="cross-fitted"):
        save_model(exp, tmp_path / "model")
    # the text side used the same folds
    same, _ = compute_text_features(ds, "tfidf", folds=3, seed=0, fold_of=fold_of)
    np.testing.assert_array_equal(exp.text.lookup("train", ids), same.lookup("train", ids))


def test_stage1_folds_without_a_checkpoint_is_a_clear_error(food):
    fusion = FusionConfig(stage1_folds=3)
    with pytest.raises(ValueError, match="stage1_folds=3 .* checkpoint"):
        run_fusion_experiment(food, backbone=RandomConvNet(), fusion=fusion, **STAGE2)


def _tiny_food(tmp_path):
    root = make_synthetic_food101(
        tmp_path / "food", n_classes=3, train_per_class=6, test_per_class=2, image_size=32
    )
    return read_upmc_food101(root)


def test_cross_fit_stage1_trains_each_fold_backbone_without_its_fold(tmp_path, monkeypatch):
    # Which rows each fold's stage-1 fit trained on, recorded: backbone k must never see fold k's rows
    # (they are the rows it later encodes into the bank), and must see every other training row.
    import mmkit.train
    from mmkit.crossfit import cross_fit_stage1
    from mmkit.folds import assign_folds

    ds = _tiny_food(tmp_path)
    trained_on: list[tuple[set, int]] = []

    class Fit:
        def __init__(self, out_dir):
            self.checkpoint, self.metrics = Path(out_dir) / "best.pt", {"val": {}}

    def fake_stage1(sub, model, train, augment, *, out_dir, resume, device):
        trained_on.append((set(sub.ids("train")), len(sub.records("test"))))
        return Fit(out_dir)

    monkeypatch.setattr(mmkit.train, "train_stage1", fake_stage1)
    fold_of = assign_folds(ds.records("train"), 3, seed=0, y=ds.targets("train"))
    ids = np.array(ds.ids("train"))
    fits = cross_fit_stage1(
        ds, fold_of, ModelConfig(), TrainConfig(), AugmentConfig(), out_dir=tmp_path / "cf"
    )
    assert len(fits) == len(trained_on) == 3
    for k, (seen, n_test) in enumerate(trained_on):
        assert seen == set(ids[fold_of != k]) and not seen & set(ids[fold_of == k])
        assert n_test == 0  # a stage-1 fit never looks at the test split
        assert fits[k].fold == k and fits[k].n_held == int((fold_of == k).sum())


def test_cross_fitted_bank_uses_fold_backbones_only(tmp_path):
    # Fake fold banks whose every value names the backbone that made it (fold k: k + 1, the full one: -1):
    # the cross-fitted bank's training rows of fold k come from backbone k, its val/test rows hold all K
    # fold backbones' features and none of the full backbone's.
    from mmkit.crossfit import cross_fitted_bank
    from mmkit.features import FeatureBank
    from mmkit.folds import assign_folds

    ds = _tiny_food(tmp_path)
    fold_of = assign_folds(ds.records("train"), 2, seed=0, y=ds.targets("train"))
    calls = []

    def bank_of(sub, checkpoint, value, views=3, dim=4):
        # train rows: the value itself; val/test rows: a row-dependent multiple of it (same sign)
        ids = {s: sub.ids(s) for s in ("train", "val", "test")}
        ramp = lambda n: 1 + np.arange(n)[:, None] * np.arange(1, dim + 1)  # noqa: E731
        return FeatureBank(
            path=tmp_path / "banks" / f"{checkpoint}", key={"checkpoint": checkpoint}, ids=ids,
            features={"train": np.full((len(ids["train"]), views, dim), value, np.float16)},
            plain={"train": np.full((len(ids["train"]), dim), value, np.float16),
                   **{s: (value * ramp(len(ids[s]))).astype(np.float16) for s in ("val", "test")}},
        )  # fmt: skip

    def build(sub, checkpoint):
        calls.append((checkpoint, set(sub.ids("train")), len(sub.ids("val")), len(sub.ids("test"))))
        return bank_of(sub, checkpoint, int(str(checkpoint)[-1]) + 1)

    full = bank_of(ds, "full", -1)
    bank = cross_fitted_bank(ds, fold_of, ["ck0", "ck1"], build, full)
    ids = np.array(ds.ids("train"))
    for k, (checkpoint, train_ids, n_val, n_test) in enumerate(calls):
        assert checkpoint == f"ck{k}" and train_ids == set(ids[fold_of == k])  # backbone k encodes fold k
        assert (n_val, n_test) == (len(ds.ids("val")), len(ds.ids("test")))
        held = list(ids[fold_of == k])
        assert np.all(bank.lookup("train", held, plain=False) == k + 1)
        assert np.all(bank.lookup("train", held) == k + 1)
    for split in ("val", "test"):
        x = bank.lookup(split, ds.ids(split))
        assert x.shape == (len(ds.ids(split)), 2, 4)
        for k in range(2):
            assert np.array_equal(x[:, k], bank_of(ds, f"ck{k}", k + 1).plain[split])
        assert not np.any(x < 0)  # no feature of the full backbone
    cka = bank.meta["cka"]
    assert cka["split"] == "val" and len(cka["fold_vs_full"]) == 2 and len(cka["fold_vs_fold"]) == 1
    assert isinstance(bank.features["train"], np.memmap)  # assembled on disk like any bank
    again = cross_fitted_bank(ds, fold_of, ["ck0", "ck1"], build, full)
    assert again.reused and again.path == bank.path


def test_linear_cka_on_hand_examples():
    from mmkit.crossfit import linear_cka

    # one feature each: CKA is the squared correlation; centred x = [-1.5, -.5, .5, 1.5], y = [-1.5, .5,
    # -.5, 1.5]: dot 4, squared norms 5 and 5, correlation 0.8
    x, y = np.array([[1.0], [2], [3], [4]]), np.array([[1.0], [3], [2], [4]])
    assert linear_cka(x, y) == pytest.approx(0.64)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 5))
    q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    assert linear_cka(a, a) == pytest.approx(1.0)
    assert linear_cka(a, 2.5 * a @ q + 7.0) == pytest.approx(1.0)  # orthogonal, isotropic scale, shift
    assert linear_cka(a, a * np.array([1, 1, 1, 1, 10.0])) < 0.9  # not invariant to anisotropic scale
    assert linear_cka(a, rng.normal(size=(40, 5))) < 0.5
    with pytest.raises(ValueError, match="same n"):
        linear_cka(a, a[:10])


def test_stage2_model_averages_fold_logits():
    from mmkit.stage2 import Stage2Model

    torch.manual_seed(0)
    head = make_head("concat-mlp", 6, 3, 4, hidden=8)
    fusion = FusionModel(head, feature_stats(torch.randn(50, 6)), feature_stats(torch.randn(50, 3)))
    model = Stage2Model(fusion).eval()
    image, text = torch.randn(5, 2, 6), torch.randn(5, 3)
    with torch.no_grad():
        both = model({"features": image, "text_features": text})
        each = [model({"features": image[:, k], "text_features": text}) for k in range(2)]
    assert torch.allclose(both, (each[0] + each[1]) / 2)


def test_stage2_turns_each_once_on_for_bank_views_epochs_and_refuses_a_small_bank(food, tmp_path):
    from mmkit.features import resolve_bank_views

    epochs, m = 3, 2
    k = resolve_bank_views("epochs", epochs, m)
    bank = build_feature_bank(food, RandomConvNet(), views=k, image_size=32, cache_dir=tmp_path, device="cpu")
    text, _ = compute_text_features(food, "tfidf", folds=3)
    kw = dict(
        bank=bank, fusion=FusionConfig(bank_views="epochs"), augment=AugmentConfig(batch_size=64, copies=m),
        train=TrainConfig(epochs=epochs, lr=1e-2, optimizer="adamw"), device="cpu",
    )  # fmt: skip
    result = train_stage2(food, text, **kw)
    assert result.loaders["train"].each_once and result.loaders["train"].epochs_covered == epochs
    assert not result.loaders["val"].each_once
    with pytest.raises(ValueError, match='bank_views="epochs": 4 stage-2 epochs x copies=2 need 8'):
        train_stage2(food, text, **{**kw, "train": TrainConfig(epochs=4, lr=1e-2, optimizer="adamw")})
