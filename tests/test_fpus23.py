"""FPUS23 reader: every frame and box of the five real CVAT files, tags, tasks, grouped splits, bad input."""

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmkit.data import DataError, DataWarning, make_synthetic_fpus23, read_fpus23
from mmkit.data.fpus23 import describe

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLE = SHARED / "data" / "fpus23_annotations_sample" / "annotation"


def _count(xml: str) -> dict:
    """An independent, regex-level count of what one CVAT file holds."""
    images = re.findall(r"<image [^>]*>.*?</image>", xml, flags=re.S)
    return {
        "frames": len(images),
        "boxes": xml.count("<box "),
        "head_frames": sum('<box label="head"' in im for im in images),
        "names": re.findall(r'<image [^>]*name="([^"]+)"', xml),
        "planes": xml.count('<tag label="diagnostic_plane"'),
        "probe_tags": xml.count('<tag label="Probe"'),
    }


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not SAMPLE.is_dir():
        pytest.skip(
            f"real FPUS23 annotations not found at {SAMPLE} (the shared folder sits next to the repo)"
        )
    root = tmp_path_factory.mktemp("fpus")
    counts = {}
    tiny = Image.new("L", (4, 3), 7)
    for xml_path in sorted(SAMPLE.glob("*/annotations.xml")):
        stream = xml_path.parent.name
        dest = root / "boxes" / "annotation" / stream
        dest.mkdir(parents=True)
        shutil.copy(xml_path, dest / "annotations.xml")
        counts[stream] = c = _count(xml_path.read_text(encoding="utf-8"))
        (root / "four_poses" / stream).mkdir(parents=True)
        for name in c["names"]:
            tiny.save(root / "four_poses" / stream / name)
    assert len(counts) == 5
    return root, counts


def test_every_frame_and_box_of_the_real_files(real):
    root, counts = real
    ds = read_fpus23(root, unboxed_streams="keep")
    recs = [r for split in ds.splits.values() for r in split]
    assert ds.skipped == []
    assert len(recs) == sum(c["frames"] for c in counts.values())
    assert sum(len(r.meta["boxes"]) for r in recs) == sum(c["boxes"] for c in counts.values())
    for stream, c in counts.items():
        mine = [r for r in recs if r.group == stream]
        assert sorted(r.meta["frame"] for r in mine) == sorted(c["names"])
        assert sum(r.label == "head" for r in mine) == c["head_frames"]
        assert sum("diagnostic_plane/plane" in r.meta["tags"] for r in mine) == c["planes"]
    assert ds.classes == ["no_head", "head"] and ds.task == "multiclass"


def test_tags_and_fallbacks(real):
    root, counts = real
    ds = read_fpus23(root, unboxed_streams="keep")
    recs = {r.id: r for split in ds.splits.values() for r in split}
    r = recs["stream_hdvb_aroundabd_h/frame_000360.png"]
    assert r.meta["tags"] == {
        "Orientation/Pose": "hdvb",
        "location/View_fetus": "abdomen",
        "Probe/orientation": "h",
    }
    assert sorted(b["label"] for b in r.meta["boxes"]) == ["abdomen", "arm", "arm"]
    assert r.meta["boxes"][0]["xtl"] == pytest.approx(280.0)
    assert (
        r.text == "Fetal phantom ultrasound: head down, back view; horizontal probe; sweep over the abdomen."
    )
    # This stream has no Probe tags: the stream name fills in, and says so.
    assert counts["stream_hdvb_aroundarms_v"]["probe_tags"] == 0
    arms = recs["stream_hdvb_aroundarms_v/frame_000050.png"]  # its location tag appears twice
    assert arms.meta["tags"]["Probe/orientation"] == "v"
    assert arms.meta["tag_source"] == {
        "Orientation/Pose": "xml",
        "location/View_fetus": "xml",
        "Probe/orientation": "stream name",
    }


def test_organs_task_and_view_option(real):
    root, _ = real
    ds = read_fpus23(root, task="organs", include_view=False, unboxed_streams="keep")
    assert ds.task == "multilabel" and ds.classes == ["head", "arm", "abdomen", "legs"]
    for split in ds.splits.values():
        for r in split:
            assert r.label == [o for o in ds.classes if o in {b["label"] for b in r.meta["boxes"]}]
            assert "sweep" not in r.text and r.text.startswith("Fetal phantom ultrasound:")
    y = ds.targets("train")
    assert y.shape == (len(ds.records("train")), 4) and y.dtype.name == "float32"


def test_splits_are_grouped_by_stream(real):
    root, _ = real
    ds = read_fpus23(root, unboxed_streams="keep", seed=3)
    groups = {k: {r.group for r in v} for k, v in ds.splits.items()}
    assert all(groups.values())
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])


def test_unboxed_streams_are_kept_by_default_as_the_paper_does(real):
    root, counts = real
    n_all = sum(c["frames"] for c in counts.values())
    n_long = counts["stream_huvb_longrec_v"]["frames"]
    assert counts["stream_huvb_longrec_v"]["boxes"] == 0
    with pytest.warns(
        DataWarning, match=rf"1 streams have no box.*'keep' uses {n_all} frames, 'drop' {n_all - n_long}"
    ):
        ds = read_fpus23(root)  # the default: the paper's protocol
    assert sum(map(len, ds.splits.values())) == n_all and ds.skipped == []
    long = [r for s in ds.splits.values() for r in s if r.group == "stream_huvb_longrec_v"]
    assert len(long) == n_long and {r.label for r in long} == {"no_head"}
    meta = ds.meta["unboxed_streams"]
    assert meta == {
        "choice": "keep",
        "streams": {"stream_huvb_longrec_v": n_long},
        "frames": n_long,
        "frames_if_keep": n_all,
        "frames_if_drop": n_all - n_long,
    }
    assert any("no box in any frame" in w for w in ds.meta["warnings"])

    dropped = read_fpus23(root, unboxed_streams="drop")
    assert sum(map(len, dropped.splits.values())) == n_all - n_long and dropped.skipped == []
    assert dropped.meta["unboxed_streams"]["choice"] == "drop"

    with pytest.raises(
        DataError,
        match=r"stream_huvb_longrec_v.*annotations.xml: stream with no boxes.*notebook parameter "
        r"unboxed_streams = 'keep' \(Python: unboxed_streams='keep'",
    ):
        read_fpus23(root, unboxed_streams="raise")
    ds = read_fpus23(root, unboxed_streams="raise", on_error="skip")
    assert [Path(s.file).parent.name for s in ds.skipped] == ["stream_huvb_longrec_v"]
    assert sum(map(len, ds.splits.values())) == n_all - n_long
    with pytest.raises(ValueError, match="unboxed_streams must be one of"):
        read_fpus23(root, unboxed_streams="report")


def test_box_labels_differing_by_case_or_plural_are_mapped(tmp_path):
    root = make_synthetic_fpus23(tmp_path / "s", n_streams=4, frames_per_stream=4, width=48, height=28)
    before = read_fpus23(root, task="organs")
    xmls = sorted((root / "boxes" / "annotation").glob("*/annotations.xml"))
    text = xmls[0].read_text()
    assert '<box label="head"' in text or '<box label="arm"' in text
    text = text.replace('<box label="head"', '<box label="Head"').replace(
        '<box label="arm"', '<box label="arms"'
    )
    xmls[0].write_text(text)
    xmls[1].write_text(xmls[1].read_text().replace('<box label="legs"', '<box label="placenta"', 1))
    with pytest.warns(DataWarning, match=r"1 boxes carry labels that name none of.*'placenta': 1"):
        ds = read_fpus23(root, task="organs")
    label = {r.id: r.label for s in ds.splits.values() for r in s}
    label_before = {r.id: r.label for s in before.splits.values() for r in s}
    changed = {k for k in label if label[k] != label_before[k]}
    assert (
        all(k.startswith(xmls[1].parent.name) for k in changed) and len(changed) <= 1
    )  # only the placenta box
    assert ds.meta["unknown_box_labels"] == {"placenta": 1}
    assert set(ds.meta["mapped_box_labels"]) <= {"Head", "arms"} and ds.meta["mapped_box_labels"]
    boxes = [b for s in ds.splits.values() for r in s for b in r.meta["boxes"] if "raw_label" in b]
    assert {(b["raw_label"], b["label"]) for b in boxes} <= {("Head", "head"), ("arms", "arm")}


def test_describe():
    assert describe({}) == ""
    assert describe({"Orientation/Pose": "huvf", "diagnostic_plane/plane": "Femur_plane"}) == (
        "Fetal phantom ultrasound: head up, front view; femur plane."
    )


# --- bad input on a small synthetic copy -------------------------------------------------------------------


@pytest.fixture
def small(tmp_path):
    return make_synthetic_fpus23(tmp_path / "s", n_streams=4, frames_per_stream=4, width=48, height=28)


def test_malformed_xml(small):
    xml = next((small / "boxes" / "annotation").glob("*/annotations.xml"))
    xml.write_text(xml.read_text()[:-200])
    with pytest.raises(DataError, match=r"annotations.xml, line \d+, column \d+: malformed XML.*re-export"):
        read_fpus23(small)
    ds = read_fpus23(small, on_error="skip")
    assert len(ds.skipped) == 1 and sum(map(len, ds.splits.values())) == 12


def test_missing_and_corrupt_frames(small):
    stream = sorted((small / "four_poses").iterdir())[0]
    (stream / "frame_000001.png").unlink()
    with pytest.raises(
        DataError,
        match=rf"{stream.name}/frame_000001.png, annotations.xml frame frame_000001.png \(id 1\): missing image",
    ):
        read_fpus23(small)
    (stream / "frame_000002.png").write_bytes((stream / "frame_000002.png").read_bytes()[:60])
    ds = read_fpus23(small, on_error="skip")
    assert sorted(s.problem.split(":")[0] for s in ds.skipped) == ["corrupt image", "missing image"]
    assert sum(map(len, ds.splits.values())) == 14


def test_conflicting_tags_and_no_tags(small):
    xml = next((small / "boxes" / "annotation").glob("*/annotations.xml"))
    text = xml.read_text()
    text = re.sub(
        r"(<image id=\"3\"[^>]*>)",
        r'\1<tag label="Orientation"><attribute name="Pose">huvf</attribute></tag>',
        text,
    )
    xml.write_text(text)
    with pytest.raises(
        DataError, match=r"frame frame_000003.png \(id 3\): conflicting tags: Orientation/Pose"
    ):
        read_fpus23(small)
    # A frame with no tags in a stream whose name gives no fallback has no text.
    stream = xml.parent.name
    xml.write_text(re.sub(r"<tag .*?</tag>", "", text, flags=re.S))
    for sub in ("boxes/annotation", "four_poses"):
        (small / sub / stream).rename(small / sub / "odd_name")
    with pytest.raises(
        DataError, match=r"odd_name/annotations.xml, frame frame_000000.png \(id 0\): empty text"
    ):
        read_fpus23(small)
    ds = read_fpus23(small, on_error="skip")
    assert len(ds.skipped) == 4 and {s.problem for s in ds.skipped} == {"empty text: the frame has no tags"}


def test_grouped_split_keeps_every_class_in_every_split(tmp_path):
    root = make_synthetic_fpus23(tmp_path / "d", n_streams=12, frames_per_stream=6, width=40, height=24)
    tests = set()
    for seed in range(4):
        ds = read_fpus23(root, seed=seed)
        for split in ("train", "val", "test"):
            y = ds.targets(split)
            assert len(y) and 0 < y.mean() < 1, (seed, split)
        groups = [{r.group for r in ds.records(s)} for s in ("train", "val", "test")]
        assert sum(map(len, groups)) == len(set().union(*groups)) == 12
        tests.add(frozenset(groups[2]))
    assert len(tests) > 1  # seeds still move the split


def test_frame_files_missing_from_the_xml_are_counted(small):
    stream = sorted((small / "four_poses").iterdir())[0]
    Image.new("L", (4, 4)).save(stream / "frame_000099.png")
    ds = read_fpus23(small)
    assert ds.meta["unannotated_frames"] == {stream.name: 1}
    assert sum(map(len, ds.splits.values())) == 16 and ds.skipped == []


def test_malformed_number_names_the_file_and_frame(small):
    xml = next((small / "boxes" / "annotation").glob("*/annotations.xml"))
    text = re.sub(r'(<image id="2"[^>]*>\s*<box [^>]*?)xtl="[^"]+"', r'\1xtl="12,5"', xml.read_text())
    assert 'xtl="12,5"' in text
    xml.write_text(text)
    with pytest.raises(
        DataError,
        match=r"annotations.xml, frame frame_000002.png \(id 2\): malformed <image> or <box> attribute.*12,5",
    ):
        read_fpus23(small)
    ds = read_fpus23(small, on_error="skip")
    assert [s.where for s in ds.skipped] == ["frame frame_000002.png (id 2)"]
    assert sum(map(len, ds.splits.values())) == 15


def test_frame_folder_without_annotations_is_counted(small):
    extra = small / "four_poses" / "stream_hdvb_aroundhead_h_9"
    extra.mkdir()
    for i in range(3):
        Image.new("L", (4, 4)).save(extra / f"frame_{i:06d}.png")
    ds = read_fpus23(small)
    assert ds.meta["unannotated_frames"] == {extra.name: 3}
    assert sum(map(len, ds.splits.values())) == 16 and ds.skipped == []
