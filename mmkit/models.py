"""Image backbones by name, their blocks, the layer policy, and the stage-1 classifier.

``create_backbone("<library>:<model>", pretrained)`` with library ``timm``, ``open_clip`` or ``torchvision``
returns a ``Backbone``: an ``nn.Module`` whose forward maps normalised float images [N, 3, H, W] to features
[N, D], with ``num_features`` (D), ``norm`` ((mean, std) the weights expect; hand it to
``mmkit.augment.normalize``) and ``blocks`` (the model cut into groups that train or freeze together, in
input-to-output order: stem, stages or transformer blocks, final norm / pooling head).

``pretrained`` is None (random init; seed torch first), a hub tag (timm: "in1k"-style tags; open_clip:
"openai", "laion2b_s34b_b79k", ...; torchvision: "DEFAULT", "IMAGENET1K_V1", ...) or a local checkpoint
file: a plain state dict, a full open_clip model's (the ``visual.`` tower is taken), or a stage-1
checkpoint of this kit (``mmkit.train``). A checkpoint that does not fit says which keys are missing,
unexpected or of the wrong shape. These machines have no network: hub tags fail with a message that says to
pass a file instead.

Tiny backbones (a few hundred thousand parameters) for tests and the CPU demo: ``TINY_BACKBONES``, e.g.
"timm:test_resnet", "timm:test_vit", "timm:test_efficientnet", and the open_clip configs this module
registers, "open_clip:mmkit-tiny-vit" and "open_clip:mmkit-tiny-rn".

``apply_layer_policy(model, train_blocks)``: "all", "none", "first:K" (the stem and K blocks after it; the paper's text: adapt the input-side
layers to the new domain) or "last:K". Frozen blocks get ``requires_grad=False`` and stay in eval mode, also
after ``model.train()`` (``Backbone.train`` re-applies it), so their BatchNorm statistics never move.

Example:
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> bb = create_backbone("timm:test_resnet")
    >>> bb(torch.randn(2, 3, 64, 64)).shape, bb.num_features, [b.name for b in bb.blocks][:2]
    (torch.Size([2, 96]), 96, ['conv1+bn1', 'layer1'])
    >>> _ = apply_layer_policy(bb, "last:2")
    >>> [any(p.requires_grad for p in b.parameters()) for b in bb.blocks]
    [False, False, False, True, True]
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

LIBRARIES = ("timm", "open_clip", "torchvision")
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP_NORM = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))

# open_clip has no tiny configs of its own: these two are registered on first use (random init only)
_TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}
OPEN_CLIP_TINY: dict[str, dict[str, Any]] = {
    "mmkit-tiny-vit": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": _TINY_TEXT,
    },
    "mmkit-tiny-rn": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
        "text_cfg": _TINY_TEXT,
    },
}
TINY_BACKBONES = (
    "timm:test_resnet",
    "timm:test_vit",
    "timm:test_efficientnet",
    "timm:test_convnext",
    "open_clip:mmkit-tiny-vit",
    "open_clip:mmkit-tiny-rn",
)


# ------------------------------------------------------------------------------------------------ blocks
class Block(nn.Module):
    """A contiguous part of a backbone (modules and loose parameters such as a ViT's class token) that
    trains or freezes as one. It holds references: the backbone's own module tree owns the weights."""

    def __init__(
        self, name: str, modules: list[tuple[str, nn.Module]], params: list[tuple[str, nn.Parameter]]
    ):
        super().__init__()
        self.name = name
        self.module_names = [n for n, _ in modules]
        self.param_names = [n for n, _ in params]
        for n, m in modules:
            self.add_module(n.replace(".", "__") or "root", m)
        for n, p in params:
            self.register_parameter(n.replace(".", "__"), p)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _block_name(names: list[str]) -> str:
    tops = []
    for n in names:
        parts = n.split(".")
        cut = next((i + 1 for i, p in enumerate(parts) if p.isdigit() or p[-1:].isdigit()), 3)
        top = ".".join(parts[: min(cut, 3)])
        if top not in tops:
            tops.append(top)
    return "+".join(tops[:4]) + ("+..." if len(tops) > 4 else "")


def _generic_matcher(model: nn.Module) -> Callable[[str], int]:
    """Top-level children that hold parameters; the biggest is opened up (a ``features`` Sequential, an
    ``encoder``) until there are at least 4 parts or no part holds most of the weights."""

    def size(name: str) -> int:
        return sum(p.numel() for p in model.get_submodule(name).parameters())

    units = [n for n, m in model.named_children() if size(n)]
    while units:
        total = sum(size(u) for u in units)
        big = max(units, key=size)
        kids = [f"{big}.{n}" for n, _ in model.get_submodule(big).named_children() if size(f"{big}.{n}")]
        if len(units) >= 4 or size(big) < total / 2 or len(kids) < 2:
            break
        i = units.index(big)
        units = units[:i] + kids + units[i + 1 :]

    def ordinal(name: str) -> int:
        for i, u in enumerate(units):
            if name.startswith(u + "."):
                return i
        parent = name.rpartition(".")[0]  # a loose parameter joins the first unit beside it
        for i, u in enumerate(units):
            if parent and u.startswith(parent + "."):
                return i
        return 0

    return ordinal


_MATCHERS: dict[str, dict[str, Any]] = {
    # open_clip towers
    "VisionTransformer": {
        "stem": r"^class_embedding|^positional_embedding|^conv1|^ln_pre|^patch_dropout",
        "blocks": [(r"^transformer\.resblocks\.(\d+)", None), (r"^ln_post|^proj$|^attn_pool", (99999,))],
    },
    "ModifiedResNet": {
        "stem": r"^conv[123]\.|^bn[123]\.",
        "blocks": [(r"^layer(\d+)", None), (r"^attnpool", (99999,))],
    },
    # torchvision
    "ResNet": {"stem": r"^conv1\.|^bn1\.", "blocks": r"^layer(\d+)"},
    "torchvision.VisionTransformer": {
        "stem": r"^class_token|^conv_proj|^encoder\.pos_embedding",
        "blocks": [(r"^encoder\.layers\.encoder_layer_(\d+)", None), (r"^encoder\.ln", (99999,))],
    },
}


def _matcher_for(model: nn.Module) -> Union[dict, Callable[[str], int]]:
    if hasattr(model, "group_matcher"):  # timm models know their own stem / blocks
        try:
            return model.group_matcher(coarse=True)
        except (TypeError, NotImplementedError):
            pass
    kind = type(model).__name__
    if type(model).__module__.startswith("torchvision") and f"torchvision.{kind}" in _MATCHERS:
        return _MATCHERS[f"torchvision.{kind}"]
    return _MATCHERS.get(kind) or _generic_matcher(model)


def make_blocks(model: nn.Module, matcher: Union[dict, Callable, None] = None) -> list[Block]:
    """Cut ``model`` into ``Block``s in input-to-output order; every parameter lies in exactly one.

    ``matcher`` is a timm-style group matcher (dict of regexes, or name -> ordinal); by default the model's
    own (timm), a known one (open_clip, torchvision ResNet / ViT) or a generic split of the module tree.
    Parameterless modules (activations, pooling, dropout) join the block before them.
    """
    from timm.models._manipulate import group_with_matcher

    matcher = matcher if matcher is not None else _matcher_for(model)
    names = [n for n, _ in model.named_parameters()]
    group_of = group_with_matcher(((n, None) for n in names), matcher, reverse=True)

    units: list[tuple[str, str, Any, Optional[int]]] = []  # (kind, name, object, group)

    def walk(module: nn.Module, prefix: str) -> None:
        own = [prefix + n for n, _ in module.named_parameters()]
        groups = {group_of[n] for n in own}
        if len(groups) <= 1:
            units.append(("module", prefix.rstrip("."), module, groups.pop() if groups else None))
            return
        for n, p in module.named_parameters(recurse=False):
            units.append(("param", prefix + n, p, group_of[prefix + n]))
        for n, child in module.named_children():
            walk(child, f"{prefix}{n}.")

    walk(model, "")
    filled, last = [], None
    for kind, name, obj, g in units:
        last = g if g is not None else last
        filled.append((kind, name, obj, last))
    first = next((g for *_, g in filled if g is not None), 0)
    blocks = []
    for g in sorted({g if g is not None else first for *_, g in filled}):
        mods = [(n, o) for k, n, o, gg in filled if k == "module" and (gg if gg is not None else first) == g]
        params = [(n, o) for k, n, o, gg in filled if k == "param" and gg == g]
        named = [n for n, o in mods if any(True for _ in o.parameters())] + [n for n, _ in params]
        blocks.append(Block(_block_name(named), mods, params))
    return [b for b in blocks if any(True for _ in b.parameters())]


# ---------------------------------------------------------------------------------------------- backbone
class Backbone(nn.Module):
    """Feature extractor: ``forward(images) -> [N, num_features]``, with ``norm``, ``blocks``, ``name``.

    ``train(mode)`` keeps the blocks frozen by ``apply_layer_policy`` in eval mode.
    """

    def __init__(
        self,
        model: nn.Module,
        num_features: int,
        norm: tuple[tuple[float, ...], tuple[float, ...]],
        name: str = "",
        pretrained: Optional[str] = None,
        image_size: Optional[int] = None,
        matcher: Union[dict, Callable, None] = None,
    ):
        super().__init__()
        self.model = model
        self.num_features, self.name, self.pretrained, self.image_size = (
            int(num_features),
            name,
            pretrained,
            image_size,
        )
        self.norm = (tuple(float(m) for m in norm[0]), tuple(float(s) for s in norm[1]))
        self.blocks: list[Block] = make_blocks(model, matcher)  # a plain list: not registered twice
        self.frozen: list[bool] = [False] * len(self.blocks)
        self.train_blocks = "all"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)
        return out.flatten(1) if out.dim() > 2 else out

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:
            for block, frozen in zip(self.blocks, self.frozen):
                if frozen:
                    block.eval()
        return self

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}, blocks={len(self.blocks)}, train_blocks={self.train_blocks!r}"


def parse_train_blocks(train_blocks: str, n_blocks: int, names: Optional[list[str]] = None) -> list[bool]:
    """Which of ``n_blocks`` train under the policy: ``none`` | ``all`` | ``first:K`` | ``last:K``.

    Block 0 is always the input stem (first conv, or patch embedding + position embedding: a few thousand
    parameters, 0.04% of a ResNet-50), so ``first:K`` counts the stem *with* the first block: it trains the
    stem and the K blocks after it. A ``first:1`` that trained the stem alone would adapt almost nothing.

    Example:
        >>> parse_train_blocks("first:1", 5), parse_train_blocks("last:1", 5)
        ([True, True, False, False, False], [False, False, False, False, True])
    """
    policy = str(train_blocks).strip().lower()
    if policy in ("all", "none"):
        return [policy == "all"] * n_blocks
    m = re.fullmatch(r"(first|last):(\d+)", policy)
    if not m:
        raise ValueError(f"train_blocks must be 'none', 'all', 'first:K' or 'last:K', got {train_blocks!r}")
    k, first = int(m.group(2)), m.group(1) == "first"
    most = n_blocks - 1 if first else n_blocks  # the stem is not a block of its own for first:K
    if k > most:
        listing = f": {names}" if names else ""
        raise ValueError(
            f"train_blocks={train_blocks!r} but the backbone has {most} blocks after its stem{listing}; "
            f"use K <= {most} or 'all'"
            if first
            else f"train_blocks={train_blocks!r} but the backbone has {n_blocks} blocks{listing}"
        )
    if first:
        return [k > 0 and i <= k for i in range(n_blocks)]
    return [i >= n_blocks - k for i in range(n_blocks)]


def trainable_share(model: nn.Module) -> float:
    """The share of the backbone's parameters that train (``requires_grad``) under its layer policy.

    Example:
        >>> bb = create_backbone("timm:test_resnet")
        >>> round(trainable_share(apply_layer_policy(bb, "first:1")), 3)
        0.07
    """
    bb = find_backbone(model)
    total = sum(p.numel() for p in bb.parameters())
    return sum(p.numel() for p in bb.parameters() if p.requires_grad) / max(total, 1)


def find_backbone(model: nn.Module) -> Backbone:
    """``model`` itself or its first ``Backbone`` submodule (e.g. inside an ``ImageClassifier`` or DDP)."""
    if isinstance(model, Backbone):
        return model
    for m in model.modules():
        if isinstance(m, Backbone):
            return m
    raise TypeError(f"{type(model).__name__} holds no mmkit Backbone: build it with create_backbone")


def apply_layer_policy(model: nn.Module, train_blocks: str) -> nn.Module:
    """Make the blocks chosen by ``train_blocks`` trainable and freeze the rest (eval + no gradients).

    ``model`` is a ``Backbone`` or a module holding one; anything outside the backbone (a classifier head)
    is left as it is. Returns ``model``.

    Example:
        >>> bb = create_backbone("timm:test_vit", image_size=32)
        >>> _ = apply_layer_policy(bb, "first:1").train()
        >>> bb.blocks[1].training, bb.blocks[-1].training, bb.blocks[-1].name
        (True, False, 'blocks.5+norm')
    """
    bb = find_backbone(model)
    trainable = parse_train_blocks(train_blocks, len(bb.blocks), [b.name for b in bb.blocks])
    for block, on in zip(bb.blocks, trainable):
        block.requires_grad_(on)
    bb.frozen = [not on for on in trainable]
    bb.train_blocks = str(train_blocks)
    bb.train(bb.training)  # frozen blocks to eval now, whatever mode the backbone is in
    return model


class ImageClassifier(nn.Module):
    """A backbone and a new linear classifier: the stage-1 model. ``features(x)`` is the backbone output."""

    def __init__(self, backbone: Backbone, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


# ------------------------------------------------------------------------------------------------ factory
def _looks_like_path(pretrained: str) -> bool:
    return (
        os.sep in pretrained
        or pretrained.startswith(".")
        or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
        or Path(pretrained).exists()
    )


def _unknown(library: str, name: str, available: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, available, n=8, cutoff=0.5)
    tiny = [t for t in TINY_BACKBONES if t.startswith(library + ":")]
    return ValueError(
        f"{library} has no model {name!r}. Close names: {close or 'none'}. Tiny ones for tests: {tiny}. "
        f"{len(available)} names are available (list them with {_LISTERS[library]})"
    )


_LISTERS = {
    "timm": "timm.list_models()",
    "open_clip": "open_clip.list_models()",
    "torchvision": "torchvision.models.list_models(module=torchvision.models)",
}


def _no_weights(library: str, name: str, tag: str, err: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not load the {library} weights {tag!r} for {name!r} ({type(err).__name__}: {err}). "
        "Without network access, fetch them elsewhere and pass the local file as pretrained=<path>"
    )


def _timm(
    arch: str, tag: Optional[str], image_size: Optional[int]
) -> tuple[nn.Module, int, Any, tuple[str, ...]]:
    import timm

    if not timm.is_model(arch):
        raise _unknown("timm", arch, timm.list_models())
    full = arch
    if tag:
        tags = list(dict.fromkeys(timm.list_pretrained(f"{arch}.*")))
        full = f"{arch}.{tag}" if tag not in ("default", "true", "True") else arch
        if tags and full != arch and full not in tags:
            raise ValueError(
                f"timm has no weights {tag!r} for {arch!r}; tags: {[t.split('.', 1)[-1] for t in tags]}"
            )
    # ViT-like models take an image size, and with dynamic_img_size any other size too (the position
    # embedding is interpolated); convnets take any size already and reject these keywords
    sized = {"img_size": image_size} if image_size else {}
    attempts = [{**sized, "dynamic_img_size": True}, sized, {}]
    for i, kw in enumerate(attempts):
        try:
            model = timm.create_model(full, pretrained=bool(tag), num_classes=0, **kw)
            break
        except TypeError:
            if i == len(attempts) - 1:
                raise
        except Exception as err:  # noqa: BLE001 - the download path: network, hub, file errors
            if not tag:
                raise
            raise _no_weights("timm", arch, tag, err) from err
    cfg = model.pretrained_cfg or {}
    norm = (cfg.get("mean", IMAGENET_NORM[0]), cfg.get("std", IMAGENET_NORM[1]))
    classifier = cfg.get("classifier", "head")  # a checkpoint's classifier: not part of the backbone
    heads = classifier if isinstance(classifier, (list, tuple)) else (classifier,)
    return model, _timm_width(model, image_size), norm, tuple(f"{h}." for h in heads)


def _timm_width(model: nn.Module, image_size: Optional[int]) -> int:
    """The width the classifier-less timm model really returns. ``num_features`` is the last feature map's
    channels; a model with a pre-logits head (MobileNetV3, some ConvNeXts: a conv/MLP after pooling)
    returns ``head_hidden_size`` instead (``mobilenetv3_small_050``: 288 vs 1024). timm releases without
    that attribute are asked by a forward pass of one blank image, in eval mode (no statistics change)."""
    hidden = getattr(model, "head_hidden_size", None)
    if hidden:
        return int(hidden)
    size = image_size or int(
        (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1]
    )
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, size, size))
    finally:
        model.train(was)
    return int(out.flatten(1).shape[1])


def _register_open_clip_tiny() -> None:
    import open_clip

    if all(n in open_clip.list_models() for n in OPEN_CLIP_TINY):
        return
    # add_model_config keeps the folder in its search path, so later rescans (another add) keep ours too
    folder = (
        Path(tempfile.gettempdir()) / f"mmkit_open_clip_configs_{os.getuid() if hasattr(os, 'getuid') else 0}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, cfg in OPEN_CLIP_TINY.items():
        path = folder / f"{name}.json"
        text = json.dumps(cfg, indent=1)
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
    open_clip.add_model_config(folder)


def _open_clip(
    arch: str, tag: Optional[str], image_size: Optional[int]
) -> tuple[nn.Module, int, Any, tuple[str, ...]]:
    import open_clip

    _register_open_clip_tiny()
    if arch not in open_clip.list_models() and not arch.startswith(("hf-hub:", "local-dir:")):
        raise _unknown("open_clip", arch, open_clip.list_models())
    if tag and not arch.startswith(("hf-hub:", "local-dir:")):
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if tag not in tags:
            raise ValueError(
                f"open_clip has no weights {tag!r} for {arch!r}; tags: {tags or 'none (random init only)'}"
            )
    kw = {"force_image_size": image_size} if image_size else {}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: fail fast instead of retrying
    try:
        model = open_clip.create_model(arch, pretrained=tag, **kw)
    except Exception as err:  # noqa: BLE001 - the download path
        if not tag:
            raise
        raise _no_weights("open_clip", arch, tag, err) from err
    visual = model.visual
    pre = getattr(visual, "preprocess_cfg", None) or {}
    mean = pre.get("mean") or getattr(visual, "image_mean", None) or CLIP_NORM[0]
    std = pre.get("std") or getattr(visual, "image_std", None) or CLIP_NORM[1]
    return visual, int(visual.output_dim), (mean, std), ()


def _strip_torchvision_head(model: nn.Module, arch: str) -> tuple[int, str]:
    """Replace the final Linear classifier by Identity; (its input width, its key prefix)."""
    for attr in ("fc", "heads", "classifier", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return head.in_features, f"{attr}."
        if isinstance(head, nn.Sequential):
            linear = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
            if linear:
                width = head[linear[-1]].in_features
                head[linear[-1]] = nn.Identity()
                name = list(head._modules)[linear[-1]]  # "1", or "head" in a ViT's named Sequential
                return width, f"{attr}.{name}."
    raise ValueError(
        f"torchvision:{arch}: no linear classifier found to remove; use a timm: name for this model"
    )


def _torchvision(
    arch: str, tag: Optional[str], image_size: Optional[int]
) -> tuple[nn.Module, int, Any, tuple[str, ...]]:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if arch not in available:
        raise _unknown("torchvision", arch, available)
    weights = None
    if tag:
        enum = torchvision.models.get_model_weights(arch)
        tags = ["DEFAULT"] + [w.name for w in enum]
        if tag not in tags:
            raise ValueError(f"torchvision has no weights {tag!r} for {arch!r}; tags: {tags}")
        weights = enum.DEFAULT if tag == "DEFAULT" else enum[tag]
    kw = {"image_size": image_size} if image_size and arch.startswith("vit_") and weights is None else {}
    try:
        model = torchvision.models.get_model(arch, weights=weights, **kw)
    except Exception as err:  # noqa: BLE001 - the download path
        if not tag:
            raise
        raise _no_weights("torchvision", arch, tag, err) from err
    width, classifier = _strip_torchvision_head(model, arch)
    norm = IMAGENET_NORM
    if weights is not None:
        t = weights.transforms()
        norm = (tuple(t.mean), tuple(t.std))
    return model, width, norm, (classifier,)


def create_backbone(
    name: str, pretrained: Optional[str] = None, image_size: Optional[int] = None
) -> Backbone:
    """The backbone ``"<library>:<model>"`` (library: timm, open_clip, torchvision) without its classifier.

    ``pretrained``: None (random init from the current torch seed), a hub tag, or a local checkpoint path.
    ``image_size``: the input size for models that fix it (ViTs); convnets take any size.

    Example:
        >>> bb = create_backbone("open_clip:mmkit-tiny-vit", image_size=32)
        >>> bb(torch.randn(1, 3, 32, 32)).shape, bb.norm[0][0]
        (torch.Size([1, 64]), 0.48145466)
    """
    library, sep, arch = str(name).partition(":")
    if not sep or library not in LIBRARIES or not arch:
        raise ValueError(
            f"backbone {name!r}: use '<library>:<model>' with library one of {list(LIBRARIES)}, "
            f"e.g. {list(TINY_BACKBONES[:2])} or 'open_clip:ViT-B-32'"
        )
    path = None
    if pretrained is not None and _looks_like_path(str(pretrained)):
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained checkpoint {path} does not exist (for backbone {name!r})")
    tag = None if pretrained is None or path is not None else str(pretrained)
    build = {"timm": _timm, "open_clip": _open_clip, "torchvision": _torchvision}[library]
    model, width, norm, classifier_keys = build(arch, tag, image_size)
    backbone = Backbone(model, width, norm, name=name, pretrained=pretrained, image_size=image_size)
    if path is not None:
        load_weights(backbone, path, ignore_prefixes=classifier_keys)
    return backbone


# ------------------------------------------------------------------------------------------- checkpoints
_PREFIXES = (
    "",
    "module.",
    "model.",
    "backbone.model.",
    "module.backbone.model.",
    "visual.",
    "backbone.",
    "trunk.",
)


def load_checkpoint(path: Union[str, Path]) -> Any:
    """Open a torch checkpoint file the one way mmkit does: ``torch.load(weights_only=True)`` on the CPU, so
    a file can hold tensors and plain data (dicts, lists, numbers, strings) but never run code on load.

    A file that needs more (a pickled module or object) is refused with what to do instead.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle errors come in many types
        raise ValueError(
            f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err}). mmkit loads only "
            "tensors and plain data (torch.load weights_only=True); re-save it as a state dict: "
            "torch.save(model.state_dict(), path)"
        ) from err


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """A checkpoint file's state dict: a plain one, a safetensors file, or one held under "model",
    "state_dict", "backbone", "module" or "model_state" (a stage-1 checkpoint, most training scripts).
    Read by ``load_checkpoint`` (no code runs on load)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    state = load_checkpoint(path)
    for _ in range(2):
        if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
            inner = next(
                (
                    state[k]
                    for k in ("model", "state_dict", "backbone", "module", "model_state")
                    if isinstance(state.get(k), dict)
                ),
                None,
            )
            if inner is None:
                break
            state = inner
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{path}: holds no state dict (expected tensors by name, or one under 'model'/'state_dict')"
        )
    return state


def load_weights(
    backbone: Backbone, path: Union[str, Path], ignore_prefixes: tuple[str, ...] = ()
) -> Backbone:
    """Load the checkpoint at ``path`` into ``backbone``; a clear error when it does not fit.

    Keys may carry a wrapper's prefix (``module.``, ``backbone.model.``, ``visual.``, ...): the prefix that
    matches the most of this backbone's keys is stripped and other keys under other prefixes (a text tower,
    a classifier) are ignored. A classifier named in ``ignore_prefixes`` is ignored too.
    """
    state = read_state_dict(path)
    own = backbone.model.state_dict()

    def strip(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    best = max(_PREFIXES, key=lambda p: len(own.keys() & strip(p).keys()))
    sd = strip(best)
    missing = sorted(own.keys() - sd.keys())
    unexpected = sorted(k for k in sd.keys() - own.keys() if not k.startswith(ignore_prefixes))
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own.keys() & sd.keys()
        if tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the model's {len(own)} weights missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} of the wrong shape (e.g. {shapes[:2]})")
        raise ValueError(
            f"{path} does not fit backbone {backbone.name!r}: {'; '.join(parts)}. "
            "Is it a checkpoint of this model (same name and size)?"
        )
    backbone.model.load_state_dict({k: sd[k] for k in own}, strict=True)
    return backbone


__all__ = [
    "Backbone",
    "Block",
    "ImageClassifier",
    "OPEN_CLIP_TINY",
    "TINY_BACKBONES",
    "apply_layer_policy",
    "create_backbone",
    "find_backbone",
    "load_checkpoint",
    "load_weights",
    "make_blocks",
    "parse_train_blocks",
    "read_state_dict",
    "trainable_share",
]
