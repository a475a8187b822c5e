"""Backbone factory, blocks, layer policy and checkpoint loading, on tiny models and files the tests write."""

import pytest
import torch
from torch import nn

from mmkit.models import (
    TINY_BACKBONES,
    ImageClassifier,
    apply_layer_policy,
    create_backbone,
    parse_train_blocks,
    trainable_share,
)

torch.set_num_threads(1)


def _make(name, seed=0, **kw):
    torch.manual_seed(seed)
    return create_backbone(name, **kw)


@pytest.mark.parametrize("name", TINY_BACKBONES)
def test_tiny_backbones_features_norm_and_blocks(name):
    bb = _make(name, image_size=32).eval()
    n_params = sum(p.numel() for p in bb.parameters())
    assert 5e4 < n_params < 1e6, n_params  # tiny: fast enough for tests and the CPU demo
    out = bb(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, bb.num_features)
    mean, std = bb.norm
    assert len(mean) == len(std) == 3 and all(s > 0 for s in std)
    # every parameter lies in exactly one block, blocks are in input -> output order
    ids = [id(p) for b in bb.blocks for p in b.parameters()]
    assert len(ids) == len(set(ids)) == len(list(bb.parameters()))
    assert len(bb.blocks) >= 4
    order = {id(p): i for i, p in enumerate(bb.parameters())}  # registration order (loose ones first)
    firsts = [
        min(order[id(p)] for n in b.module_names for p in bb.model.get_submodule(n).parameters())
        for b in bb.blocks[1:]
    ]
    assert firsts == sorted(firsts)
    # blocks hold references: the backbone's state dict has no duplicated block entries
    assert all(k.startswith("model.") for k in bb.state_dict())


def test_same_seed_same_init_and_known_block_names():
    a, b = _make("timm:test_resnet", 3), _make("timm:test_resnet", 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert [blk.name for blk in a.blocks] == ["conv1+bn1", "layer1", "layer2", "layer3", "layer4"]
    vit = _make("timm:test_vit", image_size=32)
    assert vit.blocks[0].name.startswith("patch_embed") and "cls_token" in vit.blocks[0].name
    assert vit.blocks[-1].name.endswith("+norm")  # the final norm trains with the last block


def test_a_real_torchvision_name_works(tmp_path):
    import torchvision

    bb = _make("torchvision:resnet18")
    assert bb.num_features == 512 and bb.norm[0][0] == pytest.approx(0.485)
    assert [b.name for b in bb.blocks] == ["conv1+bn1", "layer1", "layer2", "layer3", "layer4"]
    x = torch.randn(1, 3, 32, 32)
    assert bb.eval()(x).shape == (1, 512)
    # torchvision's own file, classifier included: the classifier is not part of the backbone
    torch.manual_seed(5)
    full = torchvision.models.resnet18().eval()
    torch.save(full.state_dict(), tmp_path / "resnet18.pth")
    loaded = create_backbone("torchvision:resnet18", pretrained=str(tmp_path / "resnet18.pth")).eval()
    full.fc = nn.Identity()
    assert torch.allclose(loaded(x), full(x))


def test_timm_vits_take_any_image_size():
    vit = _make("timm:test_vit").eval()  # no image_size given: the position embedding is interpolated
    assert vit(torch.randn(1, 3, 32, 32)).shape == vit(torch.randn(1, 3, 48, 48)).shape == (1, 64)


def test_parse_train_blocks():
    assert parse_train_blocks("all", 4) == [True] * 4
    assert parse_train_blocks("none", 4) == [False] * 4
    # block 0 is the stem: first:K trains it with the K blocks after it (first:1 is never the stem alone)
    assert parse_train_blocks("first:1", 4) == [True, True, False, False]
    assert parse_train_blocks("first:3", 4) == [True] * 4
    assert parse_train_blocks("last:2", 4) == [False, False, True, True]
    assert parse_train_blocks("first:0", 2) == [False, False]
    with pytest.raises(ValueError, match="3 blocks after its stem"):
        parse_train_blocks("first:4", 4)
    with pytest.raises(ValueError, match="has 4 blocks: \\['a'"):
        parse_train_blocks("last:5", 4, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="first:K"):
        parse_train_blocks("middle:2", 4)


def test_first_k_trains_more_than_the_stem_and_reports_its_share():
    # resnet50's stem is 0.04% of its parameters: first:1 must reach layer1 too (stem + layer1: ~1%)
    with torch.device("meta"):
        bb = create_backbone("timm:resnet50")
    apply_layer_policy(bb, "first:1")
    assert [b.name for b, on in zip(bb.blocks, bb.frozen) if not on] == ["conv1+bn1", "layer1"]
    assert 0.005 < trainable_share(bb) < 0.02
    assert trainable_share(apply_layer_policy(bb, "all")) == 1.0
    assert trainable_share(apply_layer_policy(bb, "none")) == 0.0


@pytest.mark.parametrize("policy", ["none", "first:2", "last:1"])
def test_frozen_blocks_stay_eval_and_their_statistics_do_not_move(policy):
    bb = _make("timm:test_resnet")
    clf = ImageClassifier(bb, 3)
    apply_layer_policy(clf, policy)
    clf.train()  # what a trainer does every epoch: frozen blocks must come back in eval mode
    trainable = parse_train_blocks(policy, len(bb.blocks))
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    opt = torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=0.1)
    loss = clf(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    assert clf.head.weight.requires_grad and clf.head.training
    for block, on in zip(bb.blocks, trainable):
        names = {n for n, m in block.named_modules() if isinstance(m, nn.BatchNorm2d)}
        assert names
        for m in block.modules():
            assert m.training == on
        for p in block.parameters():
            assert p.requires_grad == on and (p.grad is not None) == on
    frozen_mods = [n for b, on in zip(bb.blocks, trainable) if not on for n in b.module_names]
    frozen_keys = [k for k in before if any(k.startswith(f"model.{n}.") for n in frozen_mods)]
    assert frozen_keys
    after = bb.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in frozen_keys)  # weights and BN statistics
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert bool(moved) == any(trainable)
    clf.eval()
    assert not any(m.training for m in clf.modules())
    apply_layer_policy(clf, "all")
    clf.train()
    assert all(m.training for m in clf.modules()) and all(p.requires_grad for p in clf.parameters())


def test_local_checkpoint_round_trip_in_three_layouts(tmp_path):
    src = _make("timm:test_resnet", seed=1)
    ref = src.eval()(torch.ones(1, 3, 32, 32))
    plain = tmp_path / "plain.pth"
    torch.save(src.model.state_dict(), plain)
    # a training script's checkpoint: the classifier's keys under "model", with a head to be ignored
    wrapped = tmp_path / "stage1.pt"
    torch.save({"model": ImageClassifier(src, 5).state_dict(), "epoch": 3}, wrapped)
    # DDP-style "module." prefix plus the timm classifier, which the backbone (num_classes=0) lacks
    ddp = tmp_path / "ddp.pt"
    sd = {f"module.{k}": v for k, v in src.model.state_dict().items()}
    sd["module.fc.weight"], sd["module.fc.bias"] = torch.zeros(10, 96), torch.zeros(10)
    torch.save({"state_dict": sd}, ddp)
    for path in (plain, wrapped, ddp):
        bb = _make("timm:test_resnet", seed=2, pretrained=str(path)).eval()
        assert torch.allclose(bb(torch.ones(1, 3, 32, 32)), ref), path


def test_open_clip_checkpoint_with_both_towers(tmp_path):
    import open_clip

    create_backbone("open_clip:mmkit-tiny-vit")  # registers the tiny config
    torch.manual_seed(1)
    clip = open_clip.create_model("mmkit-tiny-vit")
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)  # keys "visual.*" and the text tower's
    bb = _make("open_clip:mmkit-tiny-vit", seed=2, pretrained=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(bb(x), clip.visual.eval()(x))


def test_checkpoint_that_does_not_fit(tmp_path):
    other = tmp_path / "vit.pt"
    torch.save(_make("timm:test_vit").model.state_dict(), other)
    with pytest.raises(ValueError, match=r"does not fit backbone 'timm:test_resnet'.*missing"):
        create_backbone("timm:test_resnet", pretrained=str(other))
    sd = _make("timm:test_resnet").model.state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    bad = tmp_path / "bad.pt"
    torch.save(sd, bad)
    with pytest.raises(ValueError, match=r"wrong shape.*layer1\.0\.conv1\.weight"):
        create_backbone("timm:test_resnet", pretrained=str(bad))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        create_backbone("timm:test_resnet", pretrained=str(junk))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        create_backbone("timm:test_resnet", pretrained=str(tmp_path / "missing.pt"))


def test_wrong_names_and_tags_say_what_exists():
    with pytest.raises(ValueError, match="test_resnet"):
        create_backbone("timm:test_resnett")
    with pytest.raises(ValueError, match="mmkit-tiny-vit"):
        create_backbone("open_clip:mmkit-tiny-vitt")
    with pytest.raises(ValueError, match="resnet18"):
        create_backbone("torchvision:resnet81")
    with pytest.raises(ValueError, match="library one of"):
        create_backbone("keras:resnet50")
    with pytest.raises(ValueError, match="'openai'"):
        create_backbone("open_clip:RN50", pretrained="nope")
    with pytest.raises(ValueError, match="a1_in1k"):
        create_backbone("timm:resnet18", pretrained="nope")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        create_backbone("torchvision:resnet18", pretrained="nope")


def test_hub_tag_path_fails_offline_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the real hub path, without a network
    with pytest.raises(RuntimeError, match="pass the local file"):
        create_backbone("timm:test_resnet", pretrained="r160_in1k")


@pytest.mark.parametrize("hidden", [True, False], ids=["head_hidden_size", "measured"])
def test_pre_logits_head_reports_the_width_it_returns(hidden, monkeypatch):
    # mobilenetv3 pools 288 channels, then a 1x1 conv head makes 1024: the classifier must take 1024
    if not hidden:  # a timm release without head_hidden_size: the width comes from a forward pass
        import timm

        real = timm.create_model

        def without_attribute(*args, **kwargs):
            model = real(*args, **kwargs)
            model.__dict__.pop("head_hidden_size", None)
            assert not hasattr(model, "head_hidden_size")
            return model

        monkeypatch.setattr(timm, "create_model", without_attribute)
    bb = _make("timm:mobilenetv3_small_050", image_size=32)
    assert bb.model.training  # measuring the width left the model in train mode, its statistics untouched
    clf = ImageClassifier(bb, 3).eval()
    with torch.no_grad():
        feats, logits = bb(torch.zeros(2, 3, 32, 32)), clf(torch.zeros(2, 3, 32, 32))
    assert bb.num_features == feats.shape[1] == 1024 and logits.shape == (2, 3)


class _Payload:  # a pickled object: loading it would run code of the file's choosing
    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


def test_checkpoints_open_through_one_safe_loader(tmp_path, capsys):
    from mmkit.features import load_backbone_weights

    src = _make("timm:test_resnet", seed=1)
    good = tmp_path / "best.pt"
    torch.save(
        {"model": {f"backbone.model.{k}": v for k, v in src.model.state_dict().items()}, "epoch": 1}, good
    )
    dst = _make("timm:test_resnet", seed=2)
    load_backbone_weights(dst, good)  # the stage-1 layout: unwrapped and the prefix stripped
    assert all(torch.equal(dst.model.state_dict()[k], v) for k, v in src.model.state_dict().items())
    bad = tmp_path / "pickled.pt"
    torch.save({"model": src.model.state_dict(), "extra": _Payload()}, bad)
    for load in (
        lambda p: load_backbone_weights(dst, p),
        lambda p: create_backbone("timm:test_resnet", str(p)),
    ):
        with pytest.raises(ValueError, match="weights_only=True"):
            load(bad)
    assert "code ran" not in capsys.readouterr().out
