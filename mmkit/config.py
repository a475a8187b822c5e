"""Settings as dataclasses, one per stage of the data flow.

A notebook's ``parameters`` cell uses exactly these field names, so ``config_from_params(DataConfig, params)``
turns the cell's variables into a config with no renaming. Every run writes its resolved configs next to
its outputs (``save_configs``).

Example:
    >>> cfg = config_from_params(DataConfig, {"dataset": "synthetic_food101", "seed": 3, "lr": 0.1})
    >>> cfg.dataset, cfg.seed
    ('synthetic_food101', 3)
"""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

T = TypeVar("T")


@dataclass
class DataConfig:
    """Where the data is and how it is split: every option of the readers, by the readers' own names.

    ``load_dataset`` hands each reader the options it takes; options for another dataset are ignored.
    """

    dataset: str = (
        "synthetic_food101"  # synthetic_food101 | synthetic_fpus23 | upmc_food101 | fpus23 | manifest | hf
    )
    data_root: Optional[str] = None  # None: the synthetic default under data/<dataset>
    task: Optional[str] = None  # fpus23: "head" (binary) or "organs" (multi-label)
    include_view: bool = True  # fpus23: keep the View_fetus field in the text (it nearly names the label)
    val_fraction: float = 0.1  # share of rows for val (carved from train); must be > 0: val picks the epoch
    test_fraction: float = 0.2  # manifest / hf / fpus23 without given splits: share of rows for test
    split_file: Optional[str] = None  # food101: train image names that form val, one per line
    seed: int = 0
    on_error: str = "raise"  # "raise" or "skip" (skips are logged and listed, never silent)
    unboxed_streams: str = "keep"  # fpus23 streams with no box: keep (as no_head, the paper) | drop | raise
    image_col: str = "image"  # manifest / hf: the column of image paths (or image bytes)
    text_col: str = "text"  # manifest / hf: the text column
    label_col: str = "label"  # manifest / hf: the label column
    group_col: Optional[str] = None  # manifest / hf: rows with the same value never sit in two splits
    split_col: str = "split"  # manifest / hf: train / val / test per row, when the column exists
    id_col: str = "id"  # manifest / hf: a unique id per row, when the column exists
    multilabel_sep: Optional[str] = None  # manifest CSV: separator of several labels in one cell, e.g. "|"
    hf_dataset: Optional[str] = None  # dataset="hf": a save_to_disk folder or a hub name
    image_cache: Optional[str] = (
        None  # images stored as bytes (hf, parquet) become files here; None: data/image_cache
    )
    check_images: str = "fast"  # fast (header + end marker) | full (decode every image) | none
    check_duplicates: bool = True  # report identical image files (same content) in two splits
    # grouped data: train keeps at least this many groups (k-fold text logits and cross-fitting need one per
    # fold), moved from val / test when the data has enough, else loading stops; 5 = text_folds' default.
    # Keep it the same in every notebook, so that 03's checkpoint and 04 / 05 see one split.
    min_train_groups: int = 5


@dataclass
class AugmentConfig:
    """Batch augmentation: which pipeline, how big, how many views of each sample per batch."""

    preset: str = "seed"  # seed | light | food | ultrasound
    image_size: int = 224
    copies: int = 1  # M views of each sample in a batch (1 = the published behaviour)
    batch_size: int = 32
    num_workers: int = 0
    seed: int = 0
    n_samples: int = 8  # notebook 02: samples shown in the augmentation grids


@dataclass
class ModelConfig:
    """The image backbone and which of its blocks train."""

    backbone: str = "timm:resnet18"
    pretrained: Optional[str] = None  # a hub tag, a local checkpoint path, or None for random init
    train_blocks: str = "all"  # none | all | first:K | last:K


@dataclass
class TrainConfig:
    """One fit loop for both stages."""

    epochs: int = 5
    lr: float = 5e-4
    optimizer: str = "sgd"  # sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 0.0
    step_epochs: Optional[int] = None  # schedule "step": decay every this many epochs (None: epochs // 3)
    step_gamma: float = 0.1  # schedule "step": the decay factor
    # the val metric that picks the epoch (a compute_metrics key: accuracy, macro_f1, mAP, ...); auto: the
    # task's headline metric (metrics.headline_metric: accuracy, mAP for multi-label, macro_f1 for FPUS23 head)
    select_on: str = "auto"
    grad_accum: int = 1
    amp: bool = True  # used only where the device supports it
    resume: bool = False  # continue from out_dir/last.pt (exactly: same weights as a run straight through)
    device: Optional[str] = None  # None: this rank's GPU when there is one, else the CPU
    deterministic: bool = False  # GPU: deterministic kernels (bitwise-repeatable runs, slower); CPU always is
    channels_last: bool = True
    seed: int = 0
    out_dir: str = "runs/stage1"


@dataclass
class TextConfig:
    """The text side: which encoder, and how its outputs enter the fusion head."""

    text_encoder: str = "tfidf"  # tfidf | bow-mlp | minilm | open_clip:<model> | hf:<name or path>
    text_folds: int = 5  # k for out-of-fold logits of stacked text classifiers
    text_features: str = "auto"  # auto | logits (out-of-fold for train rows) | embedding (frozen embedders)
    # Extra keyword options for the encoder, e.g. {"mode": "classifier", "pooling": "last", "lr": 2e-5}
    # for hf:gpt2 fine-tuned as a classifier (its logits are then stacked out-of-fold).
    text_options: Optional[dict] = None


@dataclass
class FusionConfig:
    """Stage 2: the fusion head and its feature bank."""

    head: str = "concat-linear"  # concat-linear | concat-mlp | late | gated
    # K augmented views of each training image cached in the feature bank; each stage-2 step draws M of
    # them. "epochs": K = stage-2 epochs x M and every view is used exactly once (a fresh augmentation for
    # every batch, as the live path; mmkit.features.resolve_bank_views). An integer K < epochs x M reuses
    # views across epochs: an approximation of that.
    bank_views: Union[int, str] = 8
    modality_dropout: float = 0.0
    missing_fill: str = "mean"  # a missing modality becomes its training mean ("mean") or zeros ("zero")
    feature_bank: bool = True  # False: the live path (backbone run every step, trainable per train_blocks)
    bank_dir: Optional[str] = None  # None: <out_dir>/feature_bank, or $MMKIT_CACHE/feature_bank when set
    checkpoint: Optional[str] = None  # a stage-1 checkpoint whose backbone stage 2 uses
    compare_heads: bool = True  # also train every other head for the comparison table (bank path)
    hidden: int = 256  # concat-mlp / gated hidden width
    projection: str = "pca"  # 2-D view of the fused features: pca | tsne
    # K > 1: cross-fitting. K stage-1 backbones, each fine-tuned on K-1 folds of train, encode their held-out
    # fold into the bank's training rows and every val/test row (the head's val/test prediction averages the
    # K backbones' logits: no head sees a feature space it never trained in); the text's out-of-fold logits
    # then use the same K folds. 1: one backbone for every row (the published recipe).
    stage1_folds: int = 1


@dataclass
class ReproduceConfig:
    """Notebook 05: how many seeds, and the ablations around the proposed method."""

    n_seeds: int = 3
    ablation_blocks: str = "first:1"  # the stage-1 layer policy compared with "all"
    stage2_epochs: int = 20
    stage2_lr: float = 0.01
    stage2_weight_decay: float = 0.3  # AdamW on the fusion heads (the features are few; the heads overfit)
    view_ablation: bool = True  # fpus23: repeat the text rows without the view field
    # The row the verdict tests, named before the run; None: the paper's (M=copies, all blocks, the `head`).
    proposed: Optional[str] = None
    seeds: Optional[list] = None  # run these seeds (e.g. [3] for one job of a grid); None: n_seeds from seed
    n_boot: int = 10_000  # bootstrap resamples of the verdict's confidence intervals (vectorised: seconds)


def parse_value(text: str) -> Any:
    """Read a command-line value as a Python literal when it is one (3, 0.5, True, None, [1, 2]), else a str."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if text == "null":
            return None
        return text  # "none" stays a string: it is a value of train_blocks


def config_from_params(cls: type[T], params: dict[str, Any]) -> T:
    """Build ``cls`` from the entries of ``params`` that name its fields (others are ignored)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in params.items() if k in names})


def config_fields() -> dict[str, str]:
    """Every config field name mapped to the dataclass that owns it (for checking notebook parameters)."""
    out: dict[str, str] = {}
    for cls in (
        DataConfig,
        AugmentConfig,
        ModelConfig,
        TrainConfig,
        TextConfig,
        FusionConfig,
        ReproduceConfig,
    ):
        for f in fields(cls):
            out.setdefault(f.name, cls.__name__)
    return out


def save_configs(path: str | Path, *configs: Any) -> Path:
    """Write the resolved configs as one JSON object keyed by class name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {type(c).__name__: asdict(c) for c in configs if dataclasses.is_dataclass(c)}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


__all__ = [
    "AugmentConfig",
    "DataConfig",
    "FusionConfig",
    "ModelConfig",
    "ReproduceConfig",
    "TextConfig",
    "TrainConfig",
    "config_fields",
    "config_from_params",
    "field",
    "parse_value",
    "save_configs",
]
