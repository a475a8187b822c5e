"""The in-process steps of bench/gpu_check.sh (which also launches the torchrun steps and samples nvidia-smi).

    python bench/gpu_check.py data    --work DIR [--dry-run]   # a synthetic Food-101-shaped set
    python bench/gpu_check.py stage1  --work DIR [--dry-run]   # stage 1, AMP + channels_last
    python bench/gpu_check.py stage2  --work DIR [--dry-run]   # the bank from stage 1's checkpoint, then heads
    python bench/gpu_check.py loader  --work DIR [--dry-run]   # make_loader alone, then feeding train steps
    python bench/gpu_check.py report  --work DIR --out FILE    # merge the steps' JSON + utilisation samples

Each step writes DIR/<step>.json with its timings and its wall-clock window (for the utilisation samples).
``--dry-run`` runs the same code tiny on the CPU (timm:test_resnet, 32 px, a few samples): what the test
suite runs, so this script is not untested code. Without it the sizes are meant for one modern GPU and
the whole check stays well under 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmkit.config import AugmentConfig, FusionConfig, ModelConfig, TrainConfig  # noqa: E402

GPU = dict(classes=10, train=60, test=20, size=256, backbone="timm:resnet50", image_size=224, batch=64,
           copies=2, epochs=2, views=4, workers=min(8, os.cpu_count() or 1), loader_batches=40)  # fmt: skip
DRY = dict(classes=3, train=8, test=3, size=48, backbone="timm:test_resnet", image_size=32, batch=4,
           copies=2, epochs=1, views=2, workers=0, loader_batches=3)  # fmt: skip


def sizes(dry: bool) -> dict:
    return DRY if dry else GPU


def device(dry: bool) -> torch.device:
    return torch.device("cpu") if dry else torch.device("cuda", 0)


def dataset(work: Path):
    from mmkit.data.food101 import read_upmc_food101

    return read_upmc_food101(work / "food", val_fraction=0.2, seed=0)


def write(work: Path, step: str, payload: dict) -> None:
    (work / f"{step}.json").write_text(json.dumps(payload, indent=2))
    print(f"{step}: {json.dumps({k: v for k, v in payload.items() if not isinstance(v, (dict, list))})}")


def step_data(work: Path, dry: bool) -> None:
    from mmkit.data.synthetic import make_synthetic_food101

    s = sizes(dry)
    t0 = time.time()
    make_synthetic_food101(work / "food", n_classes=s["classes"], train_per_class=s["train"],
                           test_per_class=s["test"], image_size=s["size"])  # fmt: skip
    ds = dataset(work)
    write(work, "data", {"start": t0, "end": time.time(), **{k: len(ds.records(k)) for k in ds.splits}})


def step_stage1(work: Path, dry: bool) -> None:
    from mmkit.train import _amp, train_stage1

    s, dev = sizes(dry), device(dry)
    ds = dataset(work)
    aug = AugmentConfig(image_size=s["image_size"], batch_size=s["batch"], copies=s["copies"],
                        num_workers=s["workers"])  # fmt: skip
    cfg = TrainConfig(epochs=s["epochs"], lr=0.05, amp=True, channels_last=True, out_dir=str(work / "stage1"))
    t0 = time.time()
    r = train_stage1(ds, ModelConfig(s["backbone"], pretrained=None), cfg, aug, device=dev)
    end = time.time()
    seconds = sum(h["seconds"] for h in r.history)  # training + val each epoch
    views = len(ds.records("train")) * s["copies"] * s["epochs"]
    first = next(r.model.parameters())
    amp_on, amp_dtype = _amp(cfg, dev)
    write(work, "stage1", {
        "start": t0, "end": end, "backbone": s["backbone"], "image_size": s["image_size"],
        "amp": amp_on, "amp_dtype": str(amp_dtype), "channels_last": cfg.channels_last,
        "device": str(first.device), "epochs": s["epochs"], "train_views": views,
        "epoch_seconds": [round(h["seconds"], 3) for h in r.history],
        "images_per_s": round(views / max(seconds, 1e-9), 1),
        "test_accuracy": r.metrics["test"].get("accuracy"), "checkpoint": str(r.checkpoint),
    })  # fmt: skip


def step_stage2(work: Path, dry: bool) -> None:
    from mmkit import compute_text_features, train_stage2
    from mmkit.features import build_feature_bank

    s, dev = sizes(dry), device(dry)
    ds = dataset(work)
    checkpoint = work / "stage1" / "best.pt"
    t0 = time.time()
    bank = build_feature_bank(ds, s["backbone"], checkpoint=checkpoint, views=s["views"],
                              image_size=s["image_size"], batch_size=s["batch"] * 2,
                              cache_dir=work / "bank", device=dev, num_workers=s["workers"])  # fmt: skip
    built = time.time()
    encoded = len(ds.records("train")) * (s["views"] + 1) + sum(len(ds.records(k)) for k in ("val", "test"))
    table, _ = compute_text_features(ds, "tfidf", folds=3, seed=0)
    aug = AugmentConfig(image_size=s["image_size"], batch_size=s["batch"], copies=s["copies"])
    cfg = TrainConfig(epochs=5 if not dry else 1, lr=1e-2, optimizer="adamw", warmup_epochs=0.0)
    t1 = time.time()
    r = train_stage2(ds, table, bank=bank, fusion=FusionConfig(), train=cfg, augment=aug, device=dev)
    end = time.time()
    seconds = sum(h["seconds"] for h in r.history)
    write(work, "stage2", {
        "start": t0, "end": end, "bank_views": s["views"], "bank_build_seconds": round(built - t0, 3),
        "bank_images_per_s": round(encoded / max(built - t0, 1e-9), 1), "bank_dim": bank.dim,
        "head_epochs": cfg.epochs, "head_seconds": round(end - t1, 3),
        "head_samples_per_s": round(len(ds.records("train")) * s["copies"] * cfg.epochs / max(seconds, 1e-9), 1),
        "test_accuracy": r.metrics.get("test", {}).get("accuracy"),
    })  # fmt: skip


def step_loader(work: Path, dry: bool) -> None:
    """Views/s of make_loader alone, then of the loader feeding AMP + channels-last train steps: when the two
    match the GPU waits on the loader (add workers), when the second is lower the GPU is the limit."""
    from mmkit.augment import make_loader, normalize
    from mmkit.models import ImageClassifier, create_backbone
    from mmkit.train import _amp

    s, dev = sizes(dry), device(dry)
    ds = dataset(work)
    loader = make_loader(ds, "train", s["batch"], copies=4, image_size=s["image_size"], seed=0,
                         num_workers=s["workers"])  # fmt: skip
    n = min(s["loader_batches"], len(loader))

    def run(step) -> tuple[float, float]:
        t, views = None, 0
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            for batch in loader:
                if t is None:  # the first batch pays the workers' start: not timed
                    step(batch)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    t, start = 0, time.perf_counter()
                    continue
                step(batch)
                views += len(batch["image"])
                t += 1
                if t >= n:
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    seconds = time.perf_counter() - start
                    return views / seconds, seconds
            epoch += 1

    t0 = time.time()
    alone, alone_s = run(lambda b: None)
    net = ImageClassifier(create_backbone(s["backbone"], image_size=s["image_size"]), ds.num_classes)
    net = net.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    amp_on, amp_dtype = _amp(TrainConfig(amp=True), dev)
    norm = net.backbone.norm

    def train_step(batch):
        x = normalize(batch["image"], norm, device=dev, channels_last=True)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_on):
            loss = torch.nn.functional.cross_entropy(
                net(x).float(), batch["label"].to(dev, non_blocking=True)
            )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t1 = time.time()
    fed, fed_s = run(train_step)
    write(work, "loader", {
        "start": t0, "end": time.time(), "fed_start": t1, "batch_size": s["batch"], "copies": 4,
        "num_workers": s["workers"], "batches_timed": n, "loader_views_per_s": round(alone, 1),
        "fed_views_per_s": round(fed, 1), "fed_over_loader": round(fed / max(alone, 1e-9), 3),
        "seconds": round(alone_s + fed_s, 3),
    })  # fmt: skip


def _utilisation(smi: Path, start: float, end: float) -> dict:
    """Mean / max GPU utilisation (%) and max memory (MiB) of nvidia-smi's samples in [start, end]."""
    util, mem = [], []
    if not smi.exists():
        return {}
    for line in smi.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        try:
            t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            u, m = float(parts[2]), float(parts[3])
        except ValueError:
            continue
        if start <= t <= end:
            util.append(u)
            mem.append(m)
    if not util:
        return {}
    return {"gpu_util_mean": round(statistics.mean(util), 1), "gpu_util_max": max(util),
            "gpu_mem_max_mib": max(mem), "samples": len(util)}  # fmt: skip


def step_report(work: Path, out: Path, dry: bool) -> None:
    steps = {}
    for name in ("data", "stage1", "stage2", "loader"):
        path = work / f"{name}.json"
        if path.exists():
            steps[name] = json.loads(path.read_text())
    runs = work / "torchrun.jsonl"
    if runs.exists():
        lines = [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]
        for run in lines:
            run["seconds"] = round(run["end"] - run["start"], 3)
        steps["torchrun"] = {"start": min(r["start"] for r in lines), "end": max(r["end"] for r in lines),
                             "runs": lines}  # fmt: skip
    smi = work / "smi.csv"
    for name, step in steps.items():
        if name == "torchrun":
            for run in step.get("runs", []):
                run.update(_utilisation(smi, run["start"], run["end"]))
        elif "start" in step:
            step.update(_utilisation(smi, step.get("fed_start", step["start"]), step["end"]))
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if not dry else []
    report = {
        "dry_run": dry,
        "when": datetime.now().isoformat(timespec="seconds"),
        "gpus": gpus,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "nvidia_smi": smi.exists() and smi.stat().st_size > 0,
        "total_seconds": round(
            max(s["end"] for s in steps.values()) - min(s["start"] for s in steps.values()), 1
        )
        if steps
        else 0.0,
        "steps": steps,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} ({report['total_seconds']} s)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=["data", "stage1", "stage2", "loader", "report"])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.dry_run:
        torch.set_num_threads(1)
    if args.step == "report":
        step_report(args.work, args.out or REPO / "bench" / "results" / "gpu.json", args.dry_run)
    else:
        {"data": step_data, "stage1": step_stage1, "stage2": step_stage2, "loader": step_loader}[args.step](
            args.work, args.dry_run
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
