"""mmkit: batch augmentation with unimodal fine-tuning for multimodal (image + text) classification.

One sample's way from disk to a number in the report, one module per step:

    mmkit.data      read_upmc_food101 / read_fpus23 / read_manifest / synthetic  -> Dataset
    mmkit.augment   make_loader: decode once, M augmented views per sample     -> uint8 batches
    mmkit.models    image backbone + layer policy  |  mmkit.text: text encoders -> features / logits
    mmkit.features  feature bank: K cached views from a frozen backbone        -> fusion head input
    mmkit.heads     fusion heads  |  mmkit.stage2: train them  |  mmkit.train: one fit loop -> checkpoints
    mmkit.experiment  notebook 04: every head beside the single-modality baselines -> tables, metrics
    mmkit.model     the trained model saved / loaded (save_model, load_model(...).predict) -> model/
    mmkit.metrics   scores  |  mmkit.viz: plots  |  mmkit.run: papermill runner  -> notebooks, metrics.json
    mmkit.agreement label_agreement: does an augmentation keep the model's prediction?
    mmkit.checks    check_inputs: missing files named before a slow step  |  mmkit.progress: plain-text bars
    mmkit.reproduce notebook 05's comparison grid over seeds                     -> mean ± std table

The names below are the public API, importable from ``mmkit`` directly. They are loaded on first use,
so ``import mmkit`` (and the ``mmkit`` command line, ``python -m mmkit.train`` under torchrun) stays quick.

Example:
    >>> import mmkit
    >>> mmkit.DataConfig().dataset
    'synthetic_food101'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it, in data-flow order
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        [
            "AugmentConfig",
            "DataConfig",
            "FusionConfig",
            "ModelConfig",
            "ReproduceConfig",
            "TextConfig",
            "TrainConfig",
        ],
        "mmkit.config",
    ),
    **dict.fromkeys(
        [
            "DataError",
            "Dataset",
            "Record",
            "load_dataset",
            "read_fpus23",
            "read_hf",
            "read_manifest",
            "read_upmc_food101",
        ],
        "mmkit.data",
    ),
    **dict.fromkeys(
        ["PRESETS", "BatchLoader", "build_preset", "make_loader", "normalize", "preview", "save_preset"],
        "mmkit.augment",
    ),
    "label_agreement": "mmkit.agreement",
    **dict.fromkeys(["Backbone", "ImageClassifier", "apply_layer_policy", "create_backbone"], "mmkit.models"),
    **dict.fromkeys(
        ["TextFeatures", "compute_text_features", "make_text_encoder", "out_of_fold_logits"], "mmkit.text"
    ),
    **dict.fromkeys(["BankLoader", "FeatureBank", "build_feature_bank"], "mmkit.features"),
    **dict.fromkeys(["HEADS", "FusionModel", "make_head"], "mmkit.heads"),
    **dict.fromkeys(["Stage2Result", "train_stage2"], "mmkit.stage2"),
    **dict.fromkeys(["FusionExperiment", "run_fusion_experiment"], "mmkit.experiment"),
    **dict.fromkeys(["MultimodalModel", "load_model", "predict_manifest", "save_model"], "mmkit.model"),
    **dict.fromkeys(["FitResult", "fit", "load_stage1", "train_stage1"], "mmkit.train"),
    "compute_metrics": "mmkit.metrics",
    **dict.fromkeys(["read_metrics", "write_metrics"], "mmkit.report"),
    **dict.fromkeys(["run_comparison", "save_comparison", "summarize"], "mmkit.reproduce"),
    "execute_notebook": "mmkit.run",
    "check_inputs": "mmkit.checks",
    "progress": "mmkit.progress",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mmkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
