"""One rank of the DDP test (tests/test_ddp.py launches two with torch.distributed.run).

Trains the tiny stage-1 model with ``mmkit.train.fit`` under DistributedDataParallel (gloo on CPU), records
the training-sample indices this rank saw per epoch, and saves its final weights and what it evaluated.
"""

import argparse
import json
from pathlib import Path

import torch

from mmkit.config import AugmentConfig, ModelConfig, TrainConfig
from mmkit.data.food101 import read_upmc_food101
from mmkit.train import build_stage1, fit, image_forward, init_distributed, predict, stage1_loaders


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = init_distributed()
    out = Path(args.out)
    dataset = read_upmc_food101(args.data, val_fraction=0.25, seed=0)
    augment = AugmentConfig(image_size=32, batch_size=4, copies=2)
    cfg = TrainConfig(epochs=2, lr=0.05, seed=3, grad_accum=2, warmup_epochs=0.5)
    net = build_stage1(dataset, ModelConfig("timm:test_resnet", train_blocks="last:3"), augment, cfg.seed)
    loaders = stage1_loaders(dataset, augment, cfg.seed)  # rank-aware: torch.distributed is initialised
    base = image_forward(net.backbone.norm, cfg.channels_last)
    seen: list[list[int]] = [[]]

    def recording(model, batch, device):
        if model.training:
            seen[-1].extend(batch["index"].tolist())
        return base(model, batch, device)

    result = fit(
        net,
        loaders["train"],
        loaders["val"],
        cfg,
        task=dataset.task,
        classes=dataset.classes,
        forward=recording,
        out_dir=out / "run",
        on_epoch_end=lambda row: seen.append([]),
    )
    scores, y, index = predict(result.model, loaders["test"], base, torch.device("cpu"))
    torch.save(result.model.state_dict(), out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "rank": rank,
                "world": world,
                "seen": seen[:-1],
                "n_train": len(dataset.records("train")),
                "history": result.history,
                "best_epoch": result.best_epoch,
                "test_index": index.tolist(),
                "test_scores": scores.tolist(),
            }
        )
    )
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
