"""Fusion heads over image features + text features, their input standardisation, modality dropout.

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

Training these heads is ``mmkit.stage2``; notebook 04's whole experiment is ``mmkit.experiment``.

Example:
    >>> head = make_head("gated", image_dim=8, text_dim=3, num_classes=3)
    >>> model = FusionModel(head, image_stats=(torch.zeros(8), torch.ones(8)), text_stats=(torch.zeros(3), torch.ones(3)))
    >>> model(torch.randn(4, 8), torch.randn(4, 3)).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from typing import Any, Optional

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


__all__ = [
    "HEADS",
    "ConcatLinear",
    "ConcatMLP",
    "FusionModel",
    "GatedFusion",
    "LateFusion",
    "feature_stats",
    "make_head",
    "modality_dropout_masks",
]
