"""One fit loop for both stages, and stage 1 (image-only fine-tuning) on top of it.

``fit(model, train_loader, val_loader, cfg, task=..., forward=...)`` trains any ``nn.Module`` on any loader
that yields batch dicts and has ``set_epoch(epoch)`` and ``len()``:

- ``forward(model, batch, device) -> (logits, targets)`` adapts a batch to the model. Stage 1 uses
  ``image_forward(norm)`` (normalise the uint8 images once per batch, on the device, channels-last);
  stage 2 can pass ``batch_forward`` (``model(batch)``, ``batch["label"]``) for a fusion model that reads
  its features and text from the batch dict itself.
- ``cfg`` (``TrainConfig``): SGD or AdamW on the parameters that require gradients; linear warm-up then
  cosine, step or constant learning rate, stepped per optimiser step; ``grad_accum`` micro-batches per step;
  mixed precision on CUDA (bf16 where supported, else fp16 with a gradient scaler; CPU runs fp32);
  channels-last memory format.
- Loss: cross-entropy (``task="multiclass"``) or BCE-with-logits (``"multilabel"``), or ``loss_fn``.
- Each epoch the validation split is scored with ``mmkit.metrics.compute_metrics`` and the best epoch by
  ``cfg.select_on`` (the task's headline metric by default) is kept: never the test split, which ``fit`` never sees.
- Checkpoints (``out_dir``): ``last.pt`` after every epoch (model, optimiser, scheduler, scaler, epoch,
  history, best so far) and ``best.pt`` (the selected weights plus ``meta``), each written to a temporary
  file and renamed, so a kill never leaves half a file. ``resume=True`` continues from ``last.pt``.
- Determinism: the loaders' draws depend on (seed, epoch) only, and torch's global RNG (dropout, drop-path)
  is re-seeded at the start of every epoch from (seed, epoch, rank). The epoch number in ``last.pt`` is
  therefore the whole random state, and a run killed and resumed ends with the same weights and metrics as
  one run straight through. Same seed, same result (on a GPU bitwise with ``cfg.deterministic``).
- DDP: under ``torchrun`` (``init_distributed()`` first; gloo on CPU, NCCL on GPU) the model is wrapped in
  DistributedDataParallel; the loaders must be rank-aware (``make_loader(..., distributed=True)``).
  Evaluation scores each rank's shard and gathers them; buffers (BatchNorm statistics) are broadcast from
  rank 0 before evaluating, so every rank holds identical weights; rank 0 writes the checkpoints. Every
  tensor a collective sees is placed by ``collective_device`` (the GPU under NCCL); whether to evaluate is
  decided across ranks (a val split smaller than the world leaves some shards empty); the running loss
  stays on the device and is read once per epoch (and every ``LOG_EVERY`` steps for the progress bar).
- ``on_epoch_end(row)`` is called with each epoch's history row (live plots; raising stops the run).

Stage 2 example (a fusion model over cached features):

    >>> result = fit(fusion_model, loaders["train"], loaders["val"], TrainConfig(epochs=10, lr=1e-2),
    ...              task=ds.task, classes=ds.classes, forward=batch_forward, out_dir="runs/s2")  # doctest: +SKIP
    >>> result.best_epoch, result.history[-1]["val_accuracy"], result.checkpoint  # doctest: +SKIP

Stage 1: ``train_stage1(dataset, ModelConfig(...), TrainConfig(...), AugmentConfig(...), out_dir=...)``
builds the backbone + linear classifier, applies the layer policy, trains on batch-augmented images and
scores val and test with the selected weights. ``load_stage1(path)`` rebuilds the classifier from
``best.pt``. Command line (also under ``torchrun --nproc_per_node=N``):
``python -m mmkit.train --dataset synthetic_food101 --backbone timm:test_resnet --epochs 2 --out_dir runs/s1``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mmkit.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig
from mmkit.metrics import compute_metrics, selection_value
from mmkit.progress import progress
from mmkit.seeding import derive_seed

Forward = Callable[[nn.Module, dict, torch.device], tuple[torch.Tensor, torch.Tensor]]
LOG_EVERY = 25  # optimiser steps between progress-bar loss updates (each one reads the loss off the GPU)


# ----------------------------------------------------------------------------------------- distributed
def init_distributed() -> tuple[int, int]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns (rank, world_size).

    A no-op (0, 1) in a plain process. gloo on CPU, NCCL when CUDA is there (one GPU per LOCAL_RANK).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if torch.cuda.is_available():
        gpu = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(gpu)
        # device_id binds this rank's GPU to the group: barriers and object collectives then use it
        dist.init_process_group(backend="nccl", device_id=gpu)
    else:
        dist.init_process_group(backend="gloo")
    return dist.get_rank(), dist.get_world_size()


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device(device: Union[str, torch.device], backend: Optional[str] = None) -> torch.device:
    """Where a tensor handed to a torch.distributed collective must live: NCCL takes CUDA tensors only (this
    rank's GPU, whatever the tensor's origin), gloo takes them on the training device ``device``.

    ``backend`` defaults to the initialised process group's (the training device outside DDP). Every
    collective in ``fit`` goes through ``all_reduce`` / ``broadcast_`` below, which place tensors here, so the
    gloo tests run the same placement code as a GPU run.

    Example:
        >>> collective_device("cpu", backend="gloo"), collective_device("cuda:1", backend="nccl")
        (device(type='cpu'), device(type='cuda', index=1))
    """
    device = torch.device(device)
    if backend is None and dist.is_available() and dist.is_initialized():
        backend = str(dist.get_backend())
    if backend == "nccl":
        if device.type == "cuda" and device.index is not None:
            return device
        return torch.device("cuda", torch.cuda.current_device())
    return device


def all_reduce(tensor: torch.Tensor, device: torch.device, op: Any = None) -> torch.Tensor:
    """``dist.all_reduce`` (sum by default) of ``tensor`` placed on ``collective_device(device)``; returns
    the reduced tensor there (``tensor`` itself when it already lived there)."""
    t = tensor.to(collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op is None else op)
    return t


def broadcast_(tensor: torch.Tensor, device: torch.device, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s, through ``collective_device(device)``."""
    t = tensor.to(collective_device(device))
    dist.broadcast(t, src)
    if t is not tensor:
        tensor.copy_(t)
    return tensor


def _barrier(device: torch.device) -> None:
    if str(dist.get_backend()) == "nccl":
        dist.barrier(device_ids=[collective_device(device).index])
    else:
        dist.barrier()


def default_device(device: Union[None, str, torch.device] = None) -> torch.device:
    """``device``, else this rank's GPU when there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# ----------------------------------------------------------------------------------------------- adapters
def image_forward(norm: Any, channels_last: bool = False) -> Forward:
    """Stage 1's adapter: ``model(normalize(batch["image"], norm))`` against ``batch["label"]``."""
    from mmkit.augment import normalize

    def forward(model: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x = normalize(batch["image"], norm, device=device, channels_last=channels_last)
        return model(x), batch["label"].to(device, non_blocking=True)

    return forward


def batch_forward(model: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2's adapter: the model reads what it needs from the batch dict itself."""
    return model(batch), batch["label"].to(device, non_blocking=True)


# ------------------------------------------------------------------------------------------------ schedule
def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")


def lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning-rate factor at optimiser step ``s``: linear warm-up, then cosine / step / constant."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    step_every = max(1, (cfg.step_epochs or max(1, cfg.epochs // 3)) * steps_per_epoch)
    if cfg.schedule not in ("cosine", "step", "constant"):
        raise ValueError(f"schedule must be 'cosine', 'step' or 'constant', got {cfg.schedule!r}")

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))
        if cfg.schedule == "step":
            return cfg.step_gamma ** ((s - warmup) // step_every)
        return 1.0

    return factor


def set_deterministic() -> None:
    """Deterministic kernels for this process (cuDNN, cuBLAS, scatter ops): a GPU run repeats bitwise,
    at some cost in speed. CPU kernels here are deterministic already."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS makes its handle
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def _amp(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    if not cfg.amp or device.type != "cuda":
        return False, torch.float32  # CPU autocast is slower than fp32 for these models: off
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ------------------------------------------------------------------------------------------------ evaluate
@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Any,
    forward: Forward,
    device: torch.device,
    amp: tuple[bool, torch.dtype] = (False, torch.float32),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [N, C] float32, targets, indices) over ``loader`` in eval mode, gathered across DDP ranks.

    Under DDP every rank calls this (it is a collective) and gets the whole split. A loader that says it
    is not sharded (``world_size == 1``: each rank holds every row) is not gathered. Gathered batches that
    carry "index" are put in dataset order with each (index, copy) kept once, so rows a sampler padded onto
    a short shard, or a loader that gives every rank the whole split, are not counted twice.
    """
    was = model.training
    model.eval()
    scores, targets, index, copies = [], [], [], []
    # Scoring a large split takes a while: a transient line (inside fit, a second line of its bar).
    for batch in progress(loader, desc="scoring", unit="batch", leave=False, total=len(loader),
                          disable=_rank_world()[0] != 0):  # fmt: skip
        with torch.autocast(device.type, dtype=amp[1], enabled=amp[0]):
            logits, y = forward(model, batch, device)
        scores.append(logits.float().cpu())
        targets.append(y.cpu())
        if "index" in batch:
            index.append(torch.as_tensor(batch["index"]).cpu())
            copies.append(
                torch.as_tensor(batch["copy"]).cpu() if "copy" in batch else torch.zeros_like(index[-1])
            )
    model.train(was)
    s = torch.cat(scores).numpy() if scores else np.zeros((0, 0), np.float32)
    y = torch.cat(targets).numpy() if targets else np.zeros(0, np.int64)
    i = torch.cat(index).numpy() if index else np.arange(len(s))
    c = torch.cat(copies).numpy() if copies else np.zeros(len(s), np.int64)
    _, world = _rank_world()
    if world > 1 and getattr(loader, "world_size", world) > 1:
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, (s, y, i, c, bool(index)))
        indexed = all(p[4] for p in parts if len(p[0]))
        parts = [p for p in parts if len(p[0])]
        if parts:
            s, y, i, c = (np.concatenate([p[k] for p in parts]) for k in range(4))
        if indexed and len(s):
            # one row per (index, copy), in dataset order: np.unique sorts and keeps first occurrences
            _, keep = np.unique(i.astype(np.int64) * (int(c.max()) + 1) + c, return_index=True)
            s, y, i = s[keep], y[keep], i[keep]
    return s, y, i


# ----------------------------------------------------------------------------------------------------- fit
@dataclass
class FitResult:
    """What ``fit`` returns: the model with the selected (best-on-val) weights, and the run's record."""

    model: nn.Module
    history: list[dict[str, Any]]  # one row per epoch: train_loss, lr, val_<metric>, seconds
    best_epoch: int
    best_score: float
    checkpoint: Optional[Path] = None  # out_dir/best.pt
    last: Optional[Path] = None  # out_dir/last.pt
    val_metrics: dict[str, Any] = field(default_factory=dict)  # the selected epoch's full val metrics


def atomic_save(obj: Any, path: Union[str, Path]) -> Path:
    """``torch.save`` to a temporary sibling, then rename: readers see the old file or the new, never half.

    The data go through an open file, not the temporary name: ``torch.save`` names the archive inside the
    file after the path it is given, so saving to ``.best.pt.<pid>.tmp`` gave the same weights different
    bytes on every run. Through a file object the archive is always ``archive/``: the same object saves
    to the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
    os.replace(tmp, path)
    return path


def _scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, epoch, rank, 0xF17]).generate_state(1)[0])


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any = None,
    cfg: Optional[TrainConfig] = None,
    *,
    task: str = "multiclass",
    classes: Optional[list[str]] = None,
    forward: Optional[Forward] = None,
    loss_fn: Optional[nn.Module] = None,
    out_dir: Union[None, str, Path] = None,
    resume: Optional[bool] = None,
    device: Union[None, str, torch.device] = None,
    meta: Optional[dict[str, Any]] = None,
    on_epoch_end: Optional[Callable[[dict[str, Any]], None]] = None,
    desc: str = "fit",
) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs, select the best epoch on ``val_loader`` (see the module
    docstring). ``meta`` (plain data: names, classes, configs) is stored in the checkpoints.

    Without ``val_loader`` (or an empty one) the last epoch is kept: selection never falls back to test.
    ``resume`` / ``device`` default to ``cfg.resume`` / ``cfg.device``.
    """
    cfg = cfg or TrainConfig()
    resume = cfg.resume if resume is None else resume
    if task not in ("multiclass", "multilabel"):
        raise ValueError(f"task must be 'multiclass' or 'multilabel', got {task!r}")
    if cfg.grad_accum < 1:
        raise ValueError(f"grad_accum must be >= 1, got {cfg.grad_accum}")
    rank, world = _rank_world()
    device = default_device(device if device is not None else cfg.device)
    if cfg.deterministic:
        set_deterministic()
    forward = forward or image_forward("imagenet", cfg.channels_last)
    loss_fn = loss_fn or (nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss())
    inner = model.to(device)
    if cfg.channels_last:
        inner = inner.to(memory_format=torch.channels_last)
    params = [p for p in inner.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires a gradient: nothing to train (check train_blocks)")
    net: nn.Module = inner
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            inner,
            device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None,
        )
    opt = make_optimizer(params, cfg)
    n_batches = len(train_loader)
    steps_per_epoch = max(1, math.ceil(n_batches / cfg.grad_accum))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, steps_per_epoch))
    amp = _amp(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp[0] and amp[1] == torch.float16)

    out = Path(out_dir) if out_dir is not None else None
    last_path, best_path = (out / "last.pt", out / "best.pt") if out is not None else (None, None)
    history: list[dict[str, Any]] = []
    best_score, best_epoch, start = -math.inf, -1, 0
    best_state: Optional[dict[str, torch.Tensor]] = None
    best_metrics: dict[str, Any] = {}
    cfg_dict = asdict(cfg)
    if resume and last_path is not None and last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=True)
        changed = {
            k: (state["cfg"].get(k), v)
            for k, v in cfg_dict.items()
            if state["cfg"].get(k) != v and k not in ("out_dir", "resume", "device")
        }
        if changed:
            warnings.warn(
                f"resuming {last_path} with changed settings {changed}: the run is no longer exact",
                stacklevel=2,
            )
        inner.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, best_score, best_epoch = state["history"], state["best_score"], state["best_epoch"]
        best_metrics, start = state.get("best_metrics", {}), state["epoch"] + 1
        if best_path.exists():
            best_state = torch.load(best_path, map_location=device, weights_only=True)["model"]

    # Decided once for all ranks: a val split smaller than the world leaves some ranks an empty shard, and
    # every rank must still join predict's gather (a rank that skipped it would hang the others).
    n_val = torch.tensor([len(val_loader) if val_loader is not None else 0], dtype=torch.int64)
    if world > 1:
        n_val = all_reduce(n_val.to(device), device, dist.ReduceOp.MAX).cpu()
    has_val = int(n_val[0]) > 0
    val_batches = val_loader if val_loader is not None else []
    # the running loss stays on the device (no GPU sync per step); float64 where the device has it
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    # One bar per fit; each epoch's steps are a second line of it that goes when the epoch ends.
    bar = progress(range(start, cfg.epochs), desc=desc, initial=start, total=cfg.epochs, unit="epoch",
                   disable=rank != 0)  # fmt: skip
    for epoch in bar:
        t0 = time.perf_counter()
        train_loader.set_epoch(epoch)
        net.train()
        loss_sum = torch.zeros(2, dtype=acc_dtype, device=device)  # (sum of per-sample losses, samples)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(_epoch_seed(cfg.seed, epoch, rank))
            # one iterator, made here: tqdm calls iter() on an iterable it is given, and a second iter()
            # would move a BatchLoader on to the next epoch's draws
            batches = iter(train_loader)
            steps = progress(batches, desc=f"epoch {epoch}", leave=False, disable=rank != 0, total=n_batches)
            for i, batch in enumerate(steps):
                group_start = i - i % cfg.grad_accum
                group = min(cfg.grad_accum, n_batches - group_start)  # the last group may be shorter
                sync = i - group_start == group - 1
                ctx = net.no_sync() if world > 1 and not sync else contextlib.nullcontext()
                with ctx:
                    with torch.autocast(device.type, dtype=amp[1], enabled=amp[0]):
                        logits, y = forward(net, batch, device)
                    loss = loss_fn(logits.float(), y.float() if task == "multilabel" else y)
                    scaler.scale(loss / group).backward()
                loss_sum[0] += loss.detach().to(acc_dtype) * len(y)
                loss_sum[1] += len(y)
                if sync:
                    scaler.step(opt)
                    scaler.update()
                    opt.zero_grad(set_to_none=True)
                    sched.step()
                    if rank == 0 and (i // cfg.grad_accum) % LOG_EVERY == 0:  # one GPU sync per interval
                        mean = float(loss_sum[0] / loss_sum[1].clamp(min=1))
                        steps.set_postfix(loss=f"{mean:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        if world > 1:
            loss_sum = all_reduce(loss_sum, device)
            for b in inner.buffers():  # BatchNorm statistics: rank 0's, so all ranks hold the same model
                broadcast_(b, device, 0)
        loss_total, loss_n = loss_sum.tolist()  # the epoch's one read of the running loss
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_total / max(1.0, loss_n),
            "lr": float(sched.get_last_lr()[0]),
            "seconds": time.perf_counter() - t0,
        }
        if has_val:
            scores, y_val, _ = predict(inner, val_batches, forward, device, amp)
            metrics = compute_metrics(
                y_val, scores, task, classes or [str(c) for c in range(scores.shape[1])]
            )
            row.update(_scalars(metrics, "val_"))
            score = selection_value(metrics, cfg.select_on, task)
        else:
            metrics, score = {}, float(epoch)  # no validation split: the last epoch wins (never test)
        row["val_score"] = score
        history.append(row)
        if score > best_score:
            best_score, best_epoch, best_metrics = score, epoch, metrics
            best_state = {k: v.detach().clone() for k, v in inner.state_dict().items()}
            if rank == 0 and best_path is not None:
                atomic_save(
                    {"model": best_state, "epoch": epoch, "score": score, "meta": meta or {}}, best_path
                )
        if rank == 0 and last_path is not None:
            atomic_save(
                {
                    "model": inner.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "best_metrics": _plain(best_metrics),
                    "cfg": cfg_dict,
                    "meta": meta or {},
                },
                last_path,
            )
        if world > 1:
            _barrier(device)  # no rank runs ahead of the checkpoint
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{score:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(row)
    if best_state is not None:
        inner.load_state_dict(best_state)
    return FitResult(inner, history, best_epoch, best_score, best_path, last_path, best_metrics)


def _plain(x: Any) -> Any:
    """Metrics as the plain types ``torch.load(weights_only=True)`` accepts."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


# ------------------------------------------------------------------------------------------------ stage 1
@dataclass
class Stage1Result:
    """What ``train_stage1`` returns: the selected classifier, val/test metrics, history, checkpoint."""

    model: nn.Module
    metrics: dict[str, dict[str, Any]]  # "val" / "test" -> compute_metrics(...)
    history: list[dict[str, Any]]
    best_epoch: int
    checkpoint: Optional[Path]


def stage1_loaders(
    dataset: Any, augment: AugmentConfig, seed: int, distributed: Optional[bool] = None
) -> dict[str, Any]:
    """Train / val / test ``make_loader`` loaders (train batch-augmented with ``augment.copies`` views)."""
    from mmkit.augment import make_loader

    if distributed is None:
        distributed = _rank_world()[1] > 1
    return {
        split: make_loader(
            dataset,
            split,
            augment.batch_size,
            copies=augment.copies,
            preset=augment.preset,
            image_size=augment.image_size,
            seed=derive_seed(seed, "stage1"),  # the root seed's stage-1 stream (the bank draws its own)
            num_workers=augment.num_workers,
            distributed=distributed or None,
        )
        for split in ("train", "val", "test")
    }


def build_stage1(dataset: Any, model: ModelConfig, augment: AugmentConfig, seed: int = 0) -> nn.Module:
    """Backbone + linear classifier for ``dataset``'s classes, initialised from ``seed``, layer policy applied."""
    from mmkit.models import ImageClassifier, apply_layer_policy, create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "backbone_init"))  # the same init on every rank and every run
        backbone = create_backbone(model.backbone, pretrained=model.pretrained, image_size=augment.image_size)
        classifier = ImageClassifier(backbone, len(dataset.classes))
    return apply_layer_policy(classifier, model.train_blocks)


def train_stage1(
    dataset: Any,
    model: Optional[ModelConfig] = None,
    train: Optional[TrainConfig] = None,
    augment: Optional[AugmentConfig] = None,
    *,
    out_dir: Union[None, str, Path] = None,
    resume: Optional[bool] = None,
    device: Union[None, str, torch.device] = None,
    on_epoch_end: Optional[Callable[[dict[str, Any]], None]] = None,
) -> Stage1Result:
    """Fine-tune an image classifier on ``dataset`` (stage 1) and score val and test with the epoch chosen
    on val. ``out_dir`` (default ``train.out_dir``) receives best.pt, last.pt and config.json.

    Example:
        >>> ds = load_dataset(DataConfig(dataset="synthetic_food101"))  # doctest: +SKIP
        >>> r = train_stage1(ds, ModelConfig("timm:test_resnet"), TrainConfig(epochs=2, lr=0.05),
        ...                  AugmentConfig(image_size=64, copies=2), out_dir="runs/s1")  # doctest: +SKIP
        >>> r.metrics["test"]["accuracy"], r.checkpoint  # doctest: +SKIP
    """
    from mmkit.config import save_configs

    model_cfg, train_cfg, augment_cfg = (
        model or ModelConfig(),
        train or TrainConfig(),
        augment or AugmentConfig(),
    )
    train_cfg = resolve_select_on(train_cfg, dataset)
    init_distributed()
    rank, _ = _rank_world()
    out = Path(out_dir if out_dir is not None else train_cfg.out_dir)
    if rank == 0:
        save_configs(out / "config.json", model_cfg, train_cfg, augment_cfg)
    net = build_stage1(dataset, model_cfg, augment_cfg, train_cfg.seed)
    loaders = stage1_loaders(dataset, augment_cfg, train_cfg.seed)
    forward = image_forward(net.backbone.norm, train_cfg.channels_last)
    classes = list(dataset.classes)
    meta = stage1_meta(net.backbone, model_cfg, augment_cfg, dataset)
    result = fit(
        net,
        loaders["train"],
        loaders["val"],
        train_cfg,
        task=dataset.task,
        classes=classes,
        forward=forward,
        out_dir=out,
        resume=resume,
        device=device,
        meta=meta,
        on_epoch_end=on_epoch_end,
        desc="stage 1",
    )
    dev = next(result.model.parameters()).device
    metrics = {}
    for split in ("val", "test"):
        scores, y, _ = predict(result.model, loaders[split], forward, dev, _amp(train_cfg, dev))
        metrics[split] = compute_metrics(y, scores, dataset.task, classes) if len(y) else {"n": 0}
    return Stage1Result(result.model, metrics, result.history, result.best_epoch, result.checkpoint)


def resolve_select_on(cfg: TrainConfig, dataset: Any) -> TrainConfig:
    """``cfg`` with ``select_on="auto"`` made the dataset's headline metric (``metrics.headline_metric``:
    macro_f1 on FPUS23's imbalanced head task, accuracy / mAP elsewhere), so the epoch is picked by the
    number the task reports."""
    import dataclasses

    from mmkit.metrics import headline_metric

    if cfg.select_on != "auto" or dataset is None:
        return cfg
    return dataclasses.replace(cfg, select_on=headline_metric(dataset.task, dataset))


STAGE1_FORMAT = 2  # 2: the checkpoint describes itself (hub tag / weights file, norm, preset, version)


def stage1_meta(backbone: Any, model: ModelConfig, augment: AugmentConfig, dataset: Any) -> dict[str, Any]:
    """What a stage-1 checkpoint records about itself, so stage 2 can rebuild its preprocessing exactly.

    ``pretrained`` is split into ``hub_tag`` or ``weights_file``: the tag decides the mean/std a hub model
    expects (``vit_small_patch16_224.dino`` uses ImageNet's, its default tag 0.5), and a rebuild without
    the tag would take the default tag's. ``norm`` is the (mean, std) stage 1 normalised with.
    """
    from mmkit import __version__

    pretrained = model.pretrained
    is_file = pretrained is not None and Path(str(pretrained)).is_file()
    return {
        "kind": "stage1",
        "format": STAGE1_FORMAT,
        "mmkit_version": __version__,
        "backbone": model.backbone,
        "pretrained": pretrained,
        "hub_tag": None if is_file or pretrained is None else str(pretrained),
        "weights_file": str(Path(str(pretrained)).resolve()) if is_file else None,
        "norm": [list(backbone.norm[0]), list(backbone.norm[1])],
        "image_size": augment.image_size,
        "preset": augment.preset,
        "copies": augment.copies,
        "train_blocks": model.train_blocks,
        "classes": list(dataset.classes),
        "task": dataset.task,
        "dataset": getattr(dataset, "name", None),
        # which rows stage 1 trained on (short digests of their ids: 8 bytes each, about 1 MB for Food-101),
        # so stage 2 can refuse to score a val or test row this backbone fitted (restore_stage1_settings)
        "train_id_digests": sorted(id_digests(dataset.ids("train"))),
    }


def id_digests(ids: list[str]) -> list[str]:
    """Short, stable digests of record ids (BLAKE2b, 8 bytes, hex): what a stage-1 checkpoint keeps of its
    training rows.

    Example:
        >>> id_digests(["train/apple_pie/apple_pie_1.jpg"])[0] == id_digests(["train/apple_pie/apple_pie_1.jpg"])[0]
        True
    """
    import hashlib

    return [hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest() for i in ids]


def check_split(meta: dict[str, Any], dataset: Any, source: Union[str, Path]) -> None:
    """Refuse a stage-1 checkpoint that trained on val or test rows of ``dataset``: its features of those
    rows are fitted, not held out, so every val/test score of stage 2 would be leaked. It happens when
    notebook 03 ran with other data settings than 04 (another ``seed``, ``val_fraction``, ``test_fraction``,
    ``min_train_groups``, ``split_file``): the carved splits then differ. A checkpoint written before
    checkpoints kept their training rows passes unchecked."""
    trained = set(meta.get("train_id_digests") or [])
    if not trained:
        return
    leaked = {}
    for split in ("val", "test"):
        if split in getattr(dataset, "splits", {}):
            ids = dataset.ids(split)
            leaked[split] = [i for i, d in zip(ids, id_digests(ids)) if d in trained]
    if any(leaked.values()):
        counts = " and ".join(f"{len(v)} {k}" for k, v in leaked.items() if v)
        example = next(v for v in leaked.values() if v)[:3]
        raise ValueError(
            f"{source} was fine-tuned on {counts} rows of this dataset (e.g. {example}): stage 2 would score "
            "rows its backbone trained on. Its split differs from this one: run notebook 03 again with this "
            "notebook's data settings (dataset, data_root, seed, val_fraction, test_fraction, "
            "min_train_groups, split_file, group_col), or pass a checkpoint trained on this split"
        )


def read_stage1_meta(path: Union[str, Path]) -> dict[str, Any]:
    """The ``meta`` of a stage-1 checkpoint (``best.pt`` / ``last.pt`` of ``train_stage1``); a clear error
    for a missing file or one that is not a stage-1 checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"stage-1 checkpoint {path} does not exist (notebook parameter checkpoint, "
            "FusionConfig(checkpoint=...)); pass the best.pt that notebook 03 printed"
        )
    try:  # mmap: the meta without reading every tensor of a large checkpoint
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old (non-zip) torch file cannot be mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    meta = (state.get("meta") or {}) if isinstance(state, dict) else {}
    if meta.get("kind") != "stage1":
        raise ValueError(f"{path} is not a stage-1 checkpoint of mmkit.train (its meta: {sorted(meta)})")
    return dict(meta)


def load_stage1(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The classifier saved by ``train_stage1`` in ``best.pt`` / ``last.pt``, rebuilt from its meta: the
    backbone architecture, its normalisation (``backbone.norm``: the checkpoint's, so a hub tag's mean/std
    survive without the tag's weights being fetched), the input size and the layer policy. ``clf.classes``
    and ``clf.meta`` hold the class list and the whole meta. The global torch RNG is left untouched.

    Example:
        >>> clf = load_stage1("runs/s1/best.pt")  # doctest: +SKIP
        >>> clf.backbone.num_features, clf.backbone.norm, clf.classes  # doctest: +SKIP
    """
    from mmkit.models import ImageClassifier, apply_layer_policy, create_backbone

    meta = read_stage1_meta(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: keep the caller's RNG
        backbone = create_backbone(meta["backbone"], pretrained=None, image_size=meta.get("image_size"))
        clf = ImageClassifier(backbone, len(meta["classes"]))
    clf.load_state_dict(state["model"])
    if meta.get("norm"):
        mean, std = meta["norm"]
        backbone.norm = (tuple(float(m) for m in mean), tuple(float(v) for v in std))
    backbone.pretrained = meta.get("pretrained")
    if meta.get("train_blocks"):
        apply_layer_policy(clf, meta["train_blocks"])
    clf.classes = list(meta["classes"])
    clf.meta = meta
    return clf.to(device).eval()


def check_classes(stored: list[str], dataset: Any, source: Union[str, Path]) -> None:
    """A model trained on ``stored`` classes applied to ``dataset``: another class *count* is an error
    (the head has the wrong number of outputs); the same count under other names is a warning (the order
    may still match, e.g. renamed labels; the predictions are read in the stored order)."""
    classes = [str(c) for c in dataset.classes]
    stored = [str(c) for c in stored]
    name = getattr(dataset, "name", "the dataset")
    if len(stored) != len(classes):
        raise ValueError(
            f"{source} was trained on {len(stored)} classes ({stored[:5]}{'...' if len(stored) > 5 else ''}) "
            f"but {name} has {len(classes)} ({classes[:5]}{'...' if len(classes) > 5 else ''}): it is a "
            "model of another dataset. Pass a checkpoint trained on this dataset (notebook parameter "
            "checkpoint, FusionConfig(checkpoint=...)), or none"
        )
    if stored != classes:
        diff = [(a, b) for a, b in zip(stored, classes) if a != b]
        warnings.warn(
            f"{source} was trained on classes named differently from {name}'s "
            f"(checkpoint vs dataset, e.g. {diff[:3]}); class i of the checkpoint is taken as class i here",
            stacklevel=3,
        )


# the stage-1 settings stage 2 takes from a checkpoint: (config, field, what to tell the user)
_RESTORED = (
    ("model", "backbone", "backbone"),
    ("model", "pretrained", "pretrained"),
    ("augment", "image_size", "image_size"),
    ("augment", "preset", "preset"),
)


def restore_stage1_settings(
    checkpoint: Union[None, str, Path],
    model: ModelConfig,
    augment: AugmentConfig,
    dataset: Any = None,
    fallback: Optional[dict[str, Any]] = None,
) -> tuple[ModelConfig, AugmentConfig]:
    """``model`` and ``augment`` for stage 2 on top of ``checkpoint``: the settings a ``None`` field
    leaves open (backbone, pretrained, image_size, preset) come from the checkpoint; an explicit value
    that differs from the checkpoint's is an error naming both. Without a checkpoint, open fields take
    ``fallback`` (by field name), else the config's dataclass default. With ``dataset``, the
    checkpoint's classes are checked against it (``check_classes``). The normalisation is not a setting:
    stage 2 always takes the checkpoint's (``load_stage1``).

    Example:
        >>> m, a = restore_stage1_settings(None, ModelConfig(backbone=None), AugmentConfig(image_size=None),
        ...                                fallback={"backbone": "timm:test_resnet", "image_size": 64})
        >>> m.backbone, a.image_size
        ('timm:test_resnet', 64)
    """
    import dataclasses

    configs = {"model": model, "augment": augment}
    meta = read_stage1_meta(checkpoint) if checkpoint is not None else {}
    if meta.get("mmkit_version"):
        from mmkit import __version__

        if str(meta["mmkit_version"]).split(".")[0] != __version__.split(".")[0]:
            warnings.warn(
                f"{checkpoint} was written by mmkit {meta['mmkit_version']}, this is {__version__}",
                stacklevel=2,
            )
    defaults = {"model": ModelConfig(), "augment": AugmentConfig()}
    changes: dict[str, dict[str, Any]] = {"model": {}, "augment": {}}
    for which, name, param in _RESTORED:
        given = getattr(configs[which], name)
        if meta and name in meta:
            stored = meta[name]
            if given is not None and given != stored:
                raise ValueError(
                    f"{param}={given!r} was given, but the stage-1 checkpoint {checkpoint} was trained with "
                    f"{param}={stored!r}. Leave {param} unset to take the checkpoint's (notebook parameter "
                    f"{param}=None; in Python {type(configs[which]).__name__}({name}=None)), or pass a "
                    f"checkpoint trained with {param}={given!r}"
                )
            changes[which][name] = stored
        elif given is None and name != "pretrained":  # pretrained=None means random init: a value
            changes[which][name] = (fallback or {}).get(name, getattr(defaults[which], name))
    if meta and dataset is not None:
        check_classes(meta["classes"], dataset, checkpoint)
        check_split(meta, dataset, checkpoint)
    return (
        dataclasses.replace(model, **changes["model"]),
        dataclasses.replace(augment, **changes["augment"]),
    )


# ------------------------------------------------------------------------------------------ command line
def main(argv: Optional[list[str]] = None) -> int:
    """``python -m mmkit.train --<config field> VALUE ...``: stage 1 on a ``load_dataset`` dataset."""
    from mmkit.config import parse_value
    from mmkit.data import load_dataset
    from mmkit.report import write_metrics

    parser = argparse.ArgumentParser(prog="python -m mmkit.train", description=main.__doc__)
    seen = set()
    for cls in (DataConfig, ModelConfig, TrainConfig, AugmentConfig):
        for f in fields(cls):
            if f.name not in seen:
                seen.add(f.name)
                parser.add_argument(f"--{f.name}", type=parse_value, default=None)
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    from mmkit.config import config_from_params

    data_cfg, model_cfg = config_from_params(DataConfig, args), config_from_params(ModelConfig, args)
    train_cfg, augment_cfg = config_from_params(TrainConfig, args), config_from_params(AugmentConfig, args)
    rank, _ = init_distributed()
    dataset = load_dataset(data_cfg)
    result = train_stage1(dataset, model_cfg, train_cfg, augment_cfg)
    if rank == 0:
        write_metrics(
            train_cfg.out_dir,
            {
                "val_accuracy": result.metrics["val"].get("accuracy"),
                "test_accuracy": result.metrics["test"].get("accuracy"),
                "val_macro_f1": result.metrics["val"].get("macro_f1"),
                "test_macro_f1": result.metrics["test"].get("macro_f1"),
                "best_epoch": result.best_epoch,
                "checkpoint": str(result.checkpoint),
            },
        )
        print(f"checkpoint: {result.checkpoint}; test accuracy {result.metrics['test'].get('accuracy')}")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0


__all__ = [
    "FitResult",
    "Stage1Result",
    "atomic_save",
    "all_reduce",
    "batch_forward",
    "broadcast_",
    "build_stage1",
    "collective_device",
    "default_device",
    "fit",
    "image_forward",
    "init_distributed",
    "check_classes",
    "load_stage1",
    "lr_lambda",
    "make_optimizer",
    "predict",
    "read_stage1_meta",
    "resolve_select_on",
    "restore_stage1_settings",
    "set_deterministic",
    "stage1_loaders",
    "stage1_meta",
    "train_stage1",
]

if __name__ == "__main__":
    raise SystemExit(main())
