"""Small seeded stand-ins for UPMC Food-101 and FPUS23, written in the real on-disk formats.

They are read back by the real readers, so the demo exercises the same code paths as real data. Both are
built so that each modality alone is informative but imperfect and the two together do better:

- food: each class has a shape and a colour, but a share of images shows another class's shape or colour,
  under noise and clutter; titles name the class only sometimes, sometimes name another class, and carry
  class-typical words otherwise. Image and text errors are drawn independently.
- fpus23: ultrasound-like frames (speckle in a fan) with blob "organs" whose presence follows the stream's
  view (sweep) and drifts slowly from frame to frame; blobs are sometimes faint and there are look-alike
  distractors. Tags (pose, probe, view, plane) are written as CVAT 1.1 ``<tag>`` elements, some missing.

Same seed and settings -> byte-identical files. Generation takes about a second with the defaults.

Example:
    >>> root = make_synthetic_food101("/tmp/food", n_classes=3, train_per_class=4, test_per_class=2)  # doctest: +SKIP
    >>> read_upmc_food101(root).summary()  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mmkit.data.fpus23 import ORGANS  # the reader's class order: _PRESENCE rows follow it

# Bump when the generators' output changes, so load_dataset regenerates cached copies.
GENERATOR_VERSION = 2
STAMP_FILE = ".mmkit_synthetic.json"

FOOD_CLASSES = ["apple_pie", "caesar_salad", "pho", "sushi", "tiramisu", "pizza", "ramen", "waffles"]
_FOOD_HINTS = {
    "apple_pie": ["cinnamon", "crust", "baked", "lattice", "fruit"],
    "caesar_salad": ["romaine", "croutons", "parmesan", "dressing", "greens"],
    "pho": ["broth", "noodles", "vietnamese", "beef", "herbs"],
    "sushi": ["rice", "salmon", "nori", "japanese", "rolls"],
    "tiramisu": ["mascarpone", "espresso", "cocoa", "ladyfingers", "layered"],
    "pizza": ["cheese", "oven", "dough", "tomato", "slice"],
    "ramen": ["miso", "egg", "tonkotsu", "bowl", "spicy"],
    "waffles": ["syrup", "batter", "breakfast", "crispy", "butter"],
}
_FILLER = [
    "recipe", "homemade", "easy", "best", "my", "kitchen", "blog", "the", "with", "simple", "quick",
    "delicious", "family", "weekend", "healthy", "classic", "photo", "dinner", "favourite", "how", "to", "make",
]  # fmt: skip
_SITES = ["Tasty Corner", "Mom's Table", "Food Diary", "Cooking with Ana", "Allrecipes.com", "Chef Blog"]
_SHAPES = ["circle", "square", "triangle", "ring", "diamond", "cross", "bar", "star"]


def _class_words(name: str) -> str:
    return name.replace("_", " ")


def stamp(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What the stamp file of a folder written by generator ``kind`` with ``settings`` holds."""
    return {"generator": kind, "version": GENERATOR_VERSION, "settings": settings}


def _write_stamp(root: Path, kind: str, settings: dict[str, Any]) -> None:
    (root / STAMP_FILE).write_text(json.dumps(stamp(kind, settings), indent=2, sort_keys=True))


def read_stamp(root: str | Path) -> dict[str, Any] | None:
    """The generator settings a synthetic folder was written with, or None when it has no stamp."""
    path = Path(root) / STAMP_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def holds_foreign_files(root: str | Path) -> bool:
    """Whether ``root`` is a non-empty folder with no stamp: files this module did not write and must not touch."""
    root = Path(root)
    return root.exists() and any(root.iterdir()) and read_stamp(root) is None


def _fresh(root: Path) -> Path:
    """Empty ``root`` of files this module wrote before; refuse to touch a folder it did not write."""
    if holds_foreign_files(root):
        raise FileExistsError(
            f"{root} exists and holds files that mmkit did not generate; choose an empty data_root"
        )
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


# --- food ---------------------------------------------------------------------------------------------


def _hue_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        k, radii = 3, [r]
    elif shape == "square":
        k, radii = 4, [r]
    elif shape == "diamond":
        k, radii = 4, [r * 1.1, r * 0.6]
    elif shape == "star":
        k, radii = 5, [r, r * 0.45]
    else:
        raise ValueError(shape)
    n = k * len(radii)
    pts = []
    for i in range(n):
        a = angle + 2 * np.pi * i / n
        rad = radii[i % len(radii)]
        pts.append((cx + rad * np.cos(a), cy + rad * np.sin(a)))
    return pts


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float, fill
) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(2, int(r / 3)))
    elif shape == "cross":
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    elif shape == "bar":
        dx, dy = r * np.cos(angle), r * np.sin(angle)
        draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=fill, width=max(3, int(r / 2.5)))
    else:
        draw.polygon(_shape_points(shape, cx, cy, r, angle), fill=fill)


def _food_image(rng: np.random.Generator, k: int, n_classes: int, size: int, confuse: float) -> Image.Image:
    # Background: a plate-like light colour with a darker rim, then clutter.
    bg = _hue_rgb(rng.random(), 0.15 * rng.random(), 0.55 + 0.4 * rng.random())
    im = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 4))):  # clutter: small shapes of any class
        j = int(rng.integers(n_classes))
        _draw_shape(
            draw,
            _SHAPES[j % len(_SHAPES)],
            rng.uniform(0, size),
            rng.uniform(0, size),
            size * rng.uniform(0.05, 0.1),
            rng.uniform(0, np.pi),
            _hue_rgb(j / n_classes + rng.normal(0, 0.05), 0.6, 0.8),
        )
    # The dish: the class's shape and colour, each replaced by another class's with probability `confuse`.
    shape_k = int(rng.integers(n_classes)) if rng.random() < confuse else k
    colour_k = int(rng.integers(n_classes)) if rng.random() < confuse else k
    hue = colour_k / n_classes + rng.normal(0, 0.04)
    fill = _hue_rgb(hue, 0.55 + 0.4 * rng.random(), 0.45 + 0.5 * rng.random())
    r = size * rng.uniform(0.2, 0.32)
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    _draw_shape(draw, _SHAPES[shape_k % len(_SHAPES)], cx, cy, r, rng.uniform(0, np.pi), fill)
    # Texture by class (stripes for even classes beyond the 8 shapes keep >8 classes separable a bit).
    if (k // len(_SHAPES)) % 2 == 1:
        for y in range(0, size, 6):
            draw.line([0, y, size, y], fill=_hue_rgb(hue + 0.5, 0.3, 0.5), width=1)
    arr = np.asarray(im, dtype=np.float32)
    arr = arr + rng.normal(0, 18, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _food_title(rng: np.random.Generator, k: int, classes: list[str], name_p: float, mislead_p: float) -> str:
    words: list[str] = list(rng.choice(_FILLER, size=int(rng.integers(1, 4)), replace=False))
    u = rng.random()
    if u < name_p:
        words.insert(int(rng.integers(len(words) + 1)), _class_words(classes[k]).title())
    elif u < name_p + mislead_p:
        other = classes[int(rng.integers(len(classes)))]
        words.insert(int(rng.integers(len(words) + 1)), _class_words(other).title())
    hints = _FOOD_HINTS.get(classes[k], [f"{classes[k]}_flavour"])
    if rng.random() < 0.6:
        words.append(str(rng.choice(hints)))
    if rng.random() < 0.25:  # a hint word of another class: text is not a free lunch either
        other = classes[int(rng.integers(len(classes)))]
        words.append(str(rng.choice(_FOOD_HINTS.get(other, [f"{other}_flavour"]))))
    title = " ".join(words)
    site = str(rng.choice(_SITES))
    title = f"{title} | {site}" if rng.random() < 0.5 else title
    # The scraping artefacts of the real titles, so the cleaning runs on the demo too.
    u = rng.random()
    if u < 0.08:
        title = title.replace("'", "&#039;") + " &amp; more"
    elif u < 0.14:
        title = title + " \\xe2\\x80\\x93 " + site.replace("'", "\\xe2\\x80\\x99")
    elif u < 0.2:
        title = f'[["{title}"]]'
    return title


def make_synthetic_food101(
    root: str | Path,
    n_classes: int = 8,
    train_per_class: int = 48,
    test_per_class: int = 16,
    image_size: int = 64,
    confuse: float = 0.3,
    name_p: float = 0.45,
    mislead_p: float = 0.12,
    seed: int = 0,
) -> Path:
    """Write a UPMC-Food-101-shaped dataset (JPEGs + header-less title CSVs) under ``root``.

    ``confuse``: chance that an image's shape (and, independently, its colour) comes from another class.
    ``name_p`` / ``mislead_p``: chance that a title names the class / names a (random) class instead.

    Example:
        >>> root = make_synthetic_food101("/tmp/food", n_classes=3, train_per_class=4, test_per_class=2)  # doctest: +SKIP
        >>> sorted(p.name for p in (root / "texts").iterdir())  # doctest: +SKIP
        ['test_titles.csv', 'train_titles.csv']
    """
    settings = dict(
        n_classes=n_classes,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        image_size=image_size,
        confuse=confuse,
        name_p=name_p,
        mislead_p=mislead_p,
        seed=seed,
    )
    root = _fresh(Path(root))
    rng = np.random.default_rng(seed)
    classes = [FOOD_CLASSES[i] if i < len(FOOD_CLASSES) else f"dish_{i}" for i in range(n_classes)]
    (root / "texts").mkdir()
    counter = 0
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        rows = []
        for k, name in enumerate(classes):
            folder = root / "images" / split / name
            folder.mkdir(parents=True)
            for _ in range(per_class):
                file = f"{name}_{counter}.jpg"
                counter += 1
                _food_image(rng, k, n_classes, image_size, confuse).save(folder / file, quality=90)
                rows.append([file, _food_title(rng, k, classes, name_p, mislead_p), name])
        # Rows in shuffled order: a reader that joins by position instead of file name gets garbage.
        order = rng.permutation(len(rows))
        with open(root / "texts" / f"{split}_titles.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(rows[i] for i in order)
    _write_stamp(root, "food101", settings)
    return root


# --- FPUS23 -------------------------------------------------------------------------------------------

POSES = ["hdvb", "hdvf", "huvb", "huvf"]
SWEEPS = {
    "aroundabd": "abdomen",
    "aroundarms": "arms",
    "aroundhead": "head",
    "aroundlegs": "legs",
    "longrec": None,
}
# P(organ present) given the view tag, in ORGANS order; loosely after the real streams' box counts.
_PRESENCE = {
    "head": [0.9, 0.5, 0.4, 0.05],
    "abdomen": [0.1, 0.6, 0.95, 0.2],
    "arms": [0.6, 0.9, 0.3, 0.7],
    "legs": [0.05, 0.15, 0.7, 0.95],
    None: [0.5, 0.5, 0.5, 0.5],
}
_PLANES = {"head": "Head_plane", "abdomen": "Abd_plane", "legs": "Femur_plane"}

_LABELS_XML = """      <labels>
        <label><name>Orientation</name><attributes><attribute><name>Pose</name><mutable>False</mutable>
<input_type>select</input_type><default_value>hdvb</default_value><values>hdvb
huvb
hdvf
huvf</values></attribute></attributes></label>
        <label><name>head</name><attributes></attributes></label>
        <label><name>arm</name><attributes></attributes></label>
        <label><name>abdomen</name><attributes></attributes></label>
        <label><name>legs</name><attributes></attributes></label>
        <label><name>location</name><attributes><attribute><name>View_fetus</name><mutable>False</mutable>
<input_type>select</input_type><default_value>abdomen</default_value><values>abdomen
head
legs
arms</values></attribute></attributes></label>
        <label><name>Probe</name><attributes><attribute><name>orientation</name><mutable>False</mutable>
<input_type>select</input_type><default_value>v</default_value><values>v
h</values></attribute></attributes></label>
        <label><name>diagnostic_plane</name><attributes><attribute><name>plane</name><mutable>False</mutable>
<input_type>select</input_type><default_value>Head_plane</default_value><values>Head_plane
Abd_plane
Femur_plane</values></attribute></attributes></label>
      </labels>
"""


def _fan_mask(w: int, h: int) -> np.ndarray:
    """The ultrasound cone: a sector opening downwards from the top centre."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2(xx - w / 2, yy + h * 0.15)
    rad = np.hypot(xx - w / 2, yy + h * 0.15)
    return ((np.abs(ang) < 0.75) & (rad < h * 1.12)).astype(np.float32)


def _organ_geometry(organ: str, w: int, h: int, head_up: bool, rng: np.random.Generator) -> dict[str, float]:
    # Head towards the top for head-up poses, the bottom otherwise; limbs around the middle.
    y_head = 0.3 if head_up else 0.7
    base = {
        "head": (0.5, y_head, 0.12, 0.16),
        "abdomen": (0.5, 0.5, 0.14, 0.12),
        "arm": (0.35, 0.5 + (0.1 if head_up else -0.1), 0.05, 0.13),
        "legs": (0.62, 1 - y_head, 0.1, 0.12),
    }[organ]
    cx, cy, rx, ry = base
    return {
        "cx": (cx + rng.normal(0, 0.06)) * w,
        "cy": (cy + rng.normal(0, 0.06)) * h,
        "rx": rx * w * 0.55 * rng.uniform(0.8, 1.2),
        "ry": ry * h * rng.uniform(0.8, 1.2),
    }


def _draw_organ(draw: ImageDraw.ImageDraw, organ: str, g: dict[str, float], level: int) -> None:
    cx, cy, rx, ry = g["cx"], g["cy"], g["rx"], g["ry"]
    if organ == "head":  # a bright skull ring
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=level, width=2)
    elif organ == "abdomen":  # a filled grey disc
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=level // 2)
    elif organ == "arm":  # a thin bright bar
        draw.ellipse([cx - rx * 0.4, cy - ry, cx + rx * 0.4, cy + ry], fill=level)
    else:  # legs: two bars
        draw.ellipse([cx - rx, cy - ry, cx - rx * 0.3, cy + ry], fill=level)
        draw.ellipse([cx + rx * 0.3, cy - ry, cx + rx, cy + ry], fill=level)


def _fpus_stream(
    rng: np.random.Generator, out: Path, pose: str, view: str | None, probe: str, has_probe_tag: bool,
    n_frames: int, w: int, h: int,
) -> str:  # fmt: skip
    """Write one stream's frames and return its CVAT <image> elements."""
    fan = _fan_mask(w, h)
    head_up = pose.startswith("hu")
    p = _PRESENCE[view]
    present = [rng.random() < p[i] for i in range(4)]
    geo = {o: _organ_geometry(o, w, h, head_up, rng) for o in ORGANS}
    images = []
    for t in range(n_frames):
        # Presence is sticky from frame to frame (a slow sweep), positions drift: near-duplicate frames.
        for i in range(4):
            if rng.random() < 0.12:
                present[i] = rng.random() < p[i]
        if t == 0 and not any(present):  # every stream has boxes somewhere (an unboxed one is bad input)
            present[int(np.argmax(p))] = True
        for g in geo.values():
            g["cx"] = float(np.clip(g["cx"] + rng.normal(0, 1.5), 0.15 * w, 0.85 * w))
            g["cy"] = float(np.clip(g["cy"] + rng.normal(0, 1.0), 0.15 * h, 0.85 * h))
        im = Image.new("L", (w, h), 40)
        draw = ImageDraw.Draw(im)
        boxes = []
        for i, organ in enumerate(ORGANS):
            if not present[i]:
                continue
            level = int(rng.uniform(90, 230))  # sometimes faint
            _draw_organ(draw, organ, geo[organ], level)
            g = geo[organ]
            x0, y0 = max(0.0, g["cx"] - g["rx"]), max(0.0, g["cy"] - g["ry"])
            x1, y1 = min(float(w), g["cx"] + g["rx"]), min(float(h), g["cy"] + g["ry"])
            boxes.append(
                f'    <box label="{organ}" occluded="0" source="manual" xtl="{x0:.2f}" ytl="{y0:.2f}" '
                f'xbr="{x1:.2f}" ybr="{y1:.2f}" z_order="0">\n    </box>\n'
            )
        if rng.random() < 0.2:  # a look-alike: a small ring that is not a head
            x, y, r = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h), rng.uniform(4, 9)
            draw.ellipse([x - r, y - r * 1.3, x + r, y + r * 1.3], outline=int(rng.uniform(90, 200)), width=2)
        arr = np.asarray(im, dtype=np.float32)
        speckle = rng.rayleigh(0.6, size=arr.shape).astype(np.float32)  # multiplicative speckle
        arr = (arr * speckle + rng.normal(0, 12, size=arr.shape)) * fan
        file = f"frame_{t:06d}.png"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out / file)
        tags = [("Orientation", "Pose", pose)]
        if has_probe_tag:
            tags.append(("Probe", "orientation", probe))
        if view is not None and rng.random() > 0.05:  # a few frames lack the view tag, as in the real XML
            tags.append(("location", "View_fetus", view))
        planes = [_PLANES[o] for i, o in enumerate(ORGANS) if present[i] and o in _PLANES]
        if planes and rng.random() < 0.15:
            tags.append(("diagnostic_plane", "plane", planes[int(rng.integers(len(planes)))]))
        tag_xml = "".join(
            f'    <tag label="{lab}" source="manual">\n      <attribute name="{att}">{val}</attribute>\n    </tag>\n'
            for lab, att, val in tags
        )
        images.append(
            f'  <image id="{t}" name="{file}" width="{w}" height="{h}">\n{"".join(boxes)}{tag_xml}  </image>\n'
        )
    images.reverse()  # CVAT dumps this dataset's frames last-first; readers must not rely on order
    return "".join(images)


def make_synthetic_fpus23(
    root: str | Path,
    n_streams: int = 12,
    frames_per_stream: int = 30,
    width: int = 168,
    height: int = 97,
    seed: int = 0,
) -> Path:
    """Write an FPUS23-shaped dataset (PNG frames + CVAT 1.1 XML per stream) under ``root``.

    Streams are named ``stream_<pose>_<sweep>_<probe>`` (a repeat gets a ``_2`` suffix, so names are not
    perfectly regular); every fourth stream has no Probe tags (readers fall back to the name).

    Example:
        >>> root = make_synthetic_fpus23("/tmp/fpus", n_streams=4, frames_per_stream=5)  # doctest: +SKIP
        >>> len(list((root / "four_poses").iterdir()))  # doctest: +SKIP
        4
    """
    settings = dict(
        n_streams=n_streams, frames_per_stream=frames_per_stream, width=width, height=height, seed=seed
    )
    root = _fresh(Path(root))
    rng = np.random.default_rng(seed)
    sweeps = list(SWEEPS)
    used: dict[str, int] = {}
    for s in range(n_streams):
        pose = POSES[s % len(POSES)]
        # Cycle through the views so that every split gets a mix; longrec (no view tag) now and then.
        sweep = sweeps[(s + s // 4) % 4] if (s + 1) % 6 else "longrec"
        probe = "h" if rng.random() < 0.5 else "v"
        name = f"stream_{pose}_{sweep}_{probe}"
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name}_{used[name]}"
        frames = root / "four_poses" / name
        frames.mkdir(parents=True)
        body = _fpus_stream(
            rng, frames, pose, SWEEPS[sweep], probe, s % 4 != 3, frames_per_stream, width, height
        )
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n'
            f"    <task>\n      <name>{name}</name>\n      <size>{frames_per_stream}</size>\n"
            f"      <mode>annotation</mode>\n{_LABELS_XML}    </task>\n  </meta>\n{body}</annotations>\n"
        )
        ann = root / "boxes" / "annotation" / name
        ann.mkdir(parents=True)
        (ann / "annotations.xml").write_text(xml, encoding="utf-8")
    _write_stamp(root, "fpus23", settings)
    return root


__all__ = [
    "GENERATOR_VERSION",
    "holds_foreign_files",
    "make_synthetic_food101",
    "make_synthetic_fpus23",
    "read_stamp",
    "stamp",
]
