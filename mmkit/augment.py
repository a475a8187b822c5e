"""Augmentation presets and the batch-augmentation loader: decode each image once, draw M augmented views.

A *preset* is three albumentations pipelines built for one image size: ``pre`` (deterministic, run once per
decoded image, e.g. the seed's Resize 244), ``train`` (random, run once per view) and ``eval``. Splitting the
deterministic part out is what makes M views cheap: the image is decoded and resized once, then only the
random part runs M times.

``make_loader`` wraps a torch DataLoader whose sampler yields whole batches, so one worker produces one
batch: it decodes each image once, draws ``copies`` views with independent random parameters and returns
uint8 tensors. Every view's random state comes from ``SeedSequence([seed, epoch, sample index, copy])``, so
a batch depends only on (seed, epoch, rank split), never on ``num_workers`` or on which worker made it.
Normalisation (``normalize``) happens once per batch, after batching, on whatever device the model is on.
The decoded, deterministically resized image is kept in a per-process ``DecodeCache`` (bounded by
``MMKIT_DECODE_CACHE_MB``), so later epochs, other stage-1 runs and the feature bank do not decode it again.

Example:
    >>> loader = make_loader(ds, "train", batch_size=8, copies=4, preset="seed", seed=0)  # doctest: +SKIP
    >>> batch = next(iter(loader))  # doctest: +SKIP
    >>> batch["image"].shape, batch["image"].dtype  # doctest: +SKIP
    (torch.Size([32, 3, 224, 224]), torch.uint8)
    >>> x = normalize(batch["image"], "imagenet")  # float32, [32, 3, 224, 224]  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import json
import logging
import math
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from mmkit.data.records import DataError, Dataset

log = logging.getLogger("mmkit.augment")

# ----------------------------------------------------------------------------------------------------------
# Normalisation statistics (applied once per batch by `normalize`)

NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # timm's "inception" statistics; many ViTs use them
}
NormSpec = Union[str, tuple[Sequence[float], Sequence[float]]]


def resolve_norm(norm: NormSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` for a name in ``NORMS`` or a ``(mean, std)`` pair (e.g. ``backbone.norm``)."""
    if isinstance(norm, str):
        if norm not in NORMS:
            raise ValueError(
                f"unknown normalisation {norm!r}; use one of {sorted(NORMS)} or a (mean, std) pair"
            )
        return NORMS[norm]
    mean, std = norm
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) not in (1, 3) or len(std) != len(mean):
        raise ValueError(f"normalisation needs 1 or 3 means and as many stds, got mean={mean} std={std}")
    return mean, std


def normalize(
    images: torch.Tensor,
    norm: NormSpec = "imagenet",
    device: Optional[Union[str, torch.device]] = None,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Move a uint8 batch ``[N, 3, H, W]`` to ``device`` and return ``(x / 255 - mean) / std`` as ``dtype``.

    The copy to the device happens while the tensor is still uint8 (4x less traffic than float32); with
    ``channels_last`` the result is in channels-last memory format (faster convolutions on GPU).

    Example:
        >>> x = normalize(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8), "half")
        >>> x.dtype, float(x.max())
        (torch.float32, 1.0)
    """
    if images.dtype != torch.uint8:
        raise TypeError(
            f"normalize expects the loader's uint8 images, got {images.dtype}; "
            "normalise each batch once, straight from make_loader's output"
        )
    mean, std = resolve_norm(norm)
    x = images if device is None else images.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    m, inv = _norm_tensors(mean, std, dtype, x.device)
    return x.to(dtype).sub_(m).mul_(inv)


@functools.lru_cache(maxsize=32)
def _norm_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per (statistics, dtype, device), not per batch: torch.tensor(..., device="cuda") is a
    # blocking copy from pageable memory, which waits for all work queued on the stream (the batch's
    # non_blocking upload, the previous step) before the host can go on.
    m = torch.tensor(mean, dtype=dtype, device=device).view(-1, 1, 1) * 255.0
    inv = 1.0 / (torch.tensor(std, dtype=dtype, device=device).view(-1, 1, 1) * 255.0)
    return m, inv


# ----------------------------------------------------------------------------------------------------------
# Presets


def reduce_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resize at OpenCV speed: halve until within 2x of the target, then bilinear.

    OpenCV's bilinear resize by exactly 1/2 averages each pair of pixels, i.e. it is a 2-tap box filter, so
    repeated halving is a box pyramid (the same idea as Pillow's ``reducing_gap``); the remaining < 2x step
    is plain bilinear. An odd row or column at the edge is dropped before a halving. About 0.2 ms for
    500x375 -> 244x244, against 0.7 ms for INTER_AREA, which has no fast path for non-integer ratios.
    """
    h, w = img.shape[:2]
    while w >= 2 * width or h >= 2 * height:
        fx, fy = (2 if w >= 2 * width else 1), (2 if h >= 2 * height else 1)
        h, w = h - h % fy, w - w % fx
        img = cv2.resize(img[:h, :w], (w // fx, h // fy), interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


class Resize(A.Resize):
    """``A.Resize`` to a fixed size through ``reduce_resize`` (anti-aliased when shrinking, and fast)."""

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return reduce_resize(img, self.height, self.width)


class SmallestMaxSize(A.SmallestMaxSize):
    """``A.SmallestMaxSize`` through ``reduce_resize``."""

    def apply(self, img: np.ndarray, scale: float, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        return reduce_resize(img, max(1, round(h * scale)), max(1, round(w * scale)))


@dataclass
class Preset:
    """One named augmentation for one image size.

    ``pre`` runs once per decoded image (deterministic), ``train`` once per view (random), ``eval`` once per
    image for evaluation. ``train_decode`` / ``eval_decode``: the smallest square the JPEG decoder must
    deliver, so it may decode at 1/2, 1/4 or 1/8 scale when the file is much larger than needed.
    """

    name: str
    image_size: int
    pre: A.Compose
    train: A.Compose
    eval: A.Compose
    train_decode: int
    eval_decode: int
    params: dict[str, Any] = field(default_factory=dict)
    source: Optional[str] = None  # the preset file it was loaded from (``load_preset``), else None


def _compose(transforms: list) -> A.Compose:
    return A.Compose(transforms, seed=0)  # the loader replaces the random state before every view


def seed_preset(
    image_size: int = 224, rotate: float = 15.0, hflip: float = 0.5, vflip: float = 0.5
) -> Preset:
    """The published pipeline, scaled by ``image_size / 224``.

    torchvision's Resize((244, 244)), RandomRotation(15) (nearest, black fill, no expand), RandomCrop(224),
    RandomHorizontalFlip, RandomVerticalFlip; evaluation: Resize((224, 224)).
    """
    resize = round(244 * image_size / 224)
    pre = _compose([Resize(resize, resize)])
    train = _compose(
        [
            A.Rotate(
                limit=(-rotate, rotate),
                interpolation=cv2.INTER_NEAREST,  # torchvision RandomRotation's default
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=1.0,  # RandomRotation always rotates, by a uniform angle in [-15, 15]
            ),
            A.RandomCrop(image_size, image_size),
            A.HorizontalFlip(p=hflip),
            A.VerticalFlip(p=vflip),
        ]
    )
    evaluation = _compose([Resize(image_size, image_size)])
    params = dict(rotate=rotate, hflip=hflip, vflip=vflip)
    return Preset("seed", image_size, pre, train, evaluation, resize, image_size, params)


def _center_eval(image_size: int) -> A.Compose:
    return _compose(
        [
            SmallestMaxSize(max_size=image_size),
            A.CenterCrop(image_size, image_size),
        ]
    )


def _crop_source(image_size: int, scale_min: float) -> int:
    # Short side such that the smallest random-resized crop is still >= image_size (no upsampling blur),
    # capped at 2x so a large photo is not kept at full resolution for nothing.
    return min(math.ceil(image_size / math.sqrt(max(scale_min, 0.01))), 2 * image_size)


def light_preset(
    image_size: int = 224, scale_min: float = 0.6, hflip: float = 0.5, brightness: float = 0.1
) -> Preset:
    """Mild: random resized crop (>= 60% of the area), horizontal flip, small brightness/contrast change."""
    src = _crop_source(image_size, scale_min)
    pre = _compose([SmallestMaxSize(max_size=src)])
    train = _compose(
        [
            A.RandomResizedCrop(size=(image_size, image_size), scale=(scale_min, 1.0)),
            A.HorizontalFlip(p=hflip),
            A.RandomBrightnessContrast(
                brightness_limit=brightness, contrast_limit=brightness, p=0.5 if brightness > 0 else 0.0
            ),
        ]
    )
    params = dict(scale_min=scale_min, hflip=hflip, brightness=brightness)
    return Preset("light", image_size, pre, train, _center_eval(image_size), src, image_size, params)


def food_preset(
    image_size: int = 224,
    scale_min: float = 0.35,
    hflip: float = 0.5,
    jitter: float = 0.3,
    blur: float = 0.2,
    rotate: float = 10.0,
) -> Preset:
    """Photos of dishes: random resized crop, flip, small rotation, colour jitter, occasional blur."""
    src = _crop_source(image_size, scale_min)
    pre = _compose([SmallestMaxSize(max_size=src)])
    train = _compose(
        [
            A.RandomResizedCrop(size=(image_size, image_size), scale=(scale_min, 1.0)),
            A.HorizontalFlip(p=hflip),
            A.Rotate(
                limit=(-rotate, rotate), border_mode=cv2.BORDER_REFLECT_101, p=0.5 if rotate > 0 else 0.0
            ),
            A.ColorJitter(
                brightness=jitter,
                contrast=jitter,
                saturation=jitter,
                hue=min(jitter / 6, 0.5),  # hue shifts turn tomato sauce green quickly: keep them small
                p=0.8 if jitter > 0 else 0.0,
            ),
            A.GaussianBlur(sigma_limit=(0.1, 1.5), p=blur),
        ]
    )
    params = dict(scale_min=scale_min, hflip=hflip, jitter=jitter, blur=blur, rotate=rotate)
    return Preset("food", image_size, pre, train, _center_eval(image_size), src, image_size, params)


def ultrasound_preset(
    image_size: int = 224,
    rotate: float = 10.0,
    scale: float = 0.1,
    translate: float = 0.05,
    gamma: float = 0.25,
    contrast: float = 0.2,
    speckle: float = 0.15,
    hflip: float = 0.5,
) -> Preset:
    """Ultrasound frames: no colour jitter (grey images); gamma, contrast, speckle-like multiplicative
    noise and a small affine. The frame is squashed to a square (as the seed does) so nothing at the
    sides, such as the fetal head, is cropped away."""
    pre = _compose([Resize(image_size, image_size)])
    train = _compose(
        [
            A.Affine(
                scale=(1 - scale, 1 + scale),
                translate_percent=(-translate, translate),
                rotate=(-rotate, rotate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,  # outside the ultrasound cone is black anyway
                p=0.8,
            ),
            A.HorizontalFlip(p=hflip),
            A.RandomGamma(gamma_limit=(100 * (1 - gamma), 100 * (1 + gamma)), p=0.5 if gamma > 0 else 0.0),
            A.RandomBrightnessContrast(
                brightness_limit=contrast / 2, contrast_limit=contrast, p=0.5 if contrast > 0 else 0.0
            ),
            # Speckle is multiplicative: every pixel scaled by its own factor, the same in all 3 channels.
            A.MultiplicativeNoise(
                multiplier=(1 - speckle, 1 + speckle),
                elementwise=True,
                per_channel=False,
                p=0.5 if speckle > 0 else 0.0,
            ),
        ]
    )
    evaluation = _compose([Resize(image_size, image_size)])
    params = dict(
        rotate=rotate,
        scale=scale,
        translate=translate,
        gamma=gamma,
        contrast=contrast,
        speckle=speckle,
        hflip=hflip,
    )
    return Preset("ultrasound", image_size, pre, train, evaluation, image_size, image_size, params)


PRESETS: dict[str, Callable[..., Preset]] = {
    "seed": seed_preset,
    "light": light_preset,
    "food": food_preset,
    "ultrasound": ultrasound_preset,
}


# strength -> (low, high, step, identity): the range in which every preset builds a valid pipeline at
# both ends (the explorer's sliders span exactly this), and the value at which it does nothing.
PARAM_RANGES: dict[str, tuple[float, float, float, float]] = {
    "rotate": (0.0, 90.0, 1.0, 0.0),  # degrees, either way
    "hflip": (0.0, 1.0, 0.05, 0.0),  # probabilities
    "vflip": (0.0, 1.0, 0.05, 0.0),
    "blur": (0.0, 1.0, 0.05, 0.0),
    "scale_min": (0.05, 1.0, 0.05, 1.0),  # smallest crop area share: 1.0 never crops
    "brightness": (0.0, 0.5, 0.01, 0.0),
    "jitter": (0.0, 1.0, 0.05, 0.0),
    "scale": (0.0, 0.5, 0.01, 0.0),  # affine zoom, +-
    "translate": (0.0, 0.5, 0.01, 0.0),  # share of the side
    "gamma": (0.0, 0.95, 0.01, 0.0),  # 1.0 would ask RandomGamma for a gamma of 0, which it rejects
    "contrast": (0.0, 1.0, 0.01, 0.0),
    "speckle": (0.0, 0.9, 0.01, 0.0),  # multiplicative noise factor 1 +- speckle
}


def preset_params(name: str) -> dict[str, float]:
    """The tunable strengths of a preset and their defaults (what the explorer's sliders move).

    Example:
        >>> preset_params("seed")
        {'rotate': 15.0, 'hflip': 0.5, 'vflip': 0.5}
    """
    if name not in PRESETS:
        raise ValueError(
            f"unknown preset {name!r}; choose one of {sorted(PRESETS)} or a preset file (.json / .yaml)"
        )
    sig = inspect.signature(PRESETS[name])
    return {k: p.default for k, p in sig.parameters.items() if k != "image_size"}


def scaled_params(name: str, strength: float) -> dict[str, float]:
    """A preset's strengths moved ``strength`` times as far from doing nothing as its defaults are, kept
    inside ``PARAM_RANGES`` (0: every strength at its identity, 1: the defaults, 2: twice as strong).

    Example:
        >>> scaled_params("seed", 2.0)
        {'rotate': 30.0, 'hflip': 1.0, 'vflip': 1.0}
        >>> scaled_params("light", 0.5)["scale_min"]
        0.8
    """
    out = {}
    for k, v in preset_params(name).items():
        lo, hi, _, identity = PARAM_RANGES[k]
        out[k] = round(float(min(hi, max(lo, identity + strength * (float(v) - identity)))), 6)
    return out


def _check_params(name: str, params: dict[str, float]) -> None:
    known = preset_params(name)
    unknown = set(params) - set(known)
    if unknown:
        raise ValueError(f"preset {name!r} has no parameter(s) {sorted(unknown)}; it has {known}")
    for k, v in params.items():
        lo, hi = PARAM_RANGES[k][:2]
        if not lo <= float(v) <= hi:
            raise ValueError(f"preset {name!r}: {k}={v} is outside its valid range [{lo:g}, {hi:g}]")


def _is_preset_file(name: str) -> bool:
    return Path(name).suffix.lower() in (".json", ".yaml", ".yml")


def build_preset(name: Union[str, Path, Preset], image_size: int = 224, **params: float) -> Preset:
    """Build a preset by name for ``image_size``; ``params`` override its strengths (see ``preset_params``).
    A path ending in .json / .yaml / .yml is a preset file saved by ``save_preset`` (the explorer's "save").

    Example:
        >>> p = build_preset("seed", image_size=112)
        >>> p.pre.transforms[0].height, p.train.transforms[1].height
        (122, 112)
    """
    if isinstance(name, Preset):
        return name
    if isinstance(name, Path) or _is_preset_file(name):
        if params:
            raise ValueError(f"{name}: a preset file holds its strengths; edit the file instead of {params}")
        return load_preset(name, image_size)
    _check_params(name, params)
    return PRESETS[name](image_size=image_size, **params)


# ----------------------------------------------------------------------------------------------------------
# Preset files: the three pipelines in albumentations' own serialization, plus what mmkit needs around them


PRESET_FORMAT = 1


def preset_to_dict(preset: Preset) -> dict[str, Any]:
    """A preset as plain data: ``A.to_dict`` of ``pre`` / ``train`` / ``eval`` plus name, size, strengths
    and decode sizes (``load_preset`` reads it back)."""
    return {
        "mmkit_preset": PRESET_FORMAT,
        "name": preset.name,
        "image_size": preset.image_size,
        "params": dict(preset.params),
        "train_decode": preset.train_decode,
        "eval_decode": preset.eval_decode,
        **{part: A.to_dict(getattr(preset, part)) for part in ("pre", "train", "eval")},
    }


def save_preset(
    preset: Union[str, Preset], path: Union[str, Path], image_size: int = 224, **params: float
) -> Path:
    """Write ``preset`` (or ``build_preset(preset, image_size, **params)``) to ``path``: JSON, or YAML when
    the name ends in .yaml / .yml. Any notebook's ``preset`` parameter takes the path.

    Example:
        >>> path = save_preset("ultrasound", "/tmp/us.json", image_size=64, gamma=0.5)  # doctest: +SKIP
        >>> build_preset("/tmp/us.json", 64).params["gamma"]  # doctest: +SKIP
        0.5
    """
    import yaml

    p = build_preset(preset, image_size, **params)
    path = Path(path)
    if not _is_preset_file(str(path)):
        raise ValueError(f"{path}: a preset file name ends in .json, .yaml or .yml")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = preset_to_dict(p)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n")
    else:
        path.write_text(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False))  # tuples -> lists
    return path


def _read_preset_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(
            f"preset file {path} does not exist: save one from notebook 02's explorer, or set preset to one "
            f"of {sorted(PRESETS)}"
        )
    text = path.read_text()
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict) or "train" not in data or "mmkit_preset" not in data:
        raise ValueError(f"{path} is not an mmkit preset file (save one with mmkit.augment.save_preset)")
    return data


def load_preset(path: Union[str, Path], image_size: Optional[int] = None) -> Preset:
    """The preset saved in ``path`` by ``save_preset``, for ``image_size`` (None: the size it was saved at).

    The pipelines are read with ``A.from_dict``, so an edited file keeps its edits. A file saved at
    another size is rebuilt from its name and strengths when its pipelines are still exactly what they
    were built as; an edited one must be used at the size it was saved at.
    """
    path = Path(path)
    data = _read_preset_file(path)
    saved_size = int(data["image_size"])
    name, params = data.get("name"), dict(data.get("params") or {})
    size = saved_size if image_size is None else int(image_size)
    if size != saved_size:
        unedited = name in PRESETS and all(
            _plain(A.to_dict(getattr(build_preset(name, saved_size, **params), part))) == _plain(data[part])
            for part in ("pre", "train", "eval")
        )
        if not unedited:
            raise ValueError(
                f"preset file {path} was saved for image_size={saved_size} and its pipelines were edited: "
                f"set image_size={saved_size}, or save it again at {size}"
            )
        p = build_preset(name, size, **params)
        p.source = str(path)
        return p
    parts = {}
    for part in ("pre", "train", "eval"):
        compose = A.from_dict(data[part])
        compose.set_random_seed(0)  # as _compose: the loader replaces the random state before every view
        parts[part] = compose
    return Preset(
        str(name or path.stem), saved_size, parts["pre"], parts["train"], parts["eval"],
        int(data.get("train_decode", saved_size)), int(data.get("eval_decode", saved_size)), params, str(path),
    )  # fmt: skip


def _plain(x: Any) -> Any:
    return json.loads(json.dumps(x))  # YAML / JSON lists against to_dict's tuples


def preset_key(preset: Union[str, Path, Preset]) -> str:
    """What a cache (the feature bank) must key on for ``preset``: its name, or for a preset file its
    name plus a hash of its content (the same path may hold another preset tomorrow)."""
    if isinstance(preset, Preset):
        return preset.name if preset.source is None else preset_key(preset.source)
    if isinstance(preset, Path) or _is_preset_file(preset):
        data = _read_preset_file(Path(preset))
        digest = hashlib.sha256(json.dumps(_plain(data), sort_keys=True).encode()).hexdigest()[:12]
        return f"{Path(preset).name}:{digest}"
    return preset


# ----------------------------------------------------------------------------------------------------------
# Decoding and drawing views


_CV2_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def decode_image(path: Union[str, Path], min_size: Optional[int] = None) -> np.ndarray:
    """Read an image as an RGB uint8 array ``[H, W, 3]`` (grayscale, palette, RGBA and 16-bit handled).

    With ``min_size``, a JPEG much larger than needed is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
    scaling), keeping both sides >= ``min_size``: several times faster than a full decode. JPEGs go through
    OpenCV (about 25% faster than PIL), everything else through PIL. EXIF orientation is applied.
    """
    data = Path(path).read_bytes()  # one read; PIL only parses the header of a JPEG
    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG":
            factor = 1
            for f in (8, 4, 2):
                if min_size and min(im.size) // f >= min_size:
                    factor = f
                    break
            bgr = cv2.imdecode(
                np.frombuffer(data, np.uint8), _CV2_REDUCED[factor]
            )  # applies EXIF orientation
            if bgr is not None and bgr.ndim == 3 and bgr.shape[2] == 3:
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if min_size:  # OpenCV could not read it: PIL, with the same DCT scaling
                im.draft("RGB", (min_size, min_size))
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            # 16-bit / float images (some ultrasound exports): stretch to 8 bits instead of clipping at 255.
            arr = np.asarray(im, dtype=np.float32)
            lo, hi = float(arr.min()), float(arr.max())
            arr = ((arr - lo) * (255.0 / max(hi - lo, 1e-6))).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im)


def view_rng(seed: int, epoch: int, index: int, copy: int) -> tuple[np.random.Generator, random.Random]:
    """The random state of one view: a function of (seed, epoch, sample index, copy) only."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index), int(copy)])
    state = ss.generate_state(2, dtype=np.uint64)
    return np.random.default_rng(ss), random.Random(int(state[0]) ^ (int(state[1]) << 64))


def draw_views(
    image: np.ndarray, preset: Preset, copies: int, seed: int, epoch: int, index: int, train: bool = True
) -> list[np.ndarray]:
    """The ``copies`` views of one decoded image, exactly as the loader makes them."""
    base = (preset.pre if train else preset.eval)(image=image)["image"]
    return _views_from(base, preset, copies, seed, epoch, index, train)


def preview(
    dataset: Dataset,
    split: str = "train",
    indices: Optional[Sequence[int]] = None,
    preset: Union[str, Preset] = "seed",
    copies: int = 4,
    image_size: int = 224,
    seed: int = 0,
    epoch: int = 0,
    train: bool = True,
    **params: float,
) -> np.ndarray:
    """Views of some samples as a uint8 array ``[N, copies, H, W, 3]``, identical to the loader's.

    Example:
        >>> views = preview(ds, "train", indices=[0, 1], preset="food", copies=3)  # doctest: +SKIP
        >>> views.shape  # doctest: +SKIP
        (2, 3, 224, 224, 3)
    """
    p = build_preset(preset, image_size, **params)
    recs = dataset.records(split)
    indices = list(range(min(4, len(recs)))) if indices is None else list(indices)
    out = []
    for i in indices:
        img = _decode_record(recs[i], i, split, p.train_decode if train else p.eval_decode)
        out.append(np.stack(draw_views(img, p, copies if train else 1, seed, epoch, i, train)))
    return np.stack(out)


def copy_stats(views: np.ndarray) -> dict[str, float]:
    """How different the views are, in mean absolute pixel difference (0-255) over ``[N, M, H, W, 3]``.

    ``copy_diff``: between two copies of the same sample (what batch augmentation adds);
    ``sample_diff``: between different samples at the same copy (the data's own variety), for scale.

    Example:
        >>> v = np.zeros((2, 2, 4, 4, 3), np.uint8); v[:, 1] = 10; v[1] += 100
        >>> copy_stats(v)
        {'copy_diff': 10.0, 'sample_diff': 100.0}
    """
    v = views.astype(np.float32)
    n, m = v.shape[:2]
    pairs = [np.abs(v[:, a] - v[:, b]).mean() for a in range(m) for b in range(a + 1, m)]
    cross = [np.abs(v[a] - v[b]).mean() for a in range(n) for b in range(a + 1, n)]
    return {
        "copy_diff": float(np.mean(pairs)) if pairs else 0.0,
        "sample_diff": float(np.mean(cross)) if cross else 0.0,
    }


def _decode_error(rec: Any, index: int, split: str, err: Exception) -> DataError:
    return DataError(
        rec.image_path,
        f"{split} record {index} (id {rec.id!r})",
        f"cannot decode the image ({type(err).__name__}: {err})",
        "Replace or remove the file, or re-read the dataset with on_error='skip' to list such files",
    )


def _decode_record(rec: Any, index: int, split: str, min_size: int) -> np.ndarray:
    try:
        return decode_image(rec.image_path, min_size)
    except (OSError, ValueError, SyntaxError) as err:
        raise _decode_error(rec, index, split, err) from err


# ----------------------------------------------------------------------------------------------------------
# The decode cache: decoded + deterministically resized images, shared by every loader of the process

# Transforms whose output depends on the input image only (with p=1): a pipeline made of these alone may be
# cached. Anything else (a user's preset file with a random `pre`) is run every time on the cached decode.
_DETERMINISTIC = (A.Resize, A.SmallestMaxSize, A.LongestMaxSize, A.CenterCrop)


def _cacheable(compose: A.Compose) -> bool:
    return getattr(compose, "p", 1.0) >= 1.0 and all(
        isinstance(t, _DETERMINISTIC) and t.p >= 1.0 for t in compose.transforms
    )


def _pipeline_key(compose: Optional[A.Compose]) -> str:
    """A digest of a pipeline's serialization plus the classes it runs (mmkit's Resize and albumentations'
    serialize alike but resize differently), so two presets share cache entries only if they compute the
    same thing."""
    if compose is None:
        return "decode"
    try:
        spec = json.dumps(A.to_dict(compose), sort_keys=True, default=str)
    except Exception:  # a transform albumentations cannot serialize: its repr holds the parameters
        spec = repr(compose)
    classes = [f"{type(t).__module__}.{type(t).__qualname__}" for t in compose.transforms]
    return hashlib.sha256((spec + json.dumps(classes)).encode()).hexdigest()[:16]


class DecodeCache:
    """An in-memory LRU of decoded (+ deterministically resized) uint8 images, bounded by bytes.

    An entry's key is (file path, size, mtime_ns, ctime_ns, inode, decode min_size, pipeline digest): a file
    rewritten or touched, another decode size or another preset's pipeline is a miss, never a stale hit.
    Entries are stored read-only and handed out as copies, so nothing downstream can alter them.

    One cache per process: with ``num_workers=0`` (the default) stage 1's epochs, its variants and the
    feature bank all share it. DataLoader workers each hold their own copy, filled in the worker and lost
    when the loader's workers end, so with workers only later epochs of the same loader gain.
    ``MMKIT_DECODE_CACHE_MB`` sets its size at first use (default 1024; 0 disables it).

    Example:
        >>> cache = decode_cache()
        >>> cache.resize(256)  # MB; 0 disables and empties it
        >>> cache.clear(); cache.hits, cache.misses
        (0, 0)
    """

    def __init__(self, max_mb: float):
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.nbytes, self.hits, self.misses = 0, 0, 0
        self.max_bytes = int(max_mb * 2**20)

    def resize(self, max_mb: float) -> None:
        with self._lock:
            self.max_bytes = int(max_mb * 2**20)
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes, self.hits, self.misses = 0, 0, 0

    def __len__(self) -> int:
        return len(self._items)

    def _evict(self) -> None:
        while self._items and self.nbytes > self.max_bytes:
            self.nbytes -= self._items.popitem(last=False)[1].nbytes

    def get(self, path: Union[str, Path], min_size: int, pipeline: Optional[A.Compose],
            key: Optional[str] = None) -> tuple[np.ndarray, bool]:  # fmt: skip
        """``(image, applied)``: the decoded image, run through ``pipeline`` when it is deterministic
        (``applied`` True) or left as decoded (False: the caller runs its pipeline). ``key``: the
        pipeline's ``_pipeline_key``, when the caller has it already."""
        apply = pipeline is not None and _cacheable(pipeline)
        if self.max_bytes <= 0:
            image = decode_image(path, min_size)
            return (pipeline(image=image)["image"], True) if apply else (image, False)
        st = os.stat(path)
        k = (
            os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, min_size,
            (key or _pipeline_key(pipeline)) if apply else "decode",
        )  # fmt: skip
        with self._lock:
            hit = self._items.get(k)
            if hit is not None:
                self._items.move_to_end(k)
                self.hits += 1
                return hit.copy(), apply
        image = decode_image(path, min_size)
        if apply:
            image = pipeline(image=image)["image"]
        stored = np.ascontiguousarray(image).copy()
        stored.setflags(write=False)
        with self._lock:
            self.misses += 1
            if stored.nbytes <= self.max_bytes and k not in self._items:
                self._items[k] = stored
                self.nbytes += stored.nbytes
                self._evict()
        return image, apply


_CACHE: Optional[DecodeCache] = None


def decode_cache() -> DecodeCache:
    """The process's ``DecodeCache`` (created at first use, sized by ``MMKIT_DECODE_CACHE_MB``)."""
    global _CACHE
    if _CACHE is None:
        raw = os.environ.get("MMKIT_DECODE_CACHE_MB", "1024")
        try:
            mb = float(raw)
        except ValueError as err:
            raise ValueError(
                f"MMKIT_DECODE_CACHE_MB must be a number of megabytes (0 disables), got {raw!r}"
            ) from err
        _CACHE = DecodeCache(mb)
    return _CACHE


def _views_from(base: np.ndarray, preset: Preset, copies: int, seed: int, epoch: int, index: int,
                train: bool) -> list[np.ndarray]:  # fmt: skip
    """``draw_views`` after its deterministic step (``pre`` for training, ``eval`` otherwise) is done."""
    if not train:
        return [base]
    views = []
    for c in range(copies):
        preset.train.set_random_state(*view_rng(seed, epoch, index, c))
        views.append(preset.train(image=base)["image"])
    return views


# ----------------------------------------------------------------------------------------------------------
# The loader


class _BatchPlan(torch.utils.data.Sampler):
    """Yields ``(epoch, indices)`` per batch for this rank: a DistributedSampler split at batch granularity.

    The order is ``permutation(n)`` from ``(seed, epoch)``; rank r takes every world-th sample of it, so all
    copies of a sample are made on one rank, and every sample is seen exactly once per epoch across ranks.
    With ``even`` (training) every rank must run the same number of steps (DDP needs that) although shards
    may differ by one sample: each rank cuts its shard into the same number of near-equal batches (at most
    ``batch_size``) instead of dropping or repeating samples. Only where that is impossible (a shard
    shorter than the number of steps, or ``drop_last``) is the order cut to a multiple of the world size,
    and the cut (``cut`` samples per epoch) is logged once, on rank 0.
    Evaluation splits are never cut: ranks may get one sample more or less.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, drop_last: bool, rank: int, world: int,
                 seed: int, even: bool):  # fmt: skip
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.rank, self.world, self.seed, self.even = rank, world, seed, even
        self.epoch = 0
        # Can every rank cut its (possibly one shorter) shard into the same number of non-empty batches?
        self.same_cuts = (
            world > 1 and even and not drop_last and n > 0 and n // world >= self._steps(math.ceil(n / world))
        )
        self.cut = n % world if world > 1 and even and not self.same_cuts else 0  # samples left out per epoch
        if self.cut and rank == 0:
            why = (
                "drop_last=True cuts the order to a multiple of the world size"
                if drop_last
                else f"shards of {n // world}-{math.ceil(n / world)} samples cannot be cut into the same "
                f"number of batches at batch_size={batch_size}; a larger batch_size trains on all of them"
            )
            which = "a different set each epoch, by the shuffle" if shuffle else "the last ones, every epoch"
            log.warning(
                "DDP loader: %d of the %d training samples are left out each epoch (%s; %d ranks must run "
                "the same number of steps): %s.",
                self.cut, n, which, world, why,
            )  # fmt: skip

    def indices(self, epoch: int) -> np.ndarray:
        order = np.arange(self.n)
        if self.shuffle:
            order = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, int(epoch), 0x5EED]).permutation(
                self.n
            )
        if self.world > 1:
            if self.even and not self.same_cuts:
                order = order[: self.n - self.n % self.world]
            order = order[self.rank :: self.world]
        return order

    def _steps(self, m: int) -> int:
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def batches(self, epoch: int) -> list[np.ndarray]:
        order = self.indices(epoch)
        if self.same_cuts:
            return np.array_split(order, len(self))  # same count on every rank, sizes differ by <= 1
        usable = order[: len(order) - len(order) % self.batch_size] if self.drop_last else order
        return [usable[start : start + self.batch_size] for start in range(0, len(usable), self.batch_size)]

    def __iter__(self):
        epoch = self.epoch
        for batch in self.batches(epoch):
            yield epoch, tuple(int(i) for i in batch)

    def __len__(self) -> int:
        if self.same_cuts:
            return self._steps(math.ceil(self.n / self.world))  # the longest shard's count, on every rank
        return self._steps(len(self.indices(0)))  # the same for every epoch


class _BatchMaker(torch.utils.data.Dataset):
    """Runs in a worker: one ``(epoch, indices)`` item -> one whole batch of uint8 views."""

    def __init__(self, dataset: Dataset, split: str, preset: Preset, copies: int, train: bool, seed: int):
        self.records = dataset.records(split)
        self.targets = torch.from_numpy(dataset.targets(split))
        self.split, self.preset, self.copies, self.train, self.seed = split, preset, copies, train, seed
        self.pipeline = preset.pre if train else preset.eval  # the deterministic step, run once per image
        self.pipeline_key = _pipeline_key(self.pipeline)

    def __len__(self) -> int:
        return len(self.records)

    def _prepared(self, rec: Any, index: int, min_size: int) -> tuple[np.ndarray, bool]:
        try:
            return decode_cache().get(rec.image_path, min_size, self.pipeline, self.pipeline_key)
        except (OSError, ValueError, SyntaxError) as err:
            raise _decode_error(rec, index, self.split, err) from err

    def __getitem__(self, item: tuple[int, tuple[int, ...]]) -> dict[str, Any]:
        epoch, indices = item
        m, s = self.copies, self.preset.image_size
        batch = torch.empty((len(indices) * m, 3, s, s), dtype=torch.uint8)
        if torch.utils.data.get_worker_info() is not None:
            # In a worker, write the views straight into shared memory: sending the batch to the main
            # process then costs no copy (torch would otherwise copy the tensor into shared memory).
            batch.share_memory_()
        images = batch.numpy()
        min_size = self.preset.train_decode if self.train else self.preset.eval_decode
        k = 0
        for i in indices:
            rec = self.records[i]
            image, applied = self._prepared(rec, i, min_size)
            if not applied:
                image = self.pipeline(image=image)["image"]
            for view in _views_from(image, self.preset, m, self.seed, epoch, i, self.train):
                if view.shape != (s, s, 3):
                    raise RuntimeError(
                        f"preset {self.preset.name!r} made a {view.shape} view of {rec.image_path}; "
                        f"every view must be {s}x{s}x3: check the preset's last transform"
                    )
                images[k] = view.transpose(2, 0, 1)  # HWC -> CHW, written straight into the batch
                k += 1
        idx = torch.tensor(indices, dtype=torch.int64)
        return {
            "image": batch,
            "label": self.targets[idx].repeat_interleave(m, dim=0),
            "index": idx.repeat_interleave(m),
            "copy": torch.arange(m, dtype=torch.int64).repeat(len(indices)),
            "id": [self.records[i].id for i in indices for _ in range(m)],
            "text": [self.records[i].text for i in indices for _ in range(m)],
        }


def _identity(x: Any) -> Any:
    return x


class BatchLoader:
    """Iterable of batch dicts (see ``make_loader``); ``set_epoch`` picks the epoch's shuffle and views.

    Iterating again without ``set_epoch`` moves on to the next epoch, so a forgotten ``set_epoch`` never
    silently repeats last epoch's augmentations; ``set_epoch(e)`` before an iteration pins it to epoch e.
    """

    def __init__(self, maker: _BatchMaker, plan: _BatchPlan, num_workers: int, pin_memory: bool):
        self.maker, self.plan = maker, plan
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self._loader = torch.utils.data.DataLoader(
            maker,
            sampler=plan,
            batch_size=None,  # the sampler's items are already whole batches
            collate_fn=_identity,
            num_workers=num_workers,
            pin_memory=pin_memory,
            # No cv2.setNumThreads in the workers: calling it in a forked child deadlocks OpenCV's pthreads
            # pool. Each worker makes whole batches single-handedly, which keeps the cores busy anyway.
            persistent_workers=num_workers > 0,
        )
        self._started = False
        self._pinned = False

    @property
    def epoch(self) -> int:
        return self.plan.epoch

    @property
    def copies(self) -> int:
        return self.maker.copies

    @property
    def preset(self) -> Preset:
        return self.maker.preset

    @property
    def world_size(self) -> int:
        """Ranks this loader's split is sharded over (1: this rank sees the whole split)."""
        return self.plan.world

    @property
    def num_samples(self) -> int:
        """Samples per epoch on this rank (each yields ``copies`` views)."""
        return sum(len(b) for b in self.plan.batches(self.plan.epoch))

    def set_epoch(self, epoch: int) -> None:
        self.plan.epoch = int(epoch)
        self._pinned = True

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self):
        if self._started and not self._pinned:
            self.plan.epoch += 1
        self._started, self._pinned = True, False
        return iter(self._loader)


def _rank_world(distributed: Union[None, bool, tuple[int, int]]) -> tuple[int, int]:
    if distributed is None or distributed is False:
        return 0, 1
    if distributed is True:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "make_loader(distributed=True) needs torch.distributed initialised first "
                "(torchrun + dist.init_process_group), or pass distributed=(rank, world_size)"
            )
        return dist.get_rank(), dist.get_world_size()
    rank, world = distributed
    if not 0 <= rank < world:
        raise ValueError(f"distributed=(rank, world_size) needs 0 <= rank < world_size, got {distributed}")
    return int(rank), int(world)


def make_loader(
    dataset: Dataset,
    split: str,
    batch_size: int,
    copies: int = 1,
    preset: Union[str, Preset] = "seed",
    image_size: int = 224,
    seed: int = 0,
    num_workers: int = 0,
    distributed: Union[None, bool, tuple[int, int]] = None,
    shuffle: Optional[bool] = None,
    drop_last: bool = False,
    augment: Optional[bool] = None,
    pin_memory: Optional[bool] = None,
) -> BatchLoader:
    """Batches of ``batch_size`` samples x ``copies`` views, uint8, sample-major.

    Split "train" uses the preset's training pipeline and shuffles; other splits use its eval transform
    with one copy and keep their order (``augment`` / ``shuffle`` override that). ``distributed``: None
    (one process), True (rank and world size from torch.distributed) or ``(rank, world_size)``.

    Each batch dict: "image" uint8 [B*M, 3, H, W]; "label" int64 [B*M] or float32 [B*M, C] (multilabel);
    "index" int64 [B*M] (position in ``dataset.records(split)``); "copy" int64 [B*M]; "id", "text" lists.

    Example:
        >>> loader = make_loader(ds, "train", batch_size=16, copies=4, preset="food")  # doctest: +SKIP
        >>> for epoch in range(3):  # doctest: +SKIP
        ...     loader.set_epoch(epoch)
        ...     for batch in loader:
        ...         x = normalize(batch["image"], backbone.norm, device="cuda", channels_last=True)
    """
    if batch_size < 1 or copies < 1:
        raise ValueError(f"batch_size and copies must be >= 1, got batch_size={batch_size}, copies={copies}")
    train = split == "train" if augment is None else bool(augment)
    shuffle = split == "train" if shuffle is None else bool(shuffle)
    rank, world = _rank_world(distributed)
    p = build_preset(preset, image_size)
    n = len(dataset.records(split))
    maker = _BatchMaker(dataset, split, p, copies if train else 1, train, seed)
    plan = _BatchPlan(n, batch_size, shuffle, drop_last, rank, world, seed, even=split == "train")
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    return BatchLoader(maker, plan, num_workers, pin)


__all__ = [
    "NORMS",
    "PARAM_RANGES",
    "PRESETS",
    "BatchLoader",
    "DecodeCache",
    "Preset",
    "build_preset",
    "copy_stats",
    "decode_cache",
    "decode_image",
    "draw_views",
    "food_preset",
    "light_preset",
    "make_loader",
    "normalize",
    "load_preset",
    "preset_key",
    "preset_params",
    "preset_to_dict",
    "preview",
    "resolve_norm",
    "save_preset",
    "scaled_params",
    "seed_preset",
    "ultrasound_preset",
    "view_rng",
]
