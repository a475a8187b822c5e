"""Stage 2 from the feature bank against the seed's way, on the same data, backbone, head and text features.

- bank: the backbone runs once, in eval() without gradients, over K augmented views of every training
  image (timed separately as ``bank_build_s``); by default K = epochs x M and each view is drawn once
  (``bank_views="epochs"``), so the bank row sees as many fresh augmentations as the live rows.
- live (frozen): the kit's live path with ``train_blocks="none"``: the backbone runs every step on fresh
  augmentations, in eval() without gradients.
- seed: the published notebooks' way: the "frozen" backbone left in train mode with gradients, recomputed
  every step on fresh augmentations; only the head is optimised (BatchNorm statistics drift meanwhile).

- text only: the same head and trainer on the out-of-fold text logits alone: the bar a fusion head must
  clear, or its accuracy says nothing about the image path.

All rows of a seed start from the same backbone weights (the stage-1 checkpoint fine-tuned first, or the
same random init with ``--stage1-epochs 0``) and train the same head (concat-linear) with the same
optimiser, schedule, epochs, seed and out-of-fold text features, and are scored on the test split after
selection on validation (the seed's way gets the same selection, for a like-for-like accuracy). The stage-2
epochs default to the demo's 20, enough for the fusion heads to clear text only on this data (the JSON says
per seed whether they did). Every row runs over ``--seeds`` seeds (new data split draw, stage 1, text folds
and head init per seed); accuracy is compared as paired per-seed differences (same seed, same test rows).
Epoch time is the mean wall time of a training epoch (no evaluation). Results go to
``bench/results/stage2.json``.

    python bench/bench_stage2.py --threads 2
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


def run_seed(args: argparse.Namespace, seed: int, work: Path) -> dict:
    """Every row of one seed: {row: {test_accuracy, val_accuracy, epoch_s, ...}}."""
    import numpy as np
    import torch
    from torch import nn

    from mmkit.augment import make_loader
    from mmkit.config import AugmentConfig, FusionConfig, ModelConfig, TrainConfig
    from mmkit.data import make_synthetic_food101, read_upmc_food101
    from mmkit.features import build_feature_bank, load_backbone, resolve_bank_views
    from mmkit.heads import FusionModel, feature_stats, make_head
    from mmkit.metrics import compute_metrics
    from mmkit.seeding import derive_seed
    from mmkit.stage2 import LiveLoader, Stage2Model, predict, train_stage2
    from mmkit.text import compute_text_features
    from mmkit.train import train_stage1

    work = work / f"seed{seed}"
    root = make_synthetic_food101(
        work / "food", n_classes=args.classes, train_per_class=args.train_per_class,
        test_per_class=args.test_per_class, image_size=max(64, args.image_size), seed=0,
    )  # fmt: skip  # one dataset; the seed moves the val carve-out, stage 1, folds and heads
    ds = read_upmc_food101(root, val_fraction=0.1, seed=seed)
    text, _ = compute_text_features(ds, "tfidf", folds=5, seed=seed)
    train_cfg = TrainConfig(
        epochs=args.epochs, lr=args.lr, optimizer="adamw", weight_decay=0.3, seed=seed, amp=False
    )
    aug = AugmentConfig(
        preset="seed", image_size=args.image_size, copies=args.copies, batch_size=args.batch_size
    )
    # default: bank_views="epochs", each cached view drawn once (the paper's stage 2, as the live path draws)
    fusion = FusionConfig(head="concat-linear", bank_views=args.views or "epochs")
    views = resolve_bank_views(fusion.bank_views, args.epochs, args.copies)
    rows: dict = {"data": ds.summary(), "bank_views": views}

    # stage 1 (shared): every stage-2 row starts from the same fine-tuned backbone, as in the paper
    checkpoint = None
    if args.stage1_epochs > 0:
        t0 = time.perf_counter()
        s1 = train_stage1(
            ds, ModelConfig(backbone=args.backbone, train_blocks="all"),
            TrainConfig(epochs=args.stage1_epochs, lr=args.stage1_lr, seed=seed, amp=False), aug,
            out_dir=work / "stage1", device="cpu",
        )  # fmt: skip
        checkpoint = s1.checkpoint
        rows["stage1"] = {
            "seconds": time.perf_counter() - t0,
            "test_accuracy": s1.metrics["test"]["accuracy"],
        }

    t0 = time.perf_counter()
    bank = build_feature_bank(
        ds, args.backbone, checkpoint=checkpoint, preset="seed", views=views, image_size=args.image_size,
        seed=seed, batch_size=64, cache_dir=work / "bank", device="cpu",
    )  # fmt: skip
    build = time.perf_counter() - t0

    def score(res) -> dict:
        return {
            "epoch_s": float(np.mean(res.epoch_seconds)),
            "test_accuracy": res.metrics["test"]["accuracy"],
            "val_accuracy": res.metrics["val"]["accuracy"],
            "best_epoch": res.best_epoch,
        }

    for name, modalities in (("text_only", "text"), ("bank", "both")):
        res = train_stage2(
            ds, text, bank=bank, head="concat-linear", fusion=fusion, train=train_cfg, augment=aug,
            modalities=modalities, device="cpu",
        )  # fmt: skip
        rows[name] = score(res)
        print(seed, name, rows[name], flush=True)
    rows["bank"]["bank_build_s"] = build
    image_stats = res.model.fusion.image_mean.clone(), res.model.fusion.image_std.clone()

    # the kit's live path, frozen backbone
    if not args.skip_live:
        module = load_backbone(args.backbone, None, checkpoint, seed, args.image_size)[0]
        res = train_stage2(
            ds, text, backbone=module, head="concat-linear", fusion=fusion, train=train_cfg, augment=aug,
            train_blocks="none", device="cpu",
        )  # fmt: skip
        rows["live_frozen"] = score(res)
        print(seed, "live_frozen", rows["live_frozen"], flush=True)

    # the seed's way: backbone in train mode with gradients, recomputed every step; the same checkpoint
    module = load_backbone(args.backbone, None, checkpoint, seed, args.image_size)[0]
    text_stats = feature_stats(torch.from_numpy(text.lookup("train", ds.ids("train"))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "heads"))  # as train_stage2 does
        head = make_head("concat-linear", module.num_features, text.dim, ds.num_classes)
    model = Stage2Model(FusionModel(head, image_stats, text_stats), backbone=module)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.3)  # only the head is optimised
    loaders = {
        s: LiveLoader(
            make_loader(
                ds,
                s,
                args.batch_size,
                copies=args.copies,
                preset="seed",
                image_size=args.image_size,
                seed=seed,
            ),
            text,
            s,
            0.0,
            seed,
        )  # fmt: skip
        for s in ("train", "val", "test")
    }
    steps = args.epochs * len(loaders["train"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + np.cos(np.pi * i / steps)))
    loss_fn = nn.CrossEntropyLoss()
    epoch_s, best, best_state = [], -1.0, None
    for epoch in range(args.epochs):
        loaders["train"].set_epoch(epoch)
        model.train()  # the seed's defect: the backbone's BatchNorm keeps updating its statistics
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "seed_way", epoch))
            for batch in loaders["train"]:
                loss = loss_fn(model(batch), batch["label"])
                model.zero_grad(set_to_none=True)
                loss.backward()  # gradients flow through the whole backbone, then go unused
                opt.step()
                sched.step()
        epoch_s.append(time.perf_counter() - t0)
        scores, y, _ = predict(model, loaders["val"])
        val = compute_metrics(y, scores, "multiclass", ds.classes)["accuracy"]
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    split_scores = {}
    for s in ("val", "test"):
        scores, y, _ = predict(model, loaders[s])
        split_scores[s] = compute_metrics(y, scores, "multiclass", ds.classes)["accuracy"]
    rows["seed"] = {"epoch_s": float(np.mean(epoch_s)), "test_accuracy": split_scores["test"],
                    "val_accuracy": split_scores["val"]}  # fmt: skip
    print(seed, "seed", rows["seed"], flush=True)
    return rows


def paired(per_seed: list[dict], row: str, other: str) -> dict:
    """Per-seed test-accuracy differences (row - other, points) on the same test rows, with mean/min/max."""
    import numpy as np

    d = [100 * (s[row]["test_accuracy"] - s[other]["test_accuracy"]) for s in per_seed]
    return {
        "per_seed_points": d,
        "mean_points": float(np.mean(d)),
        "min_points": min(d),
        "max_points": max(d),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="timm:test_resnet")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--train-per-class", type=int, default=60)
    p.add_argument("--test-per-class", type=int, default=20)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument(
        "--views",
        type=int,
        default=None,
        help="K views per training image, reused across epochs (default: epochs x M, each once)",
    )
    p.add_argument("--copies", type=int, default=1, help="M views per sample per step (1 = the seed's)")
    p.add_argument("--epochs", type=int, default=20, help="stage-2 epochs (the demo's 20)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument(
        "--stage1-epochs", type=int, default=6, help="fine-tune the backbone first; 0: random init"
    )
    p.add_argument("--stage1-lr", type=float, default=0.05)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-live", action="store_true", help="skip the kit's live (frozen) path")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "stage2.json"))
    args = p.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_stage2_"))
    per_seed = [run_seed(args, seed, work) for seed in range(args.seeds)]
    rows = ["text_only", "bank", "seed"] + ([] if args.skip_live else ["live_frozen"])
    summary = {
        r: {
            "test_accuracy_mean": float(np.mean([s[r]["test_accuracy"] for s in per_seed])),
            "test_accuracy_std": float(np.std([s[r]["test_accuracy"] for s in per_seed], ddof=1)),
            "epoch_s_mean": float(np.mean([s[r]["epoch_s"] for s in per_seed])),
        }
        for r in rows
    }
    speedup = summary["seed"]["epoch_s_mean"] / summary["bank"]["epoch_s_mean"]
    build = float(np.mean([s["bank"]["bank_build_s"] for s in per_seed]))
    payload = {
        "benchmark": "stage 2: feature bank vs the seed's way (backbone in train mode with gradients every step), "
        "with text only as the bar to clear, over several seeds",
        "backbone_weights": "each seed's stage-1 checkpoint, shared by all its rows"
        if args.stage1_epochs
        else "the same random init",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "per_seed": per_seed,
        "summary": summary,
        "paired_test_accuracy_points": {
            "bank_minus_seed": paired(per_seed, "bank", "seed"),
            "bank_minus_text_only": paired(per_seed, "bank", "text_only"),
            "seed_minus_text_only": paired(per_seed, "seed", "text_only"),
            **({} if args.skip_live else {"live_frozen_minus_seed": paired(per_seed, "live_frozen", "seed")}),
        },
        "fusion_beats_text_only_every_seed": {
            r: all(s[r]["test_accuracy"] > s["text_only"]["test_accuracy"] for s in per_seed)
            for r in rows
            if r != "text_only"
        },
        "epoch_speedup_bank_vs_seed": speedup,
        "speedup_including_bank_build": (args.epochs * summary["seed"]["epoch_s_mean"])
        / (build + args.epochs * summary["bank"]["epoch_s_mean"]),
        "target": ">= 100x faster per epoch, test accuracy no more than 1 point below the seed's way "
        "(mean paired difference over seeds)",
        "target_met": bool(speedup >= 100 and paired(per_seed, "bank", "seed")["mean_points"] >= -1.0),
        "machine": {
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__,
            "device": "cpu",
        },  # fmt: skip
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(json.dumps({k: payload[k] for k in ("summary", "paired_test_accuracy_points")}, indent=2))


if __name__ == "__main__":
    main()
