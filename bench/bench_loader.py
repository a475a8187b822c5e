"""Views per second: mmkit's decode-once batch loader against the seed's torchvision pipeline.

Both run on the same photo-like JPEGs (~500x375, generated here into a temp folder), in the same process,
with the same number of DataLoader workers and the same batch of views; both include normalisation (the
seed normalises each view in its transform, mmkit once per batch with ``normalize``). The seed decodes
every view from disk with PIL; mmkit decodes each image once per batch and draws M views of it.

Where the time goes (single-core CPU time per view, 500x375 -> 224, measured 2026-11-29 on the shared
2-core box): the seed ~2.7-3.0 ms (PIL decode 0.85, antialiased resize 0.8, rotate, ToTensor, Normalize);
mmkit decode 0.8 + resize 0.2 once per image, then ~0.3 ms per view (albumentations Rotate 244 + crop + flips,
half of it albumentations' own per-call overhead) and ~0.1-0.2 ms per view for normalize() on the CPU. At
M=4 that bounds the ratio near 4x with CPU normalisation and 5x without, before DataLoader IPC overheads.

    .venv/bin/python bench/bench_loader.py            # writes bench/results/loader.json
    .venv/bin/python bench/bench_loader.py --images 32 --repeats 1 --views 256   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mmkit.augment import make_loader, normalize  # noqa: E402
from mmkit.data.records import Dataset, Record  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "loader.json"


def photo_like(rng: np.random.Generator, w: int = 500, h: int = 375) -> Image.Image:
    """Multi-octave coloured noise (smooth blobs to fine grain) plus a few shapes: JPEG-compresses like a photo."""
    img = np.zeros((h, w, 3), np.float32)
    for cells, weight in ((3, 90.0), (12, 50.0), (48, 30.0), (160, 18.0)):
        small = rng.random((max(2, cells * h // w), cells, 3)).astype(np.float32)
        up = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        img += (np.asarray(up, np.float32) / 255.0 - 0.5) * weight
    img += 128 + rng.normal(0, 6, img.shape)  # sensor-like grain
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        x1, y1 = x0 + int(rng.integers(30, 200)), y0 + int(rng.integers(30, 150))
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


def make_images(root: Path, n: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        p = root / f"photo_{i:03d}.jpg"
        photo_like(rng).save(p, quality=90)
        recs.append(Record(id=p.name, image_path=p, text=f"photo {i}", label="a"))
    return Dataset("bench", ["a"], {"train": recs, "val": [], "test": []})


class SeedPipeline(torch.utils.data.Dataset):
    """The published notebooks' training data path: PIL decode of every view, then their transforms."""

    def __init__(self, paths: list[Path], copies: int):
        self.paths, self.copies = paths, copies
        self.tf = T.Compose(
            [
                T.Resize((244, 244)),
                T.RandomRotation(15),
                T.RandomCrop(224),
                T.RandomHorizontalFlip(),
                T.RandomVerticalFlip(),
                T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self) -> int:
        return (
            len(self.paths) * self.copies
        )  # M views of a sample = M independent reads, as the seed would do

    def __getitem__(self, i: int):
        return self.tf(Image.open(self.paths[i // self.copies]).convert("RGB")), 0


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (the DataLoader workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


class Timer:
    """Wall-clock and CPU seconds over a block; CPU seconds do not depend on what else runs on the machine."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu


def time_seed(paths: list[Path], copies: int, batch: int, workers: int, epochs: int) -> tuple[float, float]:
    """(views per wall-clock second, views per CPU second)."""
    loader = torch.utils.data.DataLoader(
        SeedPipeline(paths, copies),
        batch_size=batch * copies,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in loader:  # warm-up epoch: worker start-up, page cache
        pass
    views = 0
    with Timer() as t:
        for _ in range(epochs):
            for x, _y in loader:
                views += x.shape[0]
    return views / t.wall, views / t.cpu


def time_mmkit(
    ds: Dataset, copies: int, batch: int, workers: int, epochs: int, norm: bool = True
) -> tuple[float, float]:
    """``norm``: normalise each batch on the CPU in the main process (what a CPU training loop pays); without
    it, the uint8 batches as they would be handed to an accelerator, which normalises them itself."""
    loader = make_loader(ds, "train", batch_size=batch, copies=copies, preset="seed", num_workers=workers)
    for b in loader:  # warm-up epoch
        normalize(b["image"], "imagenet")
    views = 0
    with Timer() as t:
        for _ in range(epochs):
            for b in loader:
                x = normalize(b["image"], "imagenet") if norm else b["image"]  # once per batch
                views += x.shape[0]
    return views / t.wall, views / t.cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16, help="samples per batch (views = batch x M)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--views", type=int, default=1024, help="views per timed measurement (whole epochs)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating measurements; the median is kept")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(1)

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_images(Path(tmp), args.images)
        paths = [r.image_path for r in ds.records("train")]
        mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        for m in (1, 4):
            epochs = max(1, -(-args.views // (args.images * m)))  # same number of views at M=1 and M=4
            runs: dict[str, list[tuple[float, float]]] = {"mmkit": [], "mmkit_uint8": [], "seed": []}
            for _ in range(args.repeats):  # alternate so that load from other processes hits all alike
                runs["mmkit"].append(time_mmkit(ds, m, args.batch, args.workers, epochs))
                runs["mmkit_uint8"].append(time_mmkit(ds, m, args.batch, args.workers, epochs, norm=False))
                runs["seed"].append(time_seed(paths, m, args.batch, args.workers, epochs))
            wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
            cpu = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
            results[f"M{m}"] = {
                "mmkit_views_per_s": round(wall["mmkit"], 1),
                "seed_views_per_s": round(wall["seed"], 1),
                "ratio": round(wall["mmkit"] / wall["seed"], 2),
                "mmkit_uint8_views_per_s": round(wall["mmkit_uint8"], 1),
                "ratio_uint8": round(wall["mmkit_uint8"] / wall["seed"], 2),
                "mmkit_views_per_cpu_s": round(cpu["mmkit"], 1),
                "seed_views_per_cpu_s": round(cpu["seed"], 1),
                "ratio_cpu": round(cpu["mmkit"] / cpu["seed"], 2),
                "ratio_cpu_uint8": round(cpu["mmkit_uint8"] / cpu["seed"], 2),
                "timed_views": epochs * args.images * m,
                "runs_views_per_s": {k: [round(r[0], 1) for r in v] for k, v in runs.items()},
                "runs_views_per_cpu_s": {k: [round(r[1], 1) for r in v] for k, v in runs.items()},
            }
            r = results[f"M{m}"]
            print(
                f"M={m}: wall-clock mmkit {r['mmkit_views_per_s']:7.1f} views/s vs seed {r['seed_views_per_s']:7.1f}"
                f" = {r['ratio']:4.2f}x (uint8 only {r['ratio_uint8']:4.2f}x) | per CPU-second mmkit "
                f"{r['mmkit_views_per_cpu_s']:7.1f} vs seed {r['seed_views_per_cpu_s']:7.1f} = {r['ratio_cpu']:4.2f}x "
                f"(uint8 only {r['ratio_cpu_uint8']:4.2f}x)",
                flush=True,
            )

    targets = {"M1": 1.5, "M4": 5.0}
    payload = {
        "benchmark": "views per second, 224 px, preset 'seed' vs the published torchvision pipeline",
        "results": results,
        "targets": targets,
        "targets_met": {k: results[k]["ratio"] >= v for k, v in targets.items()},
        "targets_met_cpu": {k: results[k]["ratio_cpu"] >= v for k, v in targets.items()},
        "setup": {
            "images": args.images,
            "image_size": "500x375 JPEG q90",
            "mean_file_kb": round(mean_kb, 1),
            "batch_samples": args.batch,
            "num_workers": args.workers,
            "views_per_measurement": args.views,
            "repeats": args.repeats,
            "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ratio": "mmkit with normalize() on the CPU in the main process / seed (which normalises per view "
            "in its workers); ratio_uint8: mmkit's uint8 batches, normalisation left to the accelerator",
            "ratio_cpu": "the same, in views per CPU-second of this process and its workers: independent of "
            "what else runs on a shared machine (wall-clock figures are not)",
            "note": "shared 2-core machine, other jobs running: wall-clock figures are noisy",
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(
        "targets met (wall-clock):",
        payload["targets_met"],
        "| (CPU):",
        payload["targets_met_cpu"],
        f"-> {out}",
    )


if __name__ == "__main__":
    main()
