"""Cross-fitting on the demo: the proposed row with K = 2 and K = 5 fold backbones against the same row
without cross-fitting, over seeds, with the fold-vs-full linear CKA.

Rows per seed (notebook 05's demo defaults: synthetic_food101, timm:test_resnet at 48 px, stage 1 6 epochs
SGD lr 0.05 M = 4, stage 2 concat-linear 20 epochs AdamW lr 0.01 wd 0.3, tf-idf logits):

- ``K=1``: one backbone fine-tuned on all of train encodes every row (the published recipe);
- ``K=k``: k fold backbones (``mmkit.crossfit``), each encoding its held-out training rows and every
  val/test row, the head's val/test prediction the mean of its k fold predictions; the text's out-of-fold
  logits use the same k folds;
- ``K=k, mixed space``: the recipe before the fix, for reference: the same cross-fitted training rows, but
  val/test encoded by the full backbone (a space the head never trained in).

Writes ``bench/results/crossfit.json``: per row the mean, std and per-seed test accuracy, the stage-1 cost,
and the CKA (fold vs full, fold vs fold) on val features.

    nice -n 5 python bench/bench_crossfit.py --seeds 0 1 2 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--folds", type=int, nargs="+", default=[2, 5])
    p.add_argument("--bank-views", default="8", help="K views per training image, or 'epochs'")
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--stage1-epochs", type=int, default=6)
    p.add_argument("--stage2-epochs", type=int, default=20)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "crossfit.json"))
    args = p.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from mmkit.config import AugmentConfig, DataConfig, FusionConfig, ModelConfig, TrainConfig
    from mmkit.crossfit import cross_fit_stage1, cross_fitted_bank
    from mmkit.data import load_dataset
    from mmkit.features import build_feature_bank, resolve_bank_views
    from mmkit.folds import assign_folds
    from mmkit.stage2 import train_stage2
    from mmkit.text import compute_text_features
    from mmkit.train import train_stage1

    ds = load_dataset(DataConfig(dataset="synthetic_food101"))
    work = Path(tempfile.mkdtemp(prefix="bench_crossfit_"))
    backbone = "timm:test_resnet"
    bank_views = "epochs" if args.bank_views == "epochs" else int(args.bank_views)
    views = resolve_bank_views(bank_views, args.stage2_epochs, args.copies)
    fusion = FusionConfig(head="concat-linear", bank_views=bank_views)
    rows: dict[str, dict] = {}

    def record(name: str, seed: int, result, **extra) -> None:
        row = rows.setdefault(name, {"method": name, "seeds": [], "test": [], "val": []})
        row["seeds"].append(seed)
        row["test"].append(result.metrics["test"]["accuracy"])
        row["val"].append(result.metrics["val"]["accuracy"])
        for k, v in extra.items():
            row.setdefault(k, []).append(v)
        print(f"seed {seed} {name}: test {row['test'][-1]:.4f}", flush=True)

    for seed in args.seeds:
        model = ModelConfig(backbone=backbone, train_blocks="all")
        stage1 = TrainConfig(epochs=args.stage1_epochs, lr=0.05, optimizer="sgd", seed=seed, amp=False)
        augment = AugmentConfig(preset="seed", image_size=args.image_size, copies=args.copies, seed=seed)
        stage2 = TrainConfig(
            epochs=args.stage2_epochs, lr=0.01, optimizer="adamw", weight_decay=0.3, seed=seed, amp=False
        )

        def bank_of(d, checkpoint, k=views, seed=seed):
            return build_feature_bank(
                d, backbone, checkpoint=checkpoint, preset="seed", views=k, image_size=args.image_size,
                seed=seed, batch_size=max(32, k), cache_dir=work / "bank", device="cpu",
            )  # fmt: skip

        def fuse(bank, text, augment=augment, stage2=stage2):
            return train_stage2(
                ds,
                text,
                bank=bank,
                head="concat-linear",
                fusion=fusion,
                train=stage2,
                augment=augment,
                device="cpu",
            )

        t0 = time.perf_counter()
        s1 = train_stage1(ds, model, stage1, augment, out_dir=work / f"s1_seed{seed}", device="cpu")
        full_s = time.perf_counter() - t0
        full = bank_of(ds, s1.checkpoint)
        text, _ = compute_text_features(ds, "tfidf", folds=5, seed=seed)
        record("K=1 (no cross-fitting)", seed, fuse(full, text), stage1_s=full_s)
        y = ds.targets("train")
        for k in args.folds:
            fold_of = assign_folds(ds.records("train"), k, seed, y)
            t0 = time.perf_counter()
            fits = cross_fit_stage1(ds, fold_of, model, stage1, augment, out_dir=work / f"cf{k}_seed{seed}")
            cf_s = time.perf_counter() - t0
            bank = cross_fitted_bank(ds, fold_of, [f.checkpoint for f in fits], bank_of, full)
            text_k, _ = compute_text_features(ds, "tfidf", folds=k, seed=seed, fold_of=fold_of)
            cka = bank.meta["cka"]
            record(
                f"K={k} cross-fitted", seed, fuse(bank, text_k), stage1_s=cf_s,
                cka_fold_vs_full=float(np.mean(cka["fold_vs_full"])),
                cka_fold_vs_fold=float(np.mean(cka["fold_vs_fold"])),
            )  # fmt: skip
            # the recipe before the fix: cross-fitted training rows, full-backbone val/test rows
            mixed = dataclasses.replace(
                bank, plain={"train": bank.plain["train"], **{s: full.plain[s] for s in ("val", "test")}},
                ids={**bank.ids, **{s: full.ids[s] for s in ("val", "test")}},
            )  # fmt: skip
            record(f"K={k} cross-fitted, mixed space (before the fix)", seed, fuse(mixed, text_k))
    for row in rows.values():
        row["test_mean"], row["test_std"] = float(np.mean(row["test"])), float(np.std(row["test"], ddof=1))
        row["val_mean"] = float(np.mean(row["val"]))
        for key in ("stage1_s", "cka_fold_vs_full", "cka_fold_vs_fold"):
            if key in row:
                row[f"{key}_mean"] = float(np.mean(row[key]))
    out = {
        "benchmark": "cross-fitted proposed row (concat-linear + tf-idf) vs K=1 on the demo, test accuracy",
        "dataset": ds.name,
        "settings": {
            "backbone": backbone,
            "image_size": args.image_size,
            "copies": args.copies,
            "bank_views": bank_views,
            "K_views": views,
            "stage1_epochs": args.stage1_epochs,
            "stage2_epochs": args.stage2_epochs,
            "stage2": "adamw lr 0.01 wd 0.3",
            "folds": args.folds,
        },  # fmt: skip
        "seeds": args.seeds,
        "rows": list(rows.values()),
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for row in rows.values():
        print(f"{row['method']}: test {row['test_mean']:.4f} +- {row['test_std']:.4f}")


if __name__ == "__main__":
    main()
