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

Example:
    >>> head = make_head("gated", image_dim=8, text_dim=3, num_classes=3)
    >>> model = FusionModel(head, image_stats=(torch.zeros(8), torch.ones(8)), text_stats=(torch.zeros(3), torch.ones(3)))
    >>> model(torch.randn(4, 8), torch.randn(4, 3)).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

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

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        image_present: Optional[torch.Tensor] = None,
        text_present: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return self.head(
            self._prepare(image, self.image_mean, self.image_std, image_present),
            self._prepare(text, self.text_mean, self.text_std, text_present),
        )


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


@torch.no_grad()
def predict(
    model: Stage2Model, loader: Any, drop: Optional[str] = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(scores, targets, ids) over ``loader`` in eval mode; ``drop`` = "image" or "text" removes that
    modality from every sample (the ``missing_fill`` substitute takes its place)."""
    was = model.training
    model.eval()
    scores, targets, ids = [], [], []
    for batch in loader:
        batch = dict(batch)
        n = len(batch["id"])
        if drop == "image":
            batch["image_present"] = torch.zeros(n, dtype=torch.bool)
        elif drop == "text":
            batch["text_present"] = torch.zeros(n, dtype=torch.bool)
        scores.append(model(batch).float().cpu())
        targets.append(batch["label"])
        ids.extend(batch["id"])
    model.train(was)
    return torch.cat(scores).numpy(), torch.cat(targets).numpy(), ids


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
        f = model.fusion
        z = torch.cat(
            [
                f._prepare(image, f.image_mean, f.image_std, None),
                f._prepare(batch["text_features"], f.text_mean, f.text_std, None),
            ],
            dim=1,
        )
        feats.append(z.float().cpu())
        ys.append(batch["label"])
    return torch.cat(feats).numpy(), torch.cat(ys).numpy()


__all__ = [
    "HEADS",
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
