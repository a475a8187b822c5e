"""FPUS23: fetal phantom ultrasound video frames with CVAT boxes and per-frame tags.

On disk::

    root/four_poses/<stream>/frame_XXXXXX.png
    root/boxes/annotation/<stream>/annotations.xml     # CVAT for images 1.1

The XML is the truth. Each ``<image>`` holds ``<box label="head|arm|abdomen|legs" xtl= ytl= xbr= ybr=>``
elements and ``<tag label="...">`` elements with one ``<attribute name="...">value</attribute>`` each:
Orientation/Pose (hdvb, hdvf, huvb, huvf), Probe/orientation (h, v), location/View_fetus (abdomen, head,
legs, arms) and sometimes diagnostic_plane/plane. Many frames lack some tags (a whole stream may have no
Probe tags); the stream name (``stream_<pose>_<sweep>_<probe>``) fills in pose and probe only as a fallback,
and ``Record.meta["tag_source"]`` says where each value came from. Tags repeated within a frame are merged;
tags whose values conflict are reported.

Tasks: ``head`` (the published binary task: is a head box present) and ``organs`` (multi-label: which of the
four organs have a box). The text of a frame is a short clinical description of its tags; the view field
nearly names the label, so ``include_view=False`` leaves it out. Splits are grouped by stream: neighbouring
frames are near duplicates, so no stream is in two splits.

Example:
    >>> ds = read_fpus23("data/synthetic_fpus23", task="organs", include_view=False)  # doctest: +SKIP
    >>> ds.records("train")[0].text  # doctest: +SKIP
    'Fetal phantom ultrasound: head down, back view; horizontal probe.'
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from mmkit.data.records import (
    DataError,
    Dataset,
    ErrorPolicy,
    Record,
    grouped_split,
    hint,
    image_problem,
    log,
    warn,
    warn_split_shape,
)
from mmkit.progress import progress

ORGANS = ["head", "arm", "abdomen", "legs"]
# Box labels that differ from an organ only by case, spaces or number ("Head", "arms", "leg").
_ORGAN_OF = {
    **{o: o for o in ORGANS},
    **{"heads": "head", "arms": "arm", "abdomens": "abdomen", "leg": "legs"},
}
UNBOXED_CHOICES = ("keep", "drop", "raise")
TAG_FIELDS = ["Orientation/Pose", "Probe/orientation", "location/View_fetus", "diagnostic_plane/plane"]
_TAG_LABEL_OF = dict(reversed(f.split("/")) for f in TAG_FIELDS)  # attribute name -> its tag label
DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}  # row shares; the paper's test is 20%
_STREAM_NAME = re.compile(r"^stream_(hd|hu)(vb|vf)_([a-z]+)_(h|v)(?:_.*)?$")
_POSE_WORDS = {"hd": "head down", "hu": "head up", "vb": "back view", "vf": "front view"}
_PROBE_WORDS = {"h": "horizontal probe", "v": "vertical probe"}
_VIEW_WORDS = {"abdomen": "abdomen", "head": "head", "legs": "legs", "arms": "arms"}
_PLANE_WORDS = {"Head_plane": "head plane", "Abd_plane": "abdominal plane", "Femur_plane": "femur plane"}


def describe(tags: dict[str, str], include_view: bool = True) -> str:
    """A short clinical description of a frame's tags ('' when it has none).

    Example:
        >>> describe({"Orientation/Pose": "hdvb", "Probe/orientation": "h", "location/View_fetus": "abdomen"})
        'Fetal phantom ultrasound: head down, back view; horizontal probe; sweep over the abdomen.'
        >>> describe({"Orientation/Pose": "hdvb", "location/View_fetus": "abdomen"}, include_view=False)
        'Fetal phantom ultrasound: head down, back view.'
    """
    parts = []
    pose = tags.get("Orientation/Pose")
    if pose:
        words = [_POSE_WORDS.get(pose[:2]), _POSE_WORDS.get(pose[2:])]
        parts.append(", ".join(w for w in words if w) if all(words) else f"pose {pose}")
    probe = tags.get("Probe/orientation")
    if probe:
        parts.append(_PROBE_WORDS.get(probe, f"probe {probe}"))
    view = tags.get("location/View_fetus")
    if view and include_view:
        parts.append(f"sweep over the {_VIEW_WORDS.get(view, view)}")
    plane = tags.get("diagnostic_plane/plane")
    if plane:
        parts.append(_PLANE_WORDS.get(plane, plane.replace("_", " ")))
    return f"Fetal phantom ultrasound: {'; '.join(parts)}." if parts else ""


def organ_of(label: Optional[str]) -> Optional[str]:
    """The organ a box label names, ignoring case, spaces and plural (None when it names none).

    Example:
        >>> organ_of("Head"), organ_of(" arms "), organ_of("placenta")
        ('head', 'arm', None)
    """
    return _ORGAN_OF.get((label or "").strip().lower())


def stream_name_tags(stream: str) -> dict[str, str]:
    """Pose and probe parsed from a stream name like ``stream_hdvb_aroundabd_h`` ({} when it doesn't fit).

    Example:
        >>> stream_name_tags("stream_hdvb_aroundabd_h")
        {'Orientation/Pose': 'hdvb', 'Probe/orientation': 'h'}
    """
    m = _STREAM_NAME.match(stream)
    return {"Orientation/Pose": m.group(1) + m.group(2), "Probe/orientation": m.group(4)} if m else {}


def find_annotation_files(root: str | Path) -> dict[str, Path]:
    """Stream name -> its annotations.xml, under ``root/boxes/annotation/`` (or ``root/annotation/``)."""
    root = Path(root)
    for base in (root / "boxes" / "annotation", root / "annotation"):
        if base.is_dir():
            return {p.parent.name: p for p in sorted(base.glob("*/annotations.xml"))}
    return {}


def parse_cvat(xml_path: str | Path, policy: Optional[ErrorPolicy] = None) -> Optional[list[dict[str, Any]]]:
    """Parse one CVAT-for-images 1.1 file into a list of frames (None when skipped as malformed).

    Each frame: ``{"id", "name", "width", "height", "boxes": [{"label", "xtl", "ytl", "xbr", "ybr",
    "occluded", "attributes"}], "tags": {"Label/attribute": value}, "conflicts": [...]}``.

    Example:
        >>> frames = parse_cvat("boxes/annotation/stream_hdvb_aroundabd_h/annotations.xml")  # doctest: +SKIP
        >>> frames[0]["tags"]["Orientation/Pose"]  # doctest: +SKIP
        'hdvb'
    """
    policy = policy or ErrorPolicy("raise")
    xml_path = Path(xml_path)
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as e:
        line, col = e.position
        policy.report(
            xml_path,
            f"line {line}, column {col}",
            f"malformed XML: {e}",
            "re-export the stream from CVAT (format 'CVAT for images 1.1') or fix the file",
        )
        return None
    frames = []
    for image in tree.getroot().iter("image"):
        try:
            frames.append(_parse_frame(image, len(frames)))
        except ValueError as e:  # a number that is not one (id, size, box corner)
            policy.report(
                xml_path,
                f"frame {image.get('name', '')} (id {image.get('id')})",
                f"malformed <image> or <box> attribute: {e}",
                "re-export the stream from CVAT (format 'CVAT for images 1.1') or fix the value",
            )
    return frames


def _parse_frame(image: ET.Element, default_id: int) -> dict[str, Any]:
    """One ``<image>`` element as a frame dict (see ``parse_cvat``); ValueError on a malformed number."""
    boxes, tags, conflicts = [], {}, []
    for box in image.findall("box"):
        attrs = {a.get("name"): (a.text or "").strip() for a in box.findall("attribute")}
        boxes.append(
            {
                "label": box.get("label"),
                **{k: float(box.get(k, "nan")) for k in ("xtl", "ytl", "xbr", "ybr")},
                "occluded": box.get("occluded") == "1",
                "attributes": attrs,
            }
        )
    found = [
        (t.get("label"), a.get("name"), (a.text or "").strip())
        for t in image.findall("tag")
        for a in t.findall("attribute")
    ]
    # Some exports put frame-level fields on the boxes instead of tags: use them where no tag says otherwise.
    for b in boxes:
        for name, value in b["attributes"].items():
            if name in _TAG_LABEL_OF:
                found.append((_TAG_LABEL_OF[name], name, value))
    for label, name, value in found:
        key = f"{label}/{name}"
        if key in tags and tags[key] != value:
            conflicts.append(f"{key}: {tags[key]!r} vs {value!r}")
        tags.setdefault(key, value)
    return {
        "id": int(image.get("id", default_id)),
        "name": image.get("name", ""),
        "width": int(float(image.get("width", 0))),
        "height": int(float(image.get("height", 0))),
        "boxes": boxes,
        "tags": tags,
        "conflicts": conflicts,
    }


def balanced_grouped_split(
    records: list[Record],
    fractions: dict[str, float],
    seed: int,
    min_share: float = 0.05,
    candidates: int = 16,
    collect: Optional[list[str]] = None,
) -> tuple[dict[str, list[Record]], int]:
    """A grouped split (no stream in two splits) at the row shares ``fractions`` that keeps every class in
    every split where it can.

    ``grouped_split`` already aims at the row shares and keeps every class in train; with few streams it
    can still leave a split with almost no positive frame, which makes its metrics meaningless. This draws
    seeded grouped splits (the first with ``seed`` itself) and keeps the first in which every class makes
    up at least ``min_share`` of every non-empty split; when none of ``candidates`` does, the one whose
    rarest class share is largest. Taking the first that qualifies, not the best, keeps different seeds
    giving different splits. Returns the splits and the chosen seed.
    """
    rng = np.random.default_rng(seed)
    classes = sorted({lab for r in records for lab in r.labels})
    best, best_score, best_seed = None, -1.0, seed
    for i in range(candidates):
        cand_seed = seed if i == 0 else int(rng.integers(2**31))
        splits = grouped_split(records, fractions, cand_seed, report=False)
        score = 1.0
        for name, recs in splits.items():
            if recs:
                for c in classes:
                    n = sum(c in r.labels for r in recs)
                    score = min(score, n / len(recs) if n or name != "train" else -0.5)  # train: every class
        if score > best_score:
            best, best_score, best_seed = splits, score, cand_seed
        if score >= min_share:
            break
    if best is None:
        best = grouped_split(records, fractions, seed, report=False)
    warn_split_shape(best, fractions, records, collect)
    return best, best_seed


def read_fpus23(
    root: str | Path,
    task: Literal["head", "organs"] = "head",
    include_view: bool = True,
    seed: int = 0,
    fractions: Optional[dict[str, float]] = None,
    on_error: Literal["raise", "skip"] = "raise",
    unboxed_streams: Literal["keep", "drop", "raise"] = "keep",
    check_images: Literal["fast", "full", "none"] = "fast",
) -> Dataset:
    """Read FPUS23 (or a synthetic copy in the same layout) into a ``Dataset`` split by stream.

    ``task="head"``: classes ``["no_head", "head"]``; ``task="organs"``: multi-label over
    ``["head", "arm", "abdomen", "legs"]`` (``Record.label`` is a list). ``fractions`` are shares of the
    *frames* per split (default 70/10/20: the paper's test set is 20% of the frames), met as closely as
    whole streams allow, with every class in every split where the streams allow it
    (``balanced_grouped_split``).

    ``unboxed_streams``: what to do with a stream whose XML has no box in any frame (the official data has
    8 such ``*_longrec_*`` streams, 5,563 of its 15,113 frames). ``"keep"`` (default) keeps them as frames
    with no organ (``no_head``), which is the paper's protocol (its 71.2% majority class is
    1 - 4,370 head frames / 15,113); ``"drop"`` leaves them out, for a task on box-annotated streams
    only; ``"raise"`` reports them as bad input (an error, or skipped and listed under ``on_error="skip"``).
    A warning and ``ds.meta["unboxed_streams"]`` say how many frames each choice keeps. Box labels that
    differ from an organ only by case or plural ("Head", "arms") are mapped to it; other labels are
    counted in a warning and ``ds.meta["unknown_box_labels"]``. ``Record.meta`` holds the frame's tags,
    their sources and boxes.

    Example:
        >>> ds = read_fpus23("data/synthetic_fpus23", task="head", seed=0)  # doctest: +SKIP
        >>> ds.classes, sorted({r.group for r in ds.records("test")})  # doctest: +SKIP
    """
    if task not in ("head", "organs"):
        raise ValueError(f"task must be 'head' or 'organs', got {task!r}")
    if unboxed_streams not in UNBOXED_CHOICES:
        raise ValueError(f"unboxed_streams must be one of {UNBOXED_CHOICES}, got {unboxed_streams!r}")
    root = Path(root)
    annotations = find_annotation_files(root)
    if not annotations:
        raise DataError(
            root,
            None,
            "no annotation files found (expected boxes/annotation/<stream>/annotations.xml)",
            "point the notebook parameter data_root (Python: read_fpus23(root), or DataConfig(data_root=...)) "
            "at the FPUS23 folder that holds four_poses/ and boxes/",
        )
    policy = ErrorPolicy(on_error)
    records: list[Record] = []
    warnings_: list[str] = []
    unboxed: dict[str, int] = {}
    n_xml_frames = 0
    mapped: Counter = Counter()
    unknown: Counter = Counter()
    n_boxes = 0
    unannotated: dict[str, int] = {}
    for stream, xml_path in progress(annotations.items(), desc="fpus23 streams", leave=False):
        frames = parse_cvat(xml_path, policy)
        if frames is None:
            continue
        if not frames:
            policy.report(xml_path, None, "no frames (<image> elements)", "re-export the stream from CVAT")
            continue
        n_xml_frames += len(frames)
        if not any(f["boxes"] for f in frames):
            unboxed[stream] = len(frames)
            if unboxed_streams == "drop":
                continue
            if unboxed_streams == "raise":
                policy.report(
                    xml_path,
                    None,
                    f"stream with no boxes in any of its {len(frames)} frames (probably never box-annotated)",
                    f"{hint('unboxed_streams', 'keep')} to use its frames as frames with no organ (the "
                    f"paper's protocol), or unboxed_streams='drop' to leave it out",
                )
                continue
        fallback = stream_name_tags(stream)
        frame_dir = root / "four_poses" / stream
        if frame_dir.is_dir():  # frame files the XML doesn't mention: not samples, but worth knowing about
            named = {Path(f["name"]).name for f in frames}
            extra = sum(p.name not in named for p in frame_dir.glob("*.png"))
            if extra:
                unannotated[stream] = extra
                log.warning("%s: %d frame files are not in %s; they are not read", frame_dir, extra, xml_path)
        for f in sorted(frames, key=lambda f: f["id"]):
            where = f"frame {f['name']} (id {f['id']})"
            if f["conflicts"]:
                policy.report(
                    xml_path, where, "conflicting tags: " + "; ".join(f["conflicts"]), "fix the tags in CVAT"
                )
                continue
            tags = dict(f["tags"])
            source = {k: "xml" for k in tags}
            for k, v in fallback.items():
                if k not in tags:
                    tags[k], source[k] = v, "stream name"
            text = describe(tags, include_view)
            if not text:
                policy.report(xml_path, where, "empty text: the frame has no tags", "tag the frame in CVAT")
                continue
            path = frame_dir / f["name"]
            if not path.is_file() and (frame_dir / Path(f["name"]).name).is_file():
                path = frame_dir / Path(f["name"]).name  # CVAT names may carry a folder prefix
            problem = image_problem(path, check_images)
            if problem:
                policy.report(path, f"{xml_path.name} {where}", problem, "restore the frame file")
                continue
            for b in f["boxes"]:
                organ = organ_of(b["label"])
                if organ is None:
                    unknown[b["label"]] += 1
                elif organ != b["label"]:
                    mapped[b["label"]] += 1
                    b["raw_label"], b["label"] = b["label"], organ
            present = {b["label"] for b in f["boxes"]}
            label: str | list[str] = (
                ("head" if "head" in present else "no_head")
                if task == "head"
                else [o for o in ORGANS if o in present]
            )
            n_boxes += len(f["boxes"])
            meta = {
                "stream": stream,
                "frame": f["name"],
                "frame_id": f["id"],
                "width": f["width"],
                "height": f["height"],
                "tags": tags,
                "tag_source": source,
                "boxes": f["boxes"],
            }
            records.append(Record(f"{stream}/{f['name']}", path, text, label, stream, meta))
    # Frame folders with no annotations.xml at all: not samples either, and a whole stream is worth a word.
    for frame_dir in sorted(
        p for p in (root / "four_poses").glob("*") if p.is_dir() and p.name not in annotations
    ):
        extra = sum(1 for _ in frame_dir.glob("*.png"))
        if extra:
            unannotated[frame_dir.name] = extra
            log.warning("%s: %d frame files have no annotations.xml; they are not read", frame_dir, extra)
    unboxed_meta = _unboxed_report(unboxed, n_xml_frames, unboxed_streams, warnings_)
    if mapped:
        log.info("%s: box labels mapped to organs: %s", root, dict(mapped))
    if unknown:
        warn(
            f"{root}: {sum(unknown.values())} boxes carry labels that name none of {ORGANS}: {dict(unknown)}; "
            "they count for no organ (fix the labels in CVAT if they are organs)",
            warnings_,
        )
    splits, split_seed = balanced_grouped_split(
        records, dict(fractions or DEFAULT_FRACTIONS), seed, collect=warnings_
    )
    for name in ("train", "val", "test"):
        splits.setdefault(name, [])
    policy.log_summary(str(root))
    return Dataset(
        name="fpus23",
        classes=["no_head", "head"] if task == "head" else list(ORGANS),
        splits=splits,
        task="multiclass" if task == "head" else "multilabel",
        skipped=policy.skipped,
        meta={
            "root": str(root),
            "task": task,
            "include_view": include_view,
            "seed": seed,
            "n_boxes": n_boxes,
            "split_seed": split_seed,
            "unannotated_frames": unannotated,
            "unboxed_streams": unboxed_meta,
            "mapped_box_labels": dict(mapped),
            "unknown_box_labels": dict(unknown),
            "fractions": dict(fractions or DEFAULT_FRACTIONS),
            "warnings": warnings_,
        },
    )


def _unboxed_report(unboxed: dict[str, int], n_frames: int, choice: str, collect: list[str]) -> dict:
    """How many frames each ``unboxed_streams`` choice keeps, as a warning and for ``ds.meta``."""
    n_unboxed = sum(unboxed.values())
    report = {
        "choice": choice,
        "streams": dict(unboxed),
        "frames": n_unboxed,
        "frames_if_keep": n_frames,
        "frames_if_drop": n_frames - n_unboxed,
    }
    if unboxed:
        did = {
            "keep": "kept as frames with no organ (no_head), the paper's protocol",
            "drop": "dropped",
            "raise": "reported as bad input",
        }[choice]
        warn(
            f"{len(unboxed)} streams have no box in any frame ({n_unboxed} of {n_frames} frames: "
            f"{', '.join(sorted(unboxed))}); unboxed_streams={choice!r}: {did}. 'keep' uses {n_frames} frames, "
            f"'drop' {n_frames - n_unboxed}",
            collect,
        )
    return report


__all__ = [
    "ORGANS",
    "balanced_grouped_split",
    "describe",
    "find_annotation_files",
    "parse_cvat",
    "read_fpus23",
    "stream_name_tags",
]
