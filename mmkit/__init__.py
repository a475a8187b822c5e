"""mmkit: batch augmentation with unimodal fine-tuning for multimodal (image + text) classification.

One sample's way from disk to a number in the report, one module per step:

    mmkit.data      read_upmc_food101 / read_fpus23 / read_manifest / synthetic  -> Dataset
    mmkit.augment   make_loader: decode once, M augmented views per sample     -> uint8 batches
    mmkit.models    image backbone + layer policy  |  mmkit.text: text encoders -> features / logits
    mmkit.features  feature bank: K cached views from a frozen backbone        -> fusion head input
    mmkit.fusion    fusion heads  |  mmkit.train: one fit loop, selection on val -> checkpoints, metrics
    mmkit.metrics   scores  |  mmkit.viz: plots  |  mmkit.run: papermill runner  -> notebooks, metrics.json
"""

from mmkit.augment import PRESETS, BatchLoader, build_preset, make_loader, normalize, preview
from mmkit.config import (
    AugmentConfig,
    DataConfig,
    FusionConfig,
    ModelConfig,
    TextConfig,
    TrainConfig,
)
from mmkit.data import DataError, Dataset, Record
from mmkit.features import BankLoader, FeatureBank, build_feature_bank
from mmkit.fusion import HEADS, make_head, run_fusion_experiment, train_stage2
from mmkit.metrics import compute_metrics
from mmkit.models import Backbone, ImageClassifier, apply_layer_policy, create_backbone
from mmkit.text import TextFeatures, compute_text_features, make_text_encoder, out_of_fold_logits
from mmkit.train import FitResult, fit, load_stage1, train_stage1

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "BatchLoader",
    "build_preset",
    "make_loader",
    "normalize",
    "preview",
    "HEADS",
    "BankLoader",
    "FeatureBank",
    "TextFeatures",
    "build_feature_bank",
    "compute_text_features",
    "make_head",
    "make_text_encoder",
    "out_of_fold_logits",
    "run_fusion_experiment",
    "train_stage2",
    "Backbone",
    "FitResult",
    "ImageClassifier",
    "apply_layer_policy",
    "compute_metrics",
    "create_backbone",
    "fit",
    "load_stage1",
    "train_stage1",
    "AugmentConfig",
    "DataConfig",
    "DataError",
    "Dataset",
    "FusionConfig",
    "ModelConfig",
    "Record",
    "TextConfig",
    "TrainConfig",
]
