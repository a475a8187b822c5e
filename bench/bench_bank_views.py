"""How many cached views K the feature bank needs: the proposed row's test score as K grows, over seeds.

Stage 2 on the bank draws M views of each sample per step. With an integer K the same K views are drawn
again every epoch (an approximation of the live path); ``bank_views="epochs"`` caches K = stage-2 epochs x M
views and uses each exactly once (a fresh augmentation for every batch, as the paper's stage 2). This
script measures where the proposed row (stage-1 fine-tuned backbone -> bank -> concat-linear on image +
out-of-fold tf-idf logits) converges as K grows, on notebook 05's demo defaults: synthetic_food101,
timm:test_resnet at 48 px, stage 1 6 epochs (SGD lr 0.05, M = 4), stage 2 20 epochs (AdamW lr 0.01, wd
0.3). Stage 1 runs once per seed and its checkpoint is reused for every K. K = 1 can only draw M = 1.

It writes ``bench/results/bank_views.json``: per K the mean, std and per-seed test scores, the bank's
build seconds and size in bytes, and the size of the full bank (K = epochs x M) at real scale
(``real_scale_sizes``: UPMC Food-101 and FPUS23 at 224 px, ResNet-50 width 2048, float16).

    nice -n 5 python bench/bench_bank_views.py --seeds 0 1 2 3 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Real-scale split sizes, from data_cards/: UPMC Food-101 has 67,972 train and 22,716 test images, val is
# carved from train (val_fraction 0.1); FPUS23 has 15,113 frames split 70/10/20 by stream.
REAL_SCALE = {
    "upmc_food101": {"train": 67972 - round(0.1 * 67972), "eval": round(0.1 * 67972) + 22716},
    "fpus23": {"train": round(0.7 * 15113), "eval": 15113 - round(0.7 * 15113)},
}


def real_scale_sizes(views: int, width: int = 2048, itemsize: int = 2) -> dict[str, dict[str, float]]:
    """The bank of each real dataset at ``views`` per training image (224 px does not change the size: one
    ``width``-wide vector per view), in bytes and GiB.

    Example:
        >>> real_scale_sizes(80)["upmc_food101"]["gib"]  # doctest: +ELLIPSIS
        19.0...
    """
    from mmkit.features import bank_bytes

    out = {}
    for name, n in REAL_SCALE.items():
        size = bank_bytes(n["train"], n["eval"], views, width, itemsize)
        out[name] = {**n, "views": views, "width": width, "bytes": size, "gib": round(size / 2**30, 2)}
    return out


def paired_against_full(per_k: list[dict], full: int) -> None:
    """Add to each K's row its per-seed difference from the full bank (K = epochs x M) on the same seed
    (same stage-1 checkpoint and text features): the mean and std of the paired differences, which the
    seed-to-seed spread of either row hides."""
    import numpy as np

    ref = next((r for r in per_k if r["K"] == full), None)
    if ref is None:
        return
    by_seed = dict(zip(ref["seeds"], ref["test"]))
    for row in per_k:
        diff = [t - by_seed[s] for s, t in zip(row["seeds"], row["test"]) if s in by_seed]
        row["diff_vs_full"] = diff
        row["diff_vs_full_mean"] = float(np.mean(diff))
        row["diff_vs_full_std"] = float(np.std(diff, ddof=1)) if len(diff) > 1 else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--views", nargs="+", default=["1", "4", "16", "epochs"], help="K values; 'epochs' = epochs x M"
    )
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--stage1-epochs", type=int, default=6)
    p.add_argument("--stage2-epochs", type=int, default=20)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "bank_views.json"))
    args = p.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from mmkit.config import AugmentConfig, DataConfig, FusionConfig, ModelConfig, TrainConfig
    from mmkit.data import load_dataset
    from mmkit.features import bank_bytes, build_feature_bank, resolve_bank_views
    from mmkit.stage2 import train_stage2
    from mmkit.text import compute_text_features
    from mmkit.train import train_stage1

    ds = load_dataset(DataConfig(dataset="synthetic_food101"))
    n_train, n_eval = len(ds.records("train")), len(ds.records("val")) + len(ds.records("test"))
    work = Path(tempfile.mkdtemp(prefix="bench_bank_views_"))
    backbone = "timm:test_resnet"
    stage2 = TrainConfig(epochs=args.stage2_epochs, lr=0.01, optimizer="adamw", weight_decay=0.3, amp=False)
    per_k: dict[str, dict] = {}
    stage1_info = []
    for seed in args.seeds:
        augment = AugmentConfig(preset="seed", image_size=args.image_size, copies=args.copies, seed=seed)
        t0 = time.perf_counter()
        s1 = train_stage1(
            ds, ModelConfig(backbone=backbone, train_blocks="all"),
            TrainConfig(epochs=args.stage1_epochs, lr=0.05, optimizer="sgd", seed=seed, amp=False),
            augment, out_dir=work / f"stage1_seed{seed}", device="cpu",
        )  # fmt: skip
        stage1_info.append(
            {"seed": seed, "seconds": time.perf_counter() - t0, "test": s1.metrics["test"]["accuracy"]}
        )
        text, _ = compute_text_features(ds, "tfidf", folds=5, seed=seed)
        for k_arg in args.views:
            bank_views = "epochs" if k_arg == "epochs" else int(k_arg)
            k = resolve_bank_views(bank_views, args.stage2_epochs, args.copies)
            m = min(args.copies, k)  # K = 1 holds one view: M = 1
            bank = build_feature_bank(
                ds, backbone, checkpoint=s1.checkpoint, preset="seed", views=k, image_size=args.image_size,
                seed=seed, batch_size=max(32, k), cache_dir=work / "bank", device="cpu",
            )  # fmt: skip
            result = train_stage2(
                ds, text, bank=bank, head="concat-linear", fusion=FusionConfig(bank_views=bank_views),
                train=TrainConfig(**{**stage2.__dict__, "seed": seed}),
                augment=AugmentConfig(preset="seed", image_size=args.image_size, copies=m, seed=seed), device="cpu",
            )  # fmt: skip
            row = per_k.setdefault(
                str(k),
                {"K": k, "bank_views": bank_views, "M": m, "seeds": [], "test": [], "val": [], "build_s": []},
            )
            row["seeds"].append(seed)
            row["test"].append(result.metrics["test"]["accuracy"])
            row["val"].append(result.metrics["val"]["accuracy"])
            row["build_s"].append(bank.build_seconds)
            row["bank_bytes"] = bank_bytes(n_train, n_eval, k, bank.dim)
            print(
                f"seed {seed} K={k} M={m}: test {row['test'][-1]:.4f} (bank {bank.build_seconds:.1f} s)",
                flush=True,
            )
    for row in per_k.values():
        row["test_mean"], row["test_std"] = float(np.mean(row["test"])), float(np.std(row["test"], ddof=1))
        row["val_mean"] = float(np.mean(row["val"]))
        row["build_s_mean"] = float(np.mean(row["build_s"]))
        row["approximation"] = row["K"] < args.stage2_epochs * args.copies
    full = resolve_bank_views("epochs", args.stage2_epochs, args.copies)
    paired_against_full(list(per_k.values()), full)
    out = {
        "benchmark": "proposed row (stage 1 fine-tuned -> bank -> concat-linear + tf-idf) test accuracy by K",
        "dataset": ds.name,
        "n_train": n_train,
        "n_eval": n_eval,
        "settings": {
            "backbone": backbone,
            "image_size": args.image_size,
            "copies": args.copies,
            "stage1_epochs": args.stage1_epochs,
            "stage2_epochs": args.stage2_epochs,
            "stage2_lr": 0.01,
            "stage2_optimizer": "adamw",
            "stage2_weight_decay": 0.3,
            "head": "concat-linear",
            "text": "tfidf",
        },  # fmt: skip
        "seeds": args.seeds,
        "stage1": stage1_info,
        "per_k": list(per_k.values()),
        "full_bank_views": full,
        "real_scale": real_scale_sizes(full),
        "real_scale_k8": real_scale_sizes(8),
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for row in per_k.values():
        print(
            f"K={row['K']:>3} M={row['M']}: test {row['test_mean']:.4f} +- {row['test_std']:.4f}, "
            f"vs K={full}: {row.get('diff_vs_full_mean', float('nan')):+.4f}"
        )


if __name__ == "__main__":
    main()
