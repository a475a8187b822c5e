"""The decode cache on a notebook-05-like loader sequence: CPU seconds with the cache on against off.

Notebook 05 runs, per seed, several stage-1 variants of several epochs over the same training images (plus a
val pass per epoch), then builds the feature bank (K views per training image, one pass over val and test).
Without the cache every one of those passes decodes and resizes every image again. This times only the
loaders (no model), so the ratio is the loader's own; in a notebook run the model's time comes on top.

Two data sets, in one run:
- ``demo``: the synthetic Food-101 of notebook 05's defaults (8 classes x 48 + 16 images, 64 px JPEGs) at
  image_size 48, preset seed, M=4, 6 epochs, 3 variants, K=8;
- ``photos``: photo-like 500x375 JPEGs (as bench_loader.py) at 224 px, preset seed, M=4, 2 epochs,
  3 variants, K=8.

    .venv/bin/python bench/bench_decode_cache.py      # writes bench/results/decode_cache.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_loader import Timer, photo_like  # noqa: E402

from mmkit.augment import decode_cache, make_loader  # noqa: E402
from mmkit.data.records import Dataset, Record  # noqa: E402
from mmkit.data.synthetic import make_synthetic_food101  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "decode_cache.json"


def _dataset(paths: list[Path], name: str) -> Dataset:
    recs = [Record(id=p.name, image_path=p, text="", label="ab"[i % 2]) for i, p in enumerate(paths)]
    n_test = len(recs) // 5
    n_val = (len(recs) - n_test) // 10
    return Dataset(name, ["a", "b"], {"test": recs[:n_test], "val": recs[n_test : n_test + n_val],
                                      "train": recs[n_test + n_val :]})  # fmt: skip


def sequence(ds: Dataset, image_size: int, epochs: int, variants: int, copies: int, bank_views: int) -> int:
    """Stage 1 (variants x epochs of train + val), then the bank (K train views, val, test): views made."""
    kw = dict(batch_size=32, preset="seed", image_size=image_size)
    n = 0
    for v in range(variants):
        train = make_loader(ds, "train", copies=copies, seed=v, **kw)
        val = make_loader(ds, "val", **kw)
        for e in range(epochs):
            train.set_epoch(e)
            n += sum(len(b["index"]) for b in train) + sum(len(b["index"]) for b in val)
    for loader in (make_loader(ds, "train", copies=bank_views, seed=99, shuffle=False, **kw),
                   make_loader(ds, "val", **kw), make_loader(ds, "test", **kw)):  # fmt: skip
        n += sum(len(b["index"]) for b in loader)
    return n


def measure(ds: Dataset, repeats: int, **seq) -> dict:
    cache = decode_cache()
    rows = {"off": [], "on": []}
    for _ in range(repeats):
        for mode in ("off", "on"):
            cache.clear()
            cache.resize(0 if mode == "off" else 1024)
            with Timer() as t:
                views = sequence(ds, **seq)
            rows[mode].append({"wall_s": t.wall, "cpu_s": t.cpu, "hits": cache.hits, "misses": cache.misses})
    best = {m: min(r, key=lambda x: x["cpu_s"]) for m, r in rows.items()}
    return {
        "settings": seq, "images": {s: len(ds.records(s)) for s in ("train", "val", "test")}, "views": views,
        "off": best["off"], "on": best["on"], "all_repeats": rows,
        "cpu_ratio": best["off"]["cpu_s"] / best["on"]["cpu_s"],
        "wall_ratio": min(r["wall_s"] for r in rows["off"]) / min(r["wall_s"] for r in rows["on"]),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {
        "benchmark": "decode cache, notebook-05-like loader sequence, num_workers=0, best of repeats by CPU s"
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_food101(Path(tmp) / "food")
        demo = _dataset(sorted(root.rglob("*.jpg")), "demo")
        out["demo"] = measure(demo, args.repeats, image_size=48, epochs=6, variants=3, copies=4, bank_views=8)
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.photos):
            p = Path(tmp) / f"photo_{i:03d}.jpg"
            photo_like(rng).save(p, quality=90)
            paths.append(p)
        photos = _dataset(paths, "photos")
        out["photos"] = measure(
            photos, args.repeats, image_size=224, epochs=2, variants=3, copies=4, bank_views=8
        )
    out["setup"] = {"python": platform.python_version(), "torch": torch.__version__, "cpu_threads": 1}
    RESULTS.write_text(json.dumps(out, indent=2))
    for k in ("demo", "photos"):
        r = out[k]
        print(f"{k}: off {r['off']['cpu_s']:.1f} CPU s, on {r['on']['cpu_s']:.1f} CPU s, "
              f"ratio {r['cpu_ratio']:.2f}x CPU, {r['wall_ratio']:.2f}x wall; {r['on']['hits']} hits, "
              f"{r['on']['misses']} misses")  # fmt: skip


if __name__ == "__main__":
    main()
