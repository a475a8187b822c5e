"""Notebook 04's experiment: every fusion head beside the single-modality baselines, trained alike.

``run_fusion_experiment`` computes the out-of-fold text features, the feature bank (or a live backbone),
trains every head (``compare_heads``) and the image-only / text-only baselines with ``mmkit.stage2``, then
scores the main head with each modality removed; it returns a ``FusionExperiment`` whose ``rows()`` are the
notebook's table. Notebook 05's grid over seeds is ``mmkit.reproduce``.

Example:
    >>> exp = run_fusion_experiment(ds, augment=AugmentConfig(), model=ModelConfig(), train=TrainConfig(),
    ...                             text=TextConfig(), fusion=FusionConfig())  # doctest: +SKIP
    >>> exp.rows()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from mmkit.config import AugmentConfig, FusionConfig, ModelConfig, TextConfig, TrainConfig
from mmkit.heads import HEADS
from mmkit.stage2 import Stage2Result, missing_modality_report, train_stage2


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
    # the resolved configs ("augment", "model", "train", "text", "fusion": the stage-1 checkpoint's settings
    # filled in) and the module the bank's image features came from (None: built by name): what
    # mmkit.model.save_model needs to rebuild the model's preprocessing and backbone
    settings: dict[str, Any] = field(default_factory=dict)
    image_backbone: Optional[nn.Module] = None

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

    With a stage-1 checkpoint (``fusion.checkpoint``) its settings win: ``model.backbone``,
    ``model.pretrained``, ``augment.image_size`` and ``augment.preset`` left ``None`` come from it, an
    explicit value that differs is an error, and its class list is checked against ``dataset``
    (``mmkit.train.restore_stage1_settings``); the image normalisation is always the checkpoint's.
    The bank goes to ``fusion.bank_dir``, else ``mmkit.features.default_bank_dir(out_dir)``.

    Example:
        >>> exp = run_fusion_experiment(ds, augment=AugmentConfig(), model=ModelConfig(), train=TrainConfig(),
        ...                             text=TextConfig(), fusion=FusionConfig())  # doctest: +SKIP
        >>> exp.rows()  # doctest: +SKIP
    """
    from mmkit.features import backbone_module, build_feature_bank, default_bank_dir, resolve_bank_views
    from mmkit.metrics import compute_metrics
    from mmkit.text import compute_text_features
    from mmkit.train import resolve_select_on, restore_stage1_settings

    out = Path(out_dir) if out_dir is not None else None
    model, augment = restore_stage1_settings(
        fusion.checkpoint, model, augment, dataset,
        fallback={"backbone": getattr(backbone, "name", None) or type(backbone).__name__} if backbone is not None else None,
    )  # fmt: skip
    train = resolve_select_on(train, dataset)
    fold_of = _cross_fit_folds(dataset, fusion, train.seed)
    text_folds_used = text.text_folds if fold_of is None else fusion.stage1_folds
    if text_folds_used != text.text_folds:
        import warnings

        warnings.warn(
            f"text_folds={text.text_folds} is overridden by stage1_folds={fusion.stage1_folds}: cross-fitting "
            "holds out the same rows in both modalities, so the text's out-of-fold logits use the stage-1 folds "
            "(recorded as text_folds_used); set text_folds to match to silence this",
            stacklevel=2,
        )
    table, encoder = compute_text_features(
        dataset,
        text.text_encoder,
        features=text.text_features,
        folds=text.text_folds,
        seed=train.seed,
        fold_of=fold_of,  # cross-fitting: the text's out-of-fold logits hold out the same rows as stage 1
        **(text.text_options or {}),
    )
    bank, module = None, None
    source = backbone if backbone is not None else model.backbone
    if fusion.feature_bank:
        views = resolve_bank_views(fusion.bank_views, train.epochs, augment.copies)

        def bank_of(ds: Any, checkpoint: Optional[str], k: int = views) -> Any:
            return build_feature_bank(
                ds, source, pretrained=model.pretrained, checkpoint=checkpoint, preset=augment.preset,
                views=k, image_size=augment.image_size, seed=augment.seed,
                batch_size=max(augment.batch_size, k), cache_dir=fusion.bank_dir or default_bank_dir(out),
                device=device, num_workers=augment.num_workers,
            )  # fmt: skip

        if fold_of is None:
            bank = bank_of(dataset, fusion.checkpoint)
        else:
            # The checkpoint's own features take no part in the cross-fitted row; one view of them (cheap)
            # only measures how far the fold backbones' feature spaces are from it (meta["cka"]).
            full = bank_of(dataset, fusion.checkpoint, 1)
            bank = _cross_fitted(dataset, fold_of, fusion, full, bank_of, out, resume, device)
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
    settings = {"augment": augment, "model": model, "train": train, "text": text, "fusion": fusion,
                "text_folds_used": text_folds_used}  # fmt: skip
    return FusionExperiment(
        dataset, table, encoder, bank, results, baselines, fusion.head, missing, settings,
        image_backbone=backbone if bank is not None else None,
    )  # fmt: skip


def _cross_fit_folds(dataset: Any, fusion: FusionConfig, seed: int) -> Any:
    """The fold of each training record when cross-fitting (``stage1_folds`` > 1), else None."""
    if fusion.stage1_folds <= 1:
        return None
    if fusion.checkpoint is None or not fusion.feature_bank:
        raise ValueError(
            f"stage1_folds={fusion.stage1_folds} cross-fits the stage-1 backbone: it needs the stage-1 "
            "checkpoint (checkpoint=..., e.g. notebook 03's best.pt) and the feature bank (feature_bank=True); "
            "or set stage1_folds=1"
        )
    from mmkit.folds import assign_folds

    y = dataset.targets("train")
    return assign_folds(dataset.records("train"), fusion.stage1_folds, seed, y if y.ndim == 1 else None)


def _cross_fitted(dataset, fold_of, fusion, full_bank, bank_of, out, resume, device) -> Any:
    """The bank whose rows come from K backbones fine-tuned as ``fusion.checkpoint`` was (its
    ``config.json``: model, train and augment settings of ``train_stage1``), each without one fold: its
    held-out fold's training rows and every val/test row (``mmkit.crossfit.cross_fitted_bank``)."""
    import json
    import tempfile

    from mmkit.crossfit import cross_fit_stage1, cross_fitted_bank

    recipe = Path(fusion.checkpoint).parent / "config.json"
    if not recipe.exists():
        raise FileNotFoundError(
            f"{recipe}: stage1_folds={fusion.stage1_folds} retrains stage 1 with the recipe saved beside the "
            "checkpoint by train_stage1 (notebook 03), and there is none; pass a checkpoint notebook 03 wrote, "
            "or set stage1_folds=1"
        )
    saved = json.loads(recipe.read_text())
    stage1 = (
        ModelConfig(**saved["ModelConfig"]),
        TrainConfig(**saved["TrainConfig"]),
        AugmentConfig(**saved["AugmentConfig"]),
    )
    where = out / "stage1_crossfit" if out is not None else Path(tempfile.mkdtemp(prefix="mmkit_crossfit_"))
    fits = cross_fit_stage1(dataset, fold_of, *stage1, out_dir=where, resume=resume, device=device)
    bank = cross_fitted_bank(dataset, fold_of, [f.checkpoint for f in fits], bank_of, full_bank)
    bank.meta["fold_fits"] = [{"fold": f.fold, "seconds": f.seconds, "n_train": f.n_train} for f in fits]
    return bank


__all__ = ["FusionExperiment", "headline_keys", "run_fusion_experiment"]
