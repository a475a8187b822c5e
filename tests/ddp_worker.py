"""One rank of the DDP test (tests/test_ddp.py launches two with torch.distributed.run; bench/gpu_check.sh
launches it with NCCL on GPUs).

Trains the tiny stage-1 model with ``mmkit.train.fit`` under DistributedDataParallel (gloo on CPU, NCCL on
GPU), records the training-sample indices and batch sizes this rank saw per epoch, and saves its final
weights and what it evaluated. Every tensor mmkit hands to ``dist.all_reduce`` / ``dist.broadcast`` is
checked here to live on ``collective_device(training device)`` (what NCCL demands: CUDA tensors), so the
gloo run exercises the same placement code as a GPU run. Then:

- a second fit whose val split has one sample (fewer than the ranks: a rank with no val batch must still
  join the gather, else the run hangs);
- ``predict`` on loaders that give every rank the whole split (a non-sharded loader, a plain list of
  batches): every row comes back exactly once, in dataset order;
- the feature bank: rank 0 encodes, rank 1 waits and opens the same folder; a build that fails on rank 0
  is an error on rank 1 too, not a hang.
"""

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import mmkit.features as features
from mmkit.augment import make_loader
from mmkit.config import AugmentConfig, ModelConfig, TrainConfig
from mmkit.data.food101 import read_upmc_food101
from mmkit.train import (
    build_stage1,
    collective_device,
    default_device,
    fit,
    image_forward,
    init_distributed,
    predict,
    stage1_loaders,
)

COLLECTIVES: list[dict] = []


def _checked(name: str, real, device: torch.device):
    want = collective_device(device)

    def wrapper(tensor, *args, **kwargs):
        COLLECTIVES.append({"op": name, "device": str(tensor.device), "dtype": str(tensor.dtype)})
        assert tensor.device == want, (
            f"{name} got a tensor on {tensor.device}; the collective device is {want}"
        )
        return real(tensor, *args, **kwargs)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = init_distributed()
    device = default_device()
    dist.all_reduce = _checked("all_reduce", dist.all_reduce, device)
    dist.broadcast = _checked("broadcast", dist.broadcast, device)
    out = Path(args.out)
    dataset = read_upmc_food101(args.data, val_fraction=0.25, seed=0)
    augment = AugmentConfig(image_size=args.image_size, batch_size=4, copies=2)
    cfg = TrainConfig(epochs=args.epochs, lr=0.05, seed=3, grad_accum=2, warmup_epochs=0.5)
    net = build_stage1(dataset, ModelConfig("timm:test_resnet", train_blocks="last:3"), augment, cfg.seed)
    loaders = stage1_loaders(dataset, augment, cfg.seed)  # rank-aware: torch.distributed is initialised
    base = image_forward(net.backbone.norm, cfg.channels_last)
    seen: list[list[int]] = [[]]
    sizes: list[list[int]] = [[]]

    def recording(model, batch, device):
        if model.training:
            seen[-1].extend(batch["index"].tolist())
            sizes[-1].append(len(batch["index"]))
        return base(model, batch, device)

    def next_epoch(row):
        seen.append([])
        sizes.append([])

    result = fit(
        net,
        loaders["train"],
        loaders["val"],
        cfg,
        task=dataset.task,
        classes=dataset.classes,
        forward=recording,
        out_dir=out / "run",
        on_epoch_end=next_epoch,
    )
    scores, y, index = predict(result.model, loaders["test"], base, device)
    n_test = len(dataset.records("test"))
    whole = make_loader(dataset, "test", 4, image_size=args.image_size)  # not sharded: each rank has all
    _, _, index_whole = predict(result.model, whole, base, device)
    _, _, index_list = predict(result.model, list(whole), base, device)  # no world_size: gathered, deduped

    # val smaller than the world: rank 1 has no val batch, and both ranks still evaluate every epoch
    tiny = dataclasses.replace(dataset, splits={**dataset.splits, "val": dataset.records("val")[:1]})
    tiny_loaders = stage1_loaders(tiny, augment, cfg.seed)
    tiny_net = build_stage1(tiny, ModelConfig("timm:test_resnet", train_blocks="last:1"), augment, cfg.seed)
    tiny_fit = fit(
        tiny_net,
        tiny_loaders["train"],
        tiny_loaders["val"],
        dataclasses.replace(cfg, epochs=1),
        task=tiny.task,
        classes=tiny.classes,
        forward=base,
    )
    # stage 2's bank under torchrun: only rank 0 runs the backbone over the images
    extracts = []
    real_extract = features._extract
    features._extract = lambda *a, **k: extracts.append(1) or real_extract(*a, **k)
    bank_opts = dict(views=2, image_size=args.image_size, seed=1, cache_dir=out / "bank")
    bank = features.build_feature_bank(dataset, "timm:test_resnet", **bank_opts)
    try:
        features.build_feature_bank(dataset, "timm:no_such_model", **bank_opts)
        bank_error = None
    except Exception as err:  # noqa: BLE001 - recorded for the test
        bank_error = f"{type(err).__name__}: {err}"
    torch.save({k: v.cpu() for k, v in result.model.state_dict().items()}, out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "rank": rank,
                "world": world,
                "device": str(device),
                "collective_device": str(collective_device(device)),
                "collectives": COLLECTIVES,
                "seen": seen[:-1],
                "batch_sizes": sizes[:-1],
                "n_train": len(dataset.records("train")),
                "n_test": n_test,
                "history": result.history,
                "best_epoch": result.best_epoch,
                "test_index": index.tolist(),
                "test_scores": scores.tolist(),
                "test_index_whole": index_whole.tolist(),
                "test_index_list": index_list.tolist(),
                "tiny_val_batches": len(tiny_loaders["val"]),
                "tiny_history": tiny_fit.history,
                "bank_path": str(bank.path),
                "bank_reused": bank.reused,
                "bank_extracts": len(extracts),
                "bank_sum": float(np.asarray(bank.features["train"], dtype=np.float64).sum()),
                "bank_error": bank_error,
            }
        )
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
