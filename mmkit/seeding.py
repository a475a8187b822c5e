"""One root seed, one independent random stream per consumer.

A run is given ``seed`` once. Every part that draws random numbers (stage 1's init and augmentations, the
feature bank's views, the folds, the text encoders, the fusion heads and their batches) asks for its own
stream by name, spawned from the root with ``numpy.random.SeedSequence``: the streams are statistically
independent of one another (no stream is a shifted copy of another, as ``seed * 1_000_003 + epoch`` made
them), and each depends only on (root seed, name, keys), so a consumer added later changes no other
stream. A leaf module: it imports nothing from mmkit.

Example:
    >>> derive_seed(0, "bank_views") != derive_seed(0, "stage1")
    True
    >>> derive_seed(0, "stage1", 3) == derive_seed(0, "stage1", 3)
    True
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

# The names in use, so a reader sees every stream in one place (any other name works the same way).
STREAMS = (
    "backbone_init",  # a backbone's random init: stage 1's starting point and the frozen random-init bank
    "stage1",  # stage 1's batch draws (augmentations, order)
    "bank_views",  # the K augmented views of every training image cached in the feature bank
    "bank_batches",  # stage 2's draws from the bank (order, which M of the K views, modality dropout)
    "live_batches",  # stage 2's live-path modality dropout
    "folds",  # the fold assignment shared by cross-fitted stage 1 and the out-of-fold text logits
    "text",  # the text encoders (bow-mlp init and order, probes)
    "heads",  # a fusion head's init
    "bootstrap",  # the verdict's confidence interval
)


def seed_stream(seed: int, name: str, *keys: int) -> np.random.SeedSequence:
    """The stream ``name`` (with optional integer ``keys``, e.g. an epoch or a fold) of root ``seed``."""
    key = (zlib.crc32(name.encode()),) + tuple(int(k) for k in keys)
    return np.random.SeedSequence(int(seed), spawn_key=key)


def derive_seed(seed: int, name: str, *keys: int) -> int:
    """A 31-bit integer seed of the stream, for APIs that take an int (``random_state``, ``manual_seed``)."""
    return int(seed_stream(seed, name, *keys).generate_state(1)[0] & 0x7FFFFFFF)


def numpy_generator(seed: int, name: str, *keys: int) -> np.random.Generator:
    """A numpy ``Generator`` on the stream."""
    return np.random.default_rng(seed_stream(seed, name, *keys))


def torch_generator(seed: int, name: str, *keys: int) -> Any:
    """A CPU ``torch.Generator`` on the stream (torch is imported here, not at module level)."""
    import torch

    return torch.Generator().manual_seed(derive_seed(seed, name, *keys))


__all__ = ["STREAMS", "derive_seed", "numpy_generator", "seed_stream", "torch_generator"]
