"""Stage 2: train a fusion head on image features (the feature bank, or a backbone run live) + text features.

``train_stage2`` builds ``Stage2Model`` (a ``mmkit.heads.FusionModel``, plus the backbone on the live path)
and trains it with ``mmkit.train.fit``, the stage-1 loop (selection on val, checkpoints, exact resume), on
batches from ``mmkit.features.BankLoader`` (M of the K cached views per sample) or ``LiveLoader``
(``make_loader`` images, backbone run every step). ``predict`` scores a split, ``missing_modality_report``
scores it again with each modality removed, ``fused_features`` / ``project_2d`` give the head's inputs and a
2-D view of them for plotting.

Example:
    >>> result = train_stage2(ds, text, bank=bank, head="gated", train=TrainConfig(epochs=10, lr=1e-2))  # doctest: +SKIP
    >>> result.metrics["test"]["accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from mmkit.config import AugmentConfig, FusionConfig, TrainConfig
from mmkit.heads import FusionModel, feature_stats, make_head, modality_dropout_masks
from mmkit.seeding import derive_seed, torch_generator


class Stage2Model(nn.Module):
    """The fusion model of stage 2 on either path.

    Bank path (``backbone=None``): batches carry cached image ``features``. Live path: batches carry uint8
    ``image``s and the backbone runs every step (its trainable part set by ``apply_layer_policy``). Both
    carry ``text_features`` (joined by id) and optionally ``image_present`` / ``text_present`` masks.
    ``modalities`` = "image" or "text" trains and evaluates a single-modality baseline with the same head
    and trainer: the other modality is always absent (substituted).
    """

    def __init__(self, fusion: FusionModel, backbone: Optional[nn.Module] = None, modalities: str = "both"):
        super().__init__()
        if modalities not in ("both", "image", "text"):
            raise ValueError(f"modalities must be 'both', 'image' or 'text', got {modalities!r}")
        self.fusion, self.backbone, self.modalities = fusion, backbone, modalities

    def image_features(self, batch: dict[str, Any]) -> torch.Tensor:
        device = self.fusion.image_mean.device
        if "features" in batch:
            return batch["features"].to(device, non_blocking=True)
        from mmkit.augment import normalize

        norm = getattr(self.backbone, "norm", "imagenet")
        return self.backbone(normalize(batch["image"], norm, device=device))

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits [B, C]. Image features [B, F, D] (a cross-fitted bank's val/test rows, one view per fold
        backbone) give the mean of the F folds' logits: each fold's features go through the head in the
        space it trained in. Logits, not probabilities, are averaged: the result stays a logit for the loss,
        ``compute_metrics`` and the multi-label threshold at 0, and for a linear head it equals the head on
        the folds' mean standardised features."""
        image = self.image_features(batch)
        text = batch["text_features"].to(image.device, non_blocking=True)
        n = len(image)
        image_present, text_present = batch.get("image_present"), batch.get("text_present")
        if self.modalities == "image":
            text_present = torch.zeros(n, dtype=torch.bool)
        elif self.modalities == "text":
            image_present = torch.zeros(n, dtype=torch.bool)
        move = lambda m: None if m is None else m.to(image.device)  # noqa: E731
        if image.ndim == 3:
            folds = [
                self.fusion(image[:, f], text, move(image_present), move(text_present))
                for f in range(image.shape[1])
            ]
            return torch.stack(folds).mean(0)
        return self.fusion(image, text, move(image_present), move(text_present))


class LiveLoader:
    """``make_loader`` batches plus their text features (looked up by id) and modality-dropout masks:
    the live path's stage-2 batches (backbone run every step on fresh augmentations)."""

    def __init__(self, loader: Any, text: Any, split: str, modality_dropout: float = 0.0, seed: int = 0):
        self.loader, self.text, self.split, self.seed = loader, text, split, seed
        self.modality_dropout = modality_dropout if split == "train" else 0.0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    def __iter__(self):
        gen = torch_generator(self.seed, "live_batches", self.epoch)
        for batch in self.loader:
            batch["text_features"] = torch.from_numpy(self.text.lookup(self.split, batch["id"])).float()
            if self.modality_dropout > 0:
                n = len(batch["id"])
                batch["image_present"], batch["text_present"] = modality_dropout_masks(
                    n, self.modality_dropout, gen
                )
            yield batch


def predict(
    model: Stage2Model, loader: Any, drop: Optional[str] = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, targets, indices) over ``loader`` in eval mode, by ``mmkit.train.predict`` (the loop ``fit``
    scores val with: gathered across DDP ranks, in dataset order); ``drop`` = "image" or "text" removes that
    modality from every sample (the ``missing_fill`` substitute takes its place)."""
    from mmkit.train import batch_forward
    from mmkit.train import predict as predict_batches

    def forward(m: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if drop in ("image", "text"):
            batch = {**batch, f"{drop}_present": torch.zeros(len(batch["id"]), dtype=torch.bool)}
        return batch_forward(m, batch, device)

    return predict_batches(model, loader, forward, model.fusion.image_mean.device)


def missing_modality_report(
    model: Stage2Model, loaders: dict[str, Any], task: str, classes: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{split: {"both" | "no_text" | "no_image": metrics}}: the same model with a modality removed from
    every sample (replaced by the training mean under ``missing_fill="mean"``, by zeros under "zero")."""
    from mmkit.metrics import compute_metrics

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for split, loader in loaders.items():
        out[split] = {}
        for name, drop in (("both", None), ("no_text", "text"), ("no_image", "image")):
            scores, y, _ = predict(model, loader, drop)
            out[split][name] = compute_metrics(y, scores, task, classes)
    return out


def project_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """A 2-D projection of features for plotting: "pca" (fast, linear) or "tsne" (local structure)."""
    x = np.asarray(features, dtype=np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, perplexity=min(30.0, max(2.0, (len(x) - 1) / 3)), random_state=seed).fit_transform(x)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


@torch.no_grad()
def fused_features(model: Stage2Model, loader: Any) -> tuple[np.ndarray, np.ndarray]:
    """(the head's input: standardised concat(image, text) [N, D+T], targets) over ``loader``; a
    cross-fitted bank's rows: the mean over its fold backbones of the standardised image features."""
    model.eval()
    feats, ys = [], []
    for batch in loader:
        image = model.image_features(batch)
        text = batch["text_features"].to(image.device)
        if image.ndim == 3:
            parts = [model.fusion.standardise(image[:, f], text) for f in range(image.shape[1])]
            z = torch.cat([torch.stack([p[0] for p in parts]).mean(0), parts[0][1]], dim=1)
        else:
            z = torch.cat(model.fusion.standardise(image, text), dim=1)
        feats.append(z.float().cpu())
        ys.append(batch["label"])
    return torch.cat(feats).numpy(), torch.cat(ys).numpy()


# -------------------------------------------------------------------------------------------- training
@dataclass
class Stage2Result:
    """What ``train_stage2`` returns: the selected model, its metrics and the run's record."""

    model: Stage2Model
    metrics: dict[str, dict[str, Any]]  # split -> compute_metrics(...) of the val-selected model
    history: list[dict[str, Any]]  # mmkit.train.fit's rows: train_loss, lr, val_<metric>, seconds
    best_epoch: int
    checkpoint: Optional[Path]
    loaders: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch_seconds(self) -> list[float]:
        return [h["seconds"] for h in self.history]


def train_stage2(
    dataset: Any,
    text: Any,
    *,
    bank: Any = None,
    backbone: Optional[nn.Module] = None,
    head: str = "concat-linear",
    fusion: Optional[FusionConfig] = None,
    train: Optional[TrainConfig] = None,
    augment: Optional[AugmentConfig] = None,
    train_blocks: str = "none",
    modalities: str = "both",
    out_dir: Optional[str | Path] = None,
    resume: bool = False,
    device: Optional[str | torch.device] = None,
    on_epoch_end: Optional[Any] = None,
) -> Stage2Result:
    """Train a fusion head on the feature bank (``bank``) or live (``backbone``; trainable per
    ``train_blocks``), select the epoch on validation, and score val and test.

    ``augment.copies`` is M, the views of each sample per step (on the bank: M of its K cached views;
    with ``fusion.bank_views="epochs"`` epoch e reads views e*M .. e*M+M-1, each view once, and the bank
    must hold K >= ``train.epochs`` x M).
    Training is ``mmkit.train.fit`` (the stage-1 loop): optimiser and schedule from ``train``, selection on
    val, ``out_dir/best.pt`` + ``last.pt`` checkpoints, exact ``resume``; ``on_epoch_end(row)`` per epoch.

    Example:
        >>> result = train_stage2(ds, text, bank=bank, head="gated", train=TrainConfig(epochs=10, lr=1e-2))  # doctest: +SKIP
        >>> result.metrics["test"]["accuracy"]  # doctest: +SKIP
    """
    from mmkit.metrics import compute_metrics
    from mmkit.train import batch_forward, default_device, fit

    fusion, train, augment = fusion or FusionConfig(), train or TrainConfig(), augment or AugmentConfig()
    from mmkit.train import resolve_select_on

    train = resolve_select_on(train, dataset)  # select_on="auto": the dataset's headline metric
    if (bank is None) == (backbone is None):
        raise ValueError("pass either bank= (feature bank path) or backbone= (live path)")
    device = default_device(device if device is not None else train.device)  # as stage 1 does
    loaders = stage2_loaders(dataset, text, bank, augment, fusion, train.seed)
    if bank is not None:
        covered = loaders["train"].epochs_covered  # each_once (bank_views="epochs"): the epochs K views last
        if covered is not None and covered < train.epochs:
            raise ValueError(
                f'bank_views="epochs": {train.epochs} stage-2 epochs x copies={augment.copies} need '
                f"{train.epochs * augment.copies} views of each training image, the bank holds K={bank.views}; "
                "build it with views=resolve_bank_views('epochs', epochs, copies)"
            )
        image_stats = _bank_stats(bank.features["train"])
        image_dim = bank.dim
    else:
        from mmkit.models import apply_layer_policy

        apply_layer_policy(backbone, train_blocks)
        backbone.to(device)
        image_stats = _live_image_stats(backbone, dataset, augment, device)
        image_dim = int(backbone.num_features)
    text_train = torch.from_numpy(text.lookup("train", dataset.ids("train")))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(train.seed, "heads"))  # the head's init depends on the seed only
        head_module = make_head(head, image_dim, text.dim, dataset.num_classes, hidden=fusion.hidden)
    model = Stage2Model(
        FusionModel(head_module, image_stats, feature_stats(text_train), fusion.missing_fill),
        backbone=backbone,
        modalities=modalities,
    ).to(device)
    meta = {"stage": 2, "head": head, "modalities": modalities, "classes": list(dataset.classes),
            "text_encoder": text.encoder, "bank": getattr(bank, "key", None)}  # fmt: skip
    fitted = fit(
        model, loaders["train"], loaders["val"], train, task=dataset.task, classes=list(dataset.classes),
        forward=batch_forward, out_dir=out_dir, resume=resume, device=device, meta=meta,
        on_epoch_end=on_epoch_end, desc=f"stage 2 {head if modalities == 'both' else modalities + '-only'}",
    )  # fmt: skip
    metrics = {}
    for split in ("val", "test"):
        if len(dataset.records(split)):
            scores, y, _ = predict(model, loaders[split])
            metrics[split] = compute_metrics(y, scores, dataset.task, list(dataset.classes))
    return Stage2Result(model, metrics, fitted.history, fitted.best_epoch, fitted.checkpoint, loaders)


def stage2_loaders(
    dataset: Any, text: Any, bank: Any, augment: AugmentConfig, fusion: FusionConfig, seed: int
) -> dict[str, Any]:
    """Train/val/test stage-2 loaders: from the bank (M of K views, or each view once under
    ``bank_views="epochs"``) or live (``make_loader`` + text)."""
    if bank is not None:
        from mmkit.features import BankLoader

        return {
            split: BankLoader(
                bank,
                text,
                dataset,
                split,
                augment.batch_size,
                copies=augment.copies,
                seed=seed,
                modality_dropout=fusion.modality_dropout,
                each_once=fusion.bank_views == "epochs",
            )  # fmt: skip
            for split in ("train", "val", "test")
        }
    from mmkit.train import stage1_loaders  # the live path reads images exactly as stage 1 does

    return {
        split: LiveLoader(loader, text, split, fusion.modality_dropout, seed)
        for split, loader in stage1_loaders(dataset, augment, seed).items()
    }


def _bank_stats(views: np.ndarray, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over samples and views of the [N, K, D] float16 bank, in chunks (a large bank stays
    on disk: only ``chunk`` samples are converted to float at a time)."""
    total, total_sq, n = 0.0, 0.0, 0
    for start in range(0, len(views), chunk):
        x = np.asarray(views[start : start + chunk], dtype=np.float64).reshape(-1, views.shape[-1])
        total, total_sq, n = total + x.sum(0), total_sq + (x * x).sum(0), n + len(x)
    mean = total / max(n, 1)
    var = np.maximum(total_sq / max(n, 1) - mean * mean, 0.0) * n / max(n - 1, 1)
    return torch.from_numpy(mean).float(), torch.from_numpy(np.sqrt(var)).float().clamp(min=1e-6)


@torch.no_grad()
def _live_image_stats(backbone: nn.Module, dataset: Any, augment: AugmentConfig, device: torch.device):
    """Standardisation statistics of the live path: the backbone's features of the training images'
    eval view at the start of training (the live features move when blocks train; the head adapts)."""
    from mmkit.augment import make_loader, normalize

    was = backbone.training
    backbone.eval()
    loader = make_loader(
        dataset, "train", augment.batch_size, preset=augment.preset, image_size=augment.image_size,
        augment=False, shuffle=False, num_workers=augment.num_workers,
    )  # fmt: skip
    norm = getattr(backbone, "norm", "imagenet")
    from mmkit.progress import progress

    batches = progress(
        loader, desc="live path: feature statistics", unit="batch", leave=False, total=len(loader)
    )
    feats = torch.cat([backbone(normalize(b["image"], norm, device=device)).float().cpu() for b in batches])
    backbone.train(was)
    return feature_stats(feats)


__all__ = [
    "LiveLoader",
    "Stage2Model",
    "Stage2Result",
    "fused_features",
    "missing_modality_report",
    "predict",
    "project_2d",
    "stage2_loaders",
    "train_stage2",
]
