"""Stage 2: fusion heads over image features + text features, modality dropout, missing-modality evaluation.

Heads (``make_head``), all ``head(image [N, D], text [N, T]) -> logits [N, C]``:

    concat-linear  Linear(concat(image, text)) — the seed's head
    concat-mlp     concat -> Linear -> GELU -> Dropout -> Linear
    late           per-modality linear classifiers; logits averaged with learned (softmax) weights
    gated          per-modality embeddings mixed with per-sample weights from a gate network

``FusionModel`` wraps a head with the input statistics of the training features: each modality is
standardised with its training mean and std before the head. A missing modality (modality dropout during
training, or the missing-modality report) is *substituted*: with ``missing_fill="mean"`` (default) its
standardised value is 0, i.e. the training-set mean of that modality's features (a learned-mean
substitution: the statistics are estimated on the training rows); with ``missing_fill="zero"`` the raw
features are set to 0 before standardising. The same substitution is used in training (modality dropout)
and evaluation, so a head trained with dropout has seen what it is asked to handle.

Training: ``train_stage2`` builds ``Stage2Model`` (the head, plus the backbone on the live path) and trains
it with ``mmkit.train.fit``, the stage-1 loop (selection on val, checkpoints, exact resume), on batches from
``mmkit.features.BankLoader`` (M of the K cached views per sample) or ``LiveLoader`` (``make_loader`` images,
backbone run every step). ``run_fusion_experiment`` is notebook 04: out-of-fold text features, the bank,
every head, image-only and text-only baselines trained the same way, and the missing-modality report.

Example:
    >>> head = make_head("gated", image_dim=8, text_dim=3, num_classes=3)
    >>> model = FusionModel(head, image_stats=(torch.zeros(8), torch.ones(8)), text_stats=(torch.zeros(3), torch.ones(3)))
    >>> model(torch.randn(4, 8), torch.randn(4, 3)).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from mmkit.config import AugmentConfig, FusionConfig, ModelConfig, TextConfig, TrainConfig

HEADS = ("concat-linear", "concat-mlp", "late", "gated")


class ConcatLinear(nn.Module):
    """The seed's head: one linear layer on the concatenated features."""

    def __init__(self, image_dim: int, text_dim: int, num_classes: int, **_: Any):
        super().__init__()
        self.fc = nn.Linear(image_dim + text_dim, num_classes)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([image, text], dim=1))


class ConcatMLP(nn.Module):
    """A one-hidden-layer MLP on the concatenated features."""

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        num_classes: int,
        hidden: int = 256,
        dropout: float = 0.1,
        **_: Any,
    ):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(image_dim + text_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, text], dim=1))


class LateFusion(nn.Module):
    """One linear classifier per modality; the fused logits are their average weighted by softmax(w)."""

    def __init__(self, image_dim: int, text_dim: int, num_classes: int, **_: Any):
        super().__init__()
        self.image_fc = nn.Linear(image_dim, num_classes)
        self.text_fc = nn.Linear(text_dim, num_classes)
        self.weight_logits = nn.Parameter(torch.zeros(2))

    @property
    def weights(self) -> torch.Tensor:
        """(image weight, text weight), summing to 1."""
        return torch.softmax(self.weight_logits, 0)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        w = self.weights
        return w[0] * self.image_fc(image) + w[1] * self.text_fc(text)


class GatedFusion(nn.Module):
    """Per-modality embeddings (Linear -> GELU) mixed by per-sample weights softmax(gate(concat)), then a
    linear classifier. ``last_weights`` keeps the most recent [N, 2] (image, text) weights for inspection."""

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        num_classes: int,
        hidden: int = 256,
        dropout: float = 0.1,
        **_: Any,
    ):
        super().__init__()
        self.image_proj = nn.Sequential(nn.Linear(image_dim, hidden), nn.GELU())
        self.text_proj = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU())
        self.gate = nn.Linear(image_dim + text_dim, 2)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_classes)
        self.last_weights: Optional[torch.Tensor] = None

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.gate(torch.cat([image, text], dim=1)), dim=1)
        self.last_weights = w.detach()
        mixed = w[:, :1] * self.image_proj(image) + w[:, 1:] * self.text_proj(text)
        return self.out(self.drop(mixed))


_HEAD_CLASSES = {
    "concat-linear": ConcatLinear,
    "concat-mlp": ConcatMLP,
    "late": LateFusion,
    "gated": GatedFusion,
}


def make_head(name: str, image_dim: int, text_dim: int, num_classes: int, **options: Any) -> nn.Module:
    """A fusion head by name (``HEADS``); ``options``: ``hidden``, ``dropout`` for the MLP and gated heads."""
    if name not in _HEAD_CLASSES:
        raise ValueError(f"unknown fusion head {name!r}; choose one of {', '.join(HEADS)}")
    return _HEAD_CLASSES[name](image_dim, text_dim, num_classes, **options)


def feature_stats(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over all leading dims (e.g. the [N, K, D] bank's samples and views)."""
    x = x.reshape(-1, x.shape[-1]).float()
    return x.mean(0), x.std(0).clamp(min=eps) if len(x) > 1 else torch.ones(x.shape[-1])


class FusionModel(nn.Module):
    """Standardise each modality with training statistics, substitute missing modalities, run the head.

    ``forward(image, text, image_present=None, text_present=None)``: the masks are bool [N] (True: the
    modality is there); a sample with a modality absent gets the ``missing_fill`` substitute for it.
    """

    def __init__(
        self,
        head: nn.Module,
        image_stats: tuple[torch.Tensor, torch.Tensor],
        text_stats: tuple[torch.Tensor, torch.Tensor],
        missing_fill: str = "mean",
    ):
        super().__init__()
        if missing_fill not in ("mean", "zero"):
            raise ValueError(f"missing_fill must be 'mean' or 'zero', got {missing_fill!r}")
        self.head, self.missing_fill = head, missing_fill
        self.register_buffer("image_mean", image_stats[0].float().clone())
        self.register_buffer("image_std", image_stats[1].float().clone())
        self.register_buffer("text_mean", text_stats[0].float().clone())
        self.register_buffer("text_std", text_stats[1].float().clone())

    def _prepare(
        self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, present: Optional[torch.Tensor]
    ):
        x = x.float()
        if present is not None and self.missing_fill == "zero":
            x = x * present.unsqueeze(1).to(x.dtype)
        z = (x - mean) / std
        if present is not None and self.missing_fill == "mean":
            z = z * present.unsqueeze(1).to(z.dtype)  # standardised 0 == the training mean
        return z

    def standardise(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        image_present: Optional[torch.Tensor] = None,
        text_present: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's inputs: each modality standardised, absent ones substituted."""
        return (
            self._prepare(image, self.image_mean, self.image_std, image_present),
            self._prepare(text, self.text_mean, self.text_std, text_present),
        )

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        image_present: Optional[torch.Tensor] = None,
        text_present: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return self.head(*self.standardise(image, text, image_present, text_present))


def modality_dropout_masks(n: int, p: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(image_present, text_present) bool [n]: each sample loses one modality (either, 50/50) with
    probability ``p``; never both."""
    drop = torch.rand(n, generator=generator) < p
    which = torch.rand(n, generator=generator) < 0.5
    return ~(drop & which), ~(drop & ~which)


# ------------------------------------------------------------------------------------------ stage-2 model
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
        image = self.image_features(batch)
        text = batch["text_features"].to(image.device, non_blocking=True)
        n = len(image)
        image_present, text_present = batch.get("image_present"), batch.get("text_present")
        if self.modalities == "image":
            text_present = torch.zeros(n, dtype=torch.bool)
        elif self.modalities == "text":
            image_present = torch.zeros(n, dtype=torch.bool)
        move = lambda m: None if m is None else m.to(image.device)  # noqa: E731
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
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7)
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
    """(the head's input: standardised concat(image, text) [N, D+T], targets) over ``loader``."""
    model.eval()
    feats, ys = [], []
    for batch in loader:
        image = model.image_features(batch)
        z = torch.cat(model.fusion.standardise(image, batch["text_features"].to(image.device)), dim=1)
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

    ``augment.copies`` is M, the views of each sample per step (on the bank: M of its K cached views).
    Training is ``mmkit.train.fit`` (the stage-1 loop): optimiser and schedule from ``train``, selection on
    val, ``out_dir/best.pt`` + ``last.pt`` checkpoints, exact ``resume``; ``on_epoch_end(row)`` per epoch.

    Example:
        >>> result = train_stage2(ds, text, bank=bank, head="gated", train=TrainConfig(epochs=10, lr=1e-2))  # doctest: +SKIP
        >>> result.metrics["test"]["accuracy"]  # doctest: +SKIP
    """
    from mmkit.metrics import compute_metrics
    from mmkit.train import batch_forward, default_device, fit

    fusion, train, augment = fusion or FusionConfig(), train or TrainConfig(), augment or AugmentConfig()
    if (bank is None) == (backbone is None):
        raise ValueError("pass either bank= (feature bank path) or backbone= (live path)")
    device = default_device(device if device is not None else train.device)  # as stage 1 does
    loaders = stage2_loaders(dataset, text, bank, augment, fusion, train.seed)
    if bank is not None:
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
        torch.manual_seed(train.seed)  # the head's init depends on the seed only
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
    """Train/val/test stage-2 loaders: from the bank (M of K views) or live (``make_loader`` + text)."""
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
    feats = torch.cat([backbone(normalize(b["image"], norm, device=device)).float().cpu() for b in loader])
    backbone.train(was)
    return feature_stats(feats)


# ------------------------------------------------------------------------------------- the whole stage
@dataclass
class FusionExperiment:
    """Everything notebook 04 shows: per-head results beside the single-modality baselines, the main
    head's missing-modality report, and the pieces to plot (``run_fusion_experiment`` builds it)."""

    dataset: Any
    text: Any  # TextFeatures
    text_encoder: Any
    bank: Any  # FeatureBank or None (live path)
    results: dict[str, Stage2Result]  # head name -> result
    baselines: dict[str, dict[str, dict[str, Any]]]  # "image-only" / "text-only" -> split -> metrics
    main: str  # the head the missing-modality report and the plots are about
    missing: dict[str, dict[str, dict[str, Any]]]

    def rows(self) -> list[dict[str, Any]]:
        """One row per method: val and test headline metrics."""
        rows = []
        named = {
            **{k: v for k, v in self.baselines.items()},
            **{h: r.metrics for h, r in self.results.items()},
        }
        for name, metrics in named.items():
            row: dict[str, Any] = {"method": name}
            for split, m in metrics.items():
                for key in headline_keys(self.dataset.task):
                    row[f"{split}_{key}"] = m.get(key)
            rows.append(row)
        return rows

    def missing_rows(self) -> list[dict[str, Any]]:
        rows = []
        for split, table in self.missing.items():
            for condition, m in table.items():
                rows.append(
                    {
                        "split": split,
                        "input": condition,
                        **{k: m.get(k) for k in headline_keys(self.dataset.task)},
                    }
                )
        return rows


def headline_keys(task: str) -> tuple[str, ...]:
    """The metrics the tables show: the task's headline metric (accuracy / mAP), then macro F1."""
    from mmkit.metrics import headline_metric

    return (headline_metric(task), "macro_f1")


def run_fusion_experiment(
    dataset: Any,
    *,
    augment: AugmentConfig,
    model: ModelConfig,
    train: TrainConfig,
    text: TextConfig,
    fusion: FusionConfig,
    backbone: Optional[nn.Module] = None,
    out_dir: Optional[str | Path] = None,
    resume: bool = False,
    device: Optional[str | torch.device] = None,
) -> FusionExperiment:
    """Text features (out-of-fold), image features (bank, or live), every head (``compare_heads``) and
    the image-only / text-only baselines trained the same way, then the missing-modality report.

    ``backbone`` overrides ``model.backbone`` with a module (tests use tiny ones).

    Example:
        >>> exp = run_fusion_experiment(ds, augment=AugmentConfig(), model=ModelConfig(), train=TrainConfig(),
        ...                             text=TextConfig(), fusion=FusionConfig())  # doctest: +SKIP
        >>> exp.rows()  # doctest: +SKIP
    """
    from mmkit.features import backbone_module, build_feature_bank
    from mmkit.metrics import compute_metrics
    from mmkit.text import compute_text_features

    out = Path(out_dir) if out_dir is not None else None
    table, encoder = compute_text_features(
        dataset,
        text.text_encoder,
        features=text.text_features,
        folds=text.text_folds,
        seed=train.seed,
        **(text.text_options or {}),
    )
    bank, module = None, None
    source = backbone if backbone is not None else _checkpoint_backbone(fusion.checkpoint, model.backbone)
    if fusion.feature_bank:
        bank = build_feature_bank(
            dataset, source, pretrained=model.pretrained, checkpoint=fusion.checkpoint, preset=augment.preset,
            views=fusion.bank_views, image_size=augment.image_size, seed=augment.seed,
            batch_size=max(augment.batch_size, fusion.bank_views), cache_dir=fusion.bank_dir or _default_bank_dir(),
            device=device, num_workers=augment.num_workers,
        )  # fmt: skip
    else:
        module = backbone_module(
            source, model.pretrained, fusion.checkpoint, augment.seed, augment.image_size
        )
    heads = list(HEADS) if fusion.compare_heads and bank is not None else [fusion.head]
    if fusion.head not in heads:
        heads.insert(0, fusion.head)
    common = dict(
        bank=bank, backbone=module, fusion=fusion, train=train, augment=augment, train_blocks=model.train_blocks,
        resume=resume, device=device,
    )  # fmt: skip

    def where(name: str) -> Optional[Path]:
        return out / "stage2" / name if out is not None else None

    results = {h: train_stage2(dataset, table, head=h, out_dir=where(h), **common) for h in heads}
    # On the live path the baselines train their own copy of the backbone's trainable part.
    if module is not None:
        common["backbone"] = backbone_module(
            source, model.pretrained, fusion.checkpoint, augment.seed, augment.image_size
        )
    image_only = train_stage2(
        dataset, table, head="concat-linear", modalities="image", out_dir=where("image-only"), **common
    )
    baselines = {"image-only": image_only.metrics}
    if table.kind == "logits":  # the text classifier itself (out-of-fold logits are not used here)
        baselines["text-only"] = {
            split: compute_metrics(
                dataset.targets(split),
                table.lookup(split, dataset.ids(split)),
                dataset.task,
                list(dataset.classes),
            )
            for split in ("val", "test")
            if len(dataset.records(split))
        }
    else:
        text_only = train_stage2(
            dataset, table, head="concat-linear", modalities="text", out_dir=where("text-only"), **common
        )
        baselines["text-only"] = text_only.metrics
    main = results[fusion.head]
    loaders = {s: main.loaders[s] for s in ("val", "test") if len(dataset.records(s))}
    missing = missing_modality_report(main.model, loaders, dataset.task, list(dataset.classes))
    return FusionExperiment(dataset, table, encoder, bank, results, baselines, fusion.head, missing)


def _checkpoint_backbone(checkpoint: Optional[str], backbone: str) -> str:
    """The backbone a stage-1 checkpoint was trained with (its ``meta``), which wins over ``backbone``:
    weights only fit the architecture they came from."""
    if checkpoint is None:
        return backbone
    import warnings

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    named = (state.get("meta") or {}).get("backbone") if isinstance(state, dict) else None
    if named and named != backbone:
        warnings.warn(
            f"{checkpoint} is a stage-1 checkpoint of {named}: using that backbone, not {backbone}",
            stacklevel=3,
        )
        return named
    return backbone


def _default_bank_dir() -> str:
    from mmkit.run import ROOT

    return str(ROOT / "runs" / "feature_bank")


__all__ = [
    "HEADS",
    "FusionExperiment",
    "headline_keys",
    "run_fusion_experiment",
    "Stage2Result",
    "stage2_loaders",
    "train_stage2",
    "LiveLoader",
    "Stage2Model",
    "fused_features",
    "missing_modality_report",
    "predict",
    "project_2d",
    "ConcatLinear",
    "ConcatMLP",
    "FusionModel",
    "GatedFusion",
    "LateFusion",
    "feature_stats",
    "make_head",
    "modality_dropout_masks",
]
