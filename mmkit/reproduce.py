"""Notebook 05: the paper's comparison and its ablations over several seeds, reported as mean ± std.

The grid, for each seed (model init, augmentation draws and text folds change; the data split does not):

    text only                          the text encoder's out-of-fold logits -> linear head
    image · frozen + linear            a frozen backbone's feature bank -> linear head (the seed's baseline)
    image+text · frozen + <head>       frozen bank + text logits -> concat-linear (traditional multimodal),
                                       and the proposed row's head when it is another (claim (b)'s comparator)
    image · fine-tuned (M, blocks)     stage 1 on batch-augmented images, scored by its own classifier
    proposed (M, blocks) + head        stage-1 backbone -> feature bank -> fusion head (batch augmentation)

Stage 1 runs three times per seed: M=1 with all blocks at equal compute (``copies`` times the epochs in both
stages, so it sees as many augmented views as M copies), M=``copies`` with all blocks (Hoffer's batch
augmentation) and M=``copies`` with ``ablation_blocks`` (the paper's text: adapt only the initial layers).
The proposed fusion is trained on each, and on the main one (M=copies, all blocks) with every fusion head.
On FPUS23 the text-only and proposed rows are repeated without the view field, which nearly names the organ.
Every number uses the dataset's own headline metric (``headline_metric(task, dataset)``: macro-F1 for FPUS23
head). The verdict is a family of claims named before the run (``verdict_plan``, stored by ``store_plan``)
and decided by ``mmkit.verdict``.

Example:
    >>> rows = [{"method": "a", "group": "g", "seed": s, "test_accuracy": v} for s, v in enumerate([.5, .7])]
    >>> summarize(pd.DataFrame(rows), "test_accuracy").round(4)[["method", "mean", "std", "n"]].to_dict("records")
    [{'method': 'a', 'mean': 0.6, 'std': 0.1414, 'n': 2}]
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import pandas as pd

from mmkit.config import (
    AugmentConfig,
    DataConfig,
    FusionConfig,
    ModelConfig,
    ReproduceConfig,
    TextConfig,
    TrainConfig,
)
from mmkit.metrics import headline_metric
from mmkit.progress import progress
from mmkit.verdict import BEST_SINGLE, predictions_path, verdict_family, verdict_words

# The seed's published test-set figures (paper-notes.md), on the paper's data: shown beside ours, never mixed.
PAPER_FIGURES = [
    ("FPUS23 head (n=3021)", "image · frozen ViT-L + linear", 85.80),
    ("FPUS23 head (n=3021)", "image+metadata · frozen ViT-L + 4 values", 85.67),
    ("FPUS23 head (n=3021)", "image · fine-tuned ViT-L", 96.43),
    ("FPUS23 head (n=3021)", "proposed · fine-tuned ViT-L + metadata head", 96.92),
    ("UPMC Food-101 (n=22,716)", "text only · bag-of-embeddings MLP", 83.36),
    ("UPMC Food-101 (n=22,716)", "text only · GPT-2", 84.6),
    ("UPMC Food-101 (n=22,716)", "image · fine-tuned ResNet-50", 58.97),
    ("UPMC Food-101 (n=22,716)", "image · fine-tuned ViT-L", 75.18),
    ("UPMC Food-101 (n=22,716)", "image+text · frozen ResNet-50 + text logits", 85.61),
    ("UPMC Food-101 (n=22,716)", "proposed · ResNet-50", 89.84),
    ("UPMC Food-101 (n=22,716)", "proposed · ViT-L", 92.64),
]


def paper_table() -> pd.DataFrame:
    """The paper's figures as a table, labelled as such."""
    return pd.DataFrame(
        PAPER_FIGURES, columns=["paper's data", "paper's method", "paper's test accuracy (%)"]
    )


def _row(
    method: str, group: str, seed: int, metrics: dict[str, dict[str, Any]], key: str, **extra: Any
) -> dict[str, Any]:
    """One (method, seed) row: its test and val ``key`` (the dataset's headline metric, ``headline_metric(
    task, dataset)``), test macro-F1, and ``extra`` columns (bank views K, views seen, trainable share...)."""
    return {
        "method": method,
        "group": group,
        "seed": seed,
        f"test_{key}": metrics["test"][key],
        "test_macro_f1": metrics["test"]["macro_f1"],
        f"val_{key}": metrics["val"][key],
        **extra,
    }


class Variant(NamedTuple):
    """One stage-1 run of the grid: ``copies`` (M), ``train_blocks`` and ``epoch_factor`` (its stage-1 and
    stage-2 epochs are the configured ones times this factor)."""

    copies: int
    blocks: str
    epoch_factor: int = 1

    @property
    def tag(self) -> str:
        """The variant's name in the rows, e.g. ``M=4, all`` or ``M=1, all, 4× epochs``."""
        base = f"M={self.copies}, {self.blocks}"
        return base if self.epoch_factor == 1 else f"{base}, {self.epoch_factor}× epochs"

    @property
    def cell(self) -> str:
        """The variant's folder under ``out_dir/stage1`` and its cell name."""
        return _variant_dir(self.copies, self.blocks, self.epoch_factor)


def stage1_variants(repro: ReproduceConfig, copies: int) -> list[Variant]:
    """The stage-1 runs of a seed: M=1 at equal compute, batch augmentation (M=copies), and first-k.

    The M=1 run trains ``copies`` times as many epochs, in stage 1 and in stage 2, so it sees as many augmented
    views per image as the M=copies run (and costs as many forward/backward passes). M copies at the same
    epochs costs M times the compute, so a same-epoch M=1 row cannot tell batch augmentation from a bigger
    budget: claim (c) of the verdict compares the two at equal compute.

    Example:
        >>> [v.tag for v in stage1_variants(ReproduceConfig(ablation_blocks="first:1"), 4)]
        ['M=1, all, 4× epochs', 'M=4, all', 'M=4, first:1']
    """
    variants = [Variant(1, "all", copies), Variant(copies, "all"), Variant(copies, repro.ablation_blocks)]
    return list(dict.fromkeys(variants))  # copies=1 would repeat the first


def comparison_seeds(repro: ReproduceConfig, seed: int) -> list[int]:
    """The seeds of this run: ``repro.seeds`` when given (one job of a grid), else ``n_seeds`` from ``seed``."""
    if repro.seeds is not None:
        seeds = [int(s) for s in repro.seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(
                f"seeds={repro.seeds!r}: give distinct seeds, e.g. seeds=[0, 1, 2] (-p seeds [3])"
            )
        return seeds
    if repro.n_seeds < 1:
        raise ValueError(f"n_seeds={repro.n_seeds}: at least one seed")
    return [seed + i for i in range(repro.n_seeds)]


def proposed_method(repro: ReproduceConfig, augment: AugmentConfig, fusion: FusionConfig) -> str:
    """The row the verdict tests: ``repro.proposed``, else the paper's (M=copies, all blocks, the head)."""
    return repro.proposed or f"proposed (M={augment.copies}, all) + {fusion.head}"


def crossfit_tag(folds: int) -> str:
    return f"cross-fitted (K={folds})"


def _proposed_head(proposed: str) -> Optional[str]:
    """The fusion head a ``proposed (...) + <head>`` row trains, None for any other row."""
    from mmkit.heads import HEADS

    if not proposed.startswith("proposed ("):
        return None
    after = proposed.split(") + ", 1)[-1].split(" · ")[0]
    return after if after in HEADS else None


def frozen_fusion_heads(augment: AugmentConfig, fusion: FusionConfig, repro: ReproduceConfig) -> list[str]:
    """The heads trained on the frozen backbone's bank with text: concat-linear (the traditional multimodal
    model) and the proposed row's head, so claim (b) has its comparator (the same head, frozen backbone)."""
    head = _proposed_head(proposed_method(repro, augment, fusion))
    return list(dict.fromkeys(["concat-linear"] + ([head] if head else [])))


def grid_methods(
    data: DataConfig, augment: AugmentConfig, fusion: FusionConfig, repro: ReproduceConfig
) -> list[str]:
    """Every method row the grid will produce, known before anything runs (the verdict's names are
    checked against it)."""
    from mmkit.heads import HEADS

    view = repro.view_ablation and "fpus23" in data.dataset and data.include_view
    names = ["text only", "image · frozen + linear"]
    names += [f"image+text · frozen + {h}" for h in frozen_fusion_heads(augment, fusion, repro)]
    names += ["text only · no view field"] if view else []
    for v in stage1_variants(repro, augment.copies):
        main = v == Variant(augment.copies, "all")
        names.append(f"image · fine-tuned ({v.tag})")
        heads = [fusion.head] + [h for h in HEADS if h != fusion.head] if main else [fusion.head]
        names += [f"proposed ({v.tag}) + {h}" for h in heads]
        if main and view:
            names.append(f"proposed ({v.tag}) + {fusion.head} · no view field")
    if fusion.stage1_folds > 1:
        names.append(
            f"proposed (M={augment.copies}, all) + {fusion.head} · {crossfit_tag(fusion.stage1_folds)}"
        )
    return names


def verdict_plan(
    augment: AugmentConfig, fusion: FusionConfig, repro: ReproduceConfig
) -> list[dict[str, str]]:
    """The verdict's family of claims, named before the run (``mmkit.verdict.verdict_family`` tests each with
    a paired CI, Holm-corrected over the family):

    (a) the proposed row against the single-modality row best on validation (``BEST_SINGLE``);
    (b) the proposed row against the same fusion head on the frozen backbone: does fine-tuning help fusion;
    (c) M copies against M=1 at equal compute (the M=1 run trains ``copies`` times the epochs in both
        stages, so both see as many augmented views), on the main stage-1 run and head; only when copies > 1.

    Example:
        >>> plan = verdict_plan(AugmentConfig(copies=4), FusionConfig(head="gated"), ReproduceConfig())
        >>> [(c["proposed"], c["comparator"]) for c in plan][1:]
        [('proposed (M=4, all) + gated', 'image+text · frozen + gated'), ('proposed (M=4, all) + gated', 'proposed (M=1, all, 4× epochs) + gated')]
    """
    proposed = proposed_method(repro, augment, fusion)
    head = _proposed_head(proposed)
    plan = [
        {"claim": "(a) proposed vs the best single modality on validation", "proposed": proposed,
         "comparator": BEST_SINGLE},
    ]  # fmt: skip
    if head is not None:
        plan.append(
            {"claim": "(b) proposed vs the same fusion head on the frozen backbone", "proposed": proposed,
             "comparator": f"image+text · frozen + {head}"}
        )  # fmt: skip
    if augment.copies > 1:
        m, one = Variant(augment.copies, "all"), Variant(1, "all", augment.copies)
        plan.append(
            {"claim": f"(c) M={augment.copies} copies vs M=1 at equal compute (as many augmented views seen)",
             "proposed": f"proposed ({m.tag}) + {fusion.head}", "comparator": f"proposed ({one.tag}) + {fusion.head}"}
        )  # fmt: skip
    return plan


class _Grid:
    """The cells of notebook 05's grid for one dataset: each (seed, cell) is an independent job whose rows,
    test predictions and timings land under ``out_dir``; a finished cell with the same settings is reused."""

    def __init__(self, dataset, *, data, augment, model, train, text, fusion, repro, out_dir, device, resume):
        from mmkit.features import dataset_fingerprint

        self.ds, self.data, self.augment, self.model, self.train = dataset, data, augment, model, train
        self.text, self.fusion, self.repro, self.out, self.device = text, fusion, repro, Path(out_dir), device
        self.resume, self.task = resume, dataset.task
        # the dataset's own headline metric (FPUS23 head: macro-F1), as stage 1 and stage 2 select epochs on
        self.metric = headline_metric(dataset.task, dataset)
        self.stage2 = replace(
            train, epochs=repro.stage2_epochs, lr=repro.stage2_lr, optimizer="adamw",
            weight_decay=repro.stage2_weight_decay, warmup_epochs=0.0,
        )  # fmt: skip
        self.no_view = None
        if repro.view_ablation and "fpus23" in data.dataset and data.include_view:
            from mmkit.data import load_dataset

            self.no_view = load_dataset(replace(data, include_view=False))
        # What a cell's results depend on (not how many seeds, not where). The proposed row is in: it decides
        # which heads the frozen bank trains, and a stored verdict plan refuses another one anyway.
        settings = {type(c).__name__: asdict(c) for c in (data, augment, model, train, text, fusion)}
        settings["ReproduceConfig"] = {
            k: v for k, v in asdict(repro).items() if k not in ("n_seeds", "seeds", "n_boot")
        }
        for drop in ("out_dir", "resume", "device", "seed"):
            for c in settings.values():
                c.pop(drop, None)
        settings["data"] = dataset_fingerprint(dataset)
        settings["mmkit"] = _version()
        self.settings = settings
        self._per_seed: dict[int, dict[str, Any]] = {}
        self.first_seed = comparison_seeds(repro, train.seed)[0]

    # --------------------------------------------------------------------------------------- bookkeeping
    def cells(self) -> list[str]:
        names = ["baselines"] + [v.cell for v in stage1_variants(self.repro, self.augment.copies)]
        return names + (["crossfit"] if self.fusion.stage1_folds > 1 else [])

    def _hash(self, seed: int, cell: str) -> str:
        payload = json.dumps({**self.settings, "seed": seed, "cell": cell}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _cell_file(self, seed: int, cell: str) -> Path:
        return self.out / "cells" / f"seed{seed}" / f"{cell}.json"

    def run_cell(self, seed: int, cell: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """(rows, timings, reused) of one cell, from its finished record when it has one."""
        path, h = self._cell_file(seed, cell), self._hash(seed, cell)
        done = json.loads(path.read_text()) if path.exists() else {}  # read once: both checks below use it
        # a killed cell's record has no rows yet: only a finished one with these settings is read back
        if self.resume and done.get("hash") == h and done.get("finished"):
            if all(predictions_path(self.out, seed, r["method"]).exists() for r in done["rows"]):
                return done["rows"], done["timings"], True
        # A cell started with these settings and killed may resume its stage-1 runs from last.pt.
        started = done.get("hash") == h
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"hash": h, "finished": False}))
        self.timings: list[dict[str, Any]] = []
        self.resume_stage1 = self.resume and started
        method = getattr(self, "_cell_" + ("variant" if cell not in ("baselines", "crossfit") else cell))
        rows = method(seed, cell)
        path.write_text(
            json.dumps({"hash": h, "finished": True, "rows": rows, "timings": self.timings}, default=float)
        )
        return rows, self.timings, False

    def _timed(self, seed: int, cell: str, phase: str):
        grid = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                if exc[0] is None:
                    grid.timings.append(
                        {"seed": seed, "cell": cell, "phase": phase, "seconds": time.perf_counter() - self.t0}
                    )

        return _T()

    # ----------------------------------------------------------------------------------- shared pieces
    def _shared(self, seed: int) -> dict[str, Any]:
        return self._per_seed.setdefault(seed, {})

    def fold_of(self, seed: int) -> Optional[np.ndarray]:
        """The seed's fold assignment when cross-fitting (the text's out-of-fold logits use it too)."""
        if self.fusion.stage1_folds <= 1:
            return None
        from mmkit.folds import assign_folds

        y = self.ds.targets("train")
        return assign_folds(
            self.ds.records("train"), self.fusion.stage1_folds, seed, y if y.ndim == 1 else None
        )

    def text_features(self, seed: int, cell: str, no_view: bool = False, crossfit: bool = False) -> Any:
        """The seed's text features, computed once per seed and shared by every cell (not per variant).

        Every row uses ``text_folds`` out-of-fold folds, except the cross-fitted row (``crossfit=True``):
        its text uses the stage-1 folds, so both modalities of a training row are held out by the same fold.
        """
        from mmkit.text import compute_text_features

        shared = self._shared(seed)
        key = "text" + ("_no_view" if no_view else "") + ("_crossfit" if crossfit else "")
        if key not in shared:
            ds = self.no_view if no_view else self.ds
            t = self.text
            with self._timed(seed, cell, "text features" + (" (no view)" if no_view else "")):
                shared[key] = compute_text_features(
                    ds, t.text_encoder, features=t.text_features, folds=t.text_folds, seed=seed,
                    fold_of=self.fold_of(seed) if crossfit else None, **(t.text_options or {}),
                )  # fmt: skip
        return shared[key][0]

    def bank(self, seed: int, cell: str, checkpoint: Optional[Path], dataset: Any = None) -> Any:
        from mmkit.features import build_feature_bank, resolve_bank_views

        a, f, m = self.augment, self.fusion, self.model
        # "epochs": K = stage-2 epochs x the grid's largest M, so every row's head uses each view at most once
        views = resolve_bank_views(f.bank_views, self.stage2.epochs, a.copies)
        with self._timed(seed, cell, "bank build"):
            return build_feature_bank(
                dataset if dataset is not None else self.ds, m.backbone, pretrained=m.pretrained,
                checkpoint=checkpoint, preset=a.preset, views=views, image_size=a.image_size, seed=seed,
                batch_size=max(a.batch_size, views), cache_dir=f.bank_dir or self.out / "feature_bank",
                device=self.device, num_workers=a.num_workers,
            )  # fmt: skip

    def fuse(
        self,
        seed,
        cell,
        method,
        group,
        ds,
        table,
        bank,
        head,
        copies,
        modalities="both",
        keep=None,
        epoch_factor=1,
        **extra,
    ) -> dict[str, Any]:
        """Train one stage-2 head, keep its test predictions, return its row. ``keep`` = (stage-1
        checkpoint, train_blocks): also save the trained model to ``out_dir/model``. ``epoch_factor``
        multiplies the stage-2 epochs (the M=1 run at equal compute). The row names the bank's K (views per
        training image the head drew from) and the views it drew over its epochs; K below that is an
        approximation of a fresh augmentation for every batch."""
        from mmkit.model import model_from_stage2, save_model
        from mmkit.stage2 import predict, train_stage2

        stage2 = replace(self.stage2, seed=seed, epochs=self.stage2.epochs * epoch_factor)
        with self._timed(seed, cell, "stage 2 heads"):
            result = train_stage2(
                ds, table, bank=bank, head=head, fusion=self.fusion, train=stage2,
                augment=replace(self.augment, seed=seed, copies=copies), modalities=modalities,
                device=self.device,
            )  # fmt: skip
            scores, y, _ = predict(result.model, result.loaders["test"])
        self._save_predictions(seed, method, scores, y, ds.ids("test"))
        if keep is not None:
            save_model(
                model_from_stage2(
                    result, self._shared(seed)["text"][1], augment=replace(self.augment, seed=seed, copies=copies),
                    fusion=self.fusion, model=replace(self.model, train_blocks=keep[1]), text_kind=table.kind,
                    bank=bank, checkpoint=keep[0], text_cleaning=ds.meta.get("text_cleaning"),
                ),
                self.out / "model",
            )  # fmt: skip
        images = modalities != "text"
        drawn = len(result.history) * copies if images else None  # the epochs it ran, each drawing M views
        k = int(bank.views) if images else None
        columns = {
            "bank_views": k,
            "stage2_views": drawn,
            # exact only when each cached view is drawn once (bank_views="epochs"); an integer K draws M of
            # K at random every step, so views repeat across epochs whatever K is
            "approximation": not getattr(result.loaders["train"], "each_once", False) if images else None,
            "stage1_views": None,
            "trainable_share": None,
            "text_folds": self.text.text_folds if modalities != "image" else None,
        }
        return _row(method, group, seed, result.metrics, self.metric, **{**columns, **extra})

    def _save_predictions(self, seed: int, method: str, scores: np.ndarray, y: np.ndarray, ids: list) -> None:
        path = predictions_path(self.out, seed, method)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, scores=scores, targets=y, ids=np.array(ids, dtype=np.str_))

    def stage1(
        self,
        seed: int,
        cell: str,
        dataset: Any,
        copies: int,
        blocks: str,
        out_dir: Path,
        phase: str,
        epoch_factor: int = 1,
    ):
        from mmkit.train import train_stage1

        train = replace(self.train, seed=seed, epochs=self.train.epochs * epoch_factor)
        with self._timed(seed, cell, phase):
            return train_stage1(
                dataset, replace(self.model, train_blocks=blocks), train,
                replace(self.augment, seed=seed, copies=copies), out_dir=out_dir, resume=self.resume_stage1,
                device=self.device,
            )  # fmt: skip

    # ------------------------------------------------------------------------------------------- cells
    def _cell_baselines(self, seed: int, cell: str) -> list[dict[str, Any]]:
        feats = self.text_features(seed, cell)
        frozen = self.bank(seed, cell, None)
        rows = [
            self.fuse(seed, cell, "text only", "single modality", self.ds, feats, frozen, "concat-linear", 1, "text"),
            self.fuse(seed, cell, "image · frozen + linear", "single modality", self.ds, feats, frozen,
                      "concat-linear", 1, "image", stage1_views=0),
        ]  # fmt: skip
        for head in frozen_fusion_heads(self.augment, self.fusion, self.repro):
            method = f"image+text · frozen + {head}"
            rows.append(
                self.fuse(seed, cell, method, "traditional", self.ds, feats, frozen, head, 1, stage1_views=0)
            )
        if self.no_view is not None:
            nv = self.text_features(seed, cell, no_view=True)
            method = "text only · no view field"
            rows.append(
                self.fuse(
                    seed, cell, method, "view ablation", self.no_view, nv, frozen, "concat-linear", 1, "text"
                )
            )
        return rows

    def _cell_variant(self, seed: int, cell: str) -> list[dict[str, Any]]:
        from mmkit.heads import HEADS
        from mmkit.models import trainable_share

        v = next(v for v in stage1_variants(self.repro, self.augment.copies) if v.cell == cell)
        copies, blocks, factor = v
        s1 = self.stage1(
            seed, cell, self.ds, copies, blocks, self.out / "stage1" / cell / f"seed{seed}",
            f"stage 1 ({v.tag})", factor,
        )  # fmt: skip
        # the budget in augmented views per training image, and the share of the backbone stage 1 trained
        stage1_cols = {
            "stage1_views": len(s1.history) * copies,  # the epochs it ran (M=1: factor x more), M views each
            "trainable_share": trainable_share(s1.model),  # mmkit.models: the layer policy's reach
        }
        method = f"image · fine-tuned ({v.tag})"
        self._save_predictions(seed, method, *self._stage1_test_scores(s1, seed, copies), self.ds.ids("test"))
        rows = [_row(method, "stage 1", seed, s1.metrics, self.metric, **stage1_cols)]
        feats = self.text_features(seed, cell)
        tuned = self.bank(seed, cell, s1.checkpoint)
        main = v == Variant(self.augment.copies, "all")
        head0 = self.fusion.head
        for head in [head0] + [h for h in HEADS if h != head0] if main else [head0]:
            group = "proposed" if head == head0 else "fusion heads"
            # the first seed's proposed model is the run's artefact: out_dir/model (mmkit.model)
            keep = (s1.checkpoint, blocks) if main and head == head0 and seed == self.first_seed else None
            method = f"proposed ({v.tag}) + {head}"
            rows.append(
                self.fuse(seed, cell, method, group, self.ds, feats, tuned, head, copies, keep=keep,
                          epoch_factor=factor, **stage1_cols)
            )  # fmt: skip
        if main and self.no_view is not None:
            nv = self.text_features(seed, cell, no_view=True)
            method = f"proposed ({v.tag}) + {head0} · no view field"
            rows.append(
                self.fuse(seed, cell, method, "view ablation", self.no_view, nv, tuned, head0, copies, **stage1_cols)
            )  # fmt: skip
        return rows

    def _stage1_test_scores(self, s1: Any, seed: int, copies: int) -> tuple[np.ndarray, np.ndarray]:
        from mmkit.train import image_forward, predict, stage1_loaders

        loader = stage1_loaders(self.ds, replace(self.augment, copies=copies), seed)["test"]
        device = next(s1.model.parameters()).device
        scores, y, _ = predict(s1.model, loader, image_forward(s1.model.backbone.norm), device)
        return scores, y

    def _cell_crossfit(self, seed: int, cell: str) -> list[dict[str, Any]]:
        from mmkit.crossfit import cross_fit_stage1, cross_fitted_bank

        k, copies = self.fusion.stage1_folds, self.augment.copies
        main_dir = self.out / "stage1" / _variant_dir(copies, "all") / f"seed{seed}"
        full_checkpoint = main_dir / "best.pt"
        if not full_checkpoint.exists():
            raise FileNotFoundError(
                f"{full_checkpoint}: the cross-fitted cell needs the seed's main stage-1 run first"
            )
        fold_of = self.fold_of(seed)
        with self._timed(seed, cell, f"stage 1 cross-fit ({k} folds)"):
            fits = cross_fit_stage1(
                self.ds, fold_of, replace(self.model, train_blocks="all"), replace(self.train, seed=seed),
                replace(self.augment, seed=seed, copies=copies), out_dir=self.out / "stage1" / f"{_variant_dir(copies, 'all')}_crossfit{k}" / f"seed{seed}",
                resume=self.resume_stage1, device=self.device,
            )  # fmt: skip
        # The main run's bank exists anyway (its cell built it): used only for the fold-vs-full CKA. The
        # cross-fitted row's val/test rows come from the fold backbones, never from it.
        full = self.bank(seed, cell, full_checkpoint)
        bank = cross_fitted_bank(
            self.ds,
            fold_of,
            [f.checkpoint for f in fits],
            lambda ds, ckpt: self.bank(seed, cell, ckpt, ds),
            full,
        )
        feats = self.text_features(
            seed, cell, crossfit=True
        )  # the stage-1 folds: both modalities held out alike
        method = f"proposed (M={copies}, all) + {self.fusion.head} · {crossfit_tag(k)}"
        return [
            self.fuse(seed, cell, method, "cross-fitted", self.ds, feats, bank, self.fusion.head, copies,
                      # every fold backbone runs all its epochs with every block trainable (train_blocks="all")
                      stage1_views=self.train.epochs * copies, trainable_share=1.0, text_folds=k)
        ]  # fmt: skip


def _variant_dir(copies: int, blocks: str, epoch_factor: int = 1) -> str:
    name = f"M{copies}_{blocks.replace(':', '')}"
    return name if epoch_factor == 1 else f"{name}_x{epoch_factor}epochs"


def _version() -> str:
    from mmkit import __version__

    return __version__


def run_comparison(
    dataset: Any,
    *,
    data: DataConfig,
    augment: AugmentConfig,
    model: ModelConfig,
    train: TrainConfig,
    text: TextConfig,
    fusion: FusionConfig,
    repro: ReproduceConfig,
    out_dir: str | Path,
    device: Optional[str] = None,
    resume: bool = True,
) -> pd.DataFrame:
    """Run the grid for the seeds of ``comparison_seeds`` (``train.seed``, ``train.seed + 1``, ..., or
    ``repro.seeds``); one row per (method, seed). Stage-1 checkpoints go to
    ``out_dir/stage1/<variant>/seed<s>``, each cell's record to ``out_dir/cells/seed<s>/<cell>.json``, test
    predictions to ``out_dir/predictions``, the cost of each phase to ``out_dir/timings.csv``.

    ``resume``: a cell finished before with the same settings (a hash of every config field it depends on,
    the seed, the data's fingerprint and the mmkit version) is read back, not rerun; a cell killed midway
    resumes its stage-1 runs from their ``last.pt``. ``resume=False`` reruns everything.

    The verdict is fixed before anything trains: ``repro.proposed`` must name a row of the grid, and the
    proposed row with its plan (``verdict_plan``) is stored in ``out_dir/plan.json`` at the first run; a
    later run into the same ``out_dir`` that names another is refused (``store_plan``).

    Example:
        >>> df = run_comparison(ds, data=DataConfig(), augment=AugmentConfig(image_size=32), ...)  # doctest: +SKIP
        >>> summarize(df, "test_accuracy")  # doctest: +SKIP
    """
    import os
    import warnings

    import torch

    if isinstance(fusion.bank_views, int) and fusion.bank_views < augment.copies:
        raise ValueError(
            f"bank_views={fusion.bank_views} < copies={augment.copies}: stage 2 draws M=copies of the K=bank_views "
            "cached views of each sample; raise bank_views or lower copies"
        )
    if fusion.stage1_folds < 1:
        raise ValueError(f"stage1_folds={fusion.stage1_folds}: 1 (no cross-fitting) or K >= 2 folds")
    methods = grid_methods(data, augment, fusion, repro)
    proposed = proposed_method(repro, augment, fusion)
    if proposed not in methods:
        raise ValueError(
            f"proposed={proposed!r} is not a row of this grid; name one of: " + "; ".join(methods)
        )
    plan = verdict_plan(augment, fusion, repro)
    store_plan(out_dir, proposed, plan)
    if fusion.stage1_folds > 1 and text.text_folds != fusion.stage1_folds:
        warnings.warn(
            f"text_folds={text.text_folds} but stage1_folds={fusion.stage1_folds}: every row's text uses "
            f"{text.text_folds} folds except the cross-fitted row's, which uses the {fusion.stage1_folds} "
            "stage-1 folds so both modalities hold out the same rows (its row records text_folds)",
            stacklevel=2,
        )
    seeds = comparison_seeds(repro, train.seed)
    grid = _Grid(
        dataset, data=data, augment=augment, model=model, train=train, text=text, fusion=fusion, repro=repro,
        out_dir=out_dir, device=device, resume=resume,
    )  # fmt: skip
    rows, timings, reused = [], [], []
    bar = progress(total=len(seeds) * len(grid.cells()), desc="05 grid", unit="cell")
    for seed in seeds:
        for cell in grid.cells():
            cell_rows, cell_timings, was_reused = grid.run_cell(seed, cell)
            rows += cell_rows
            timings += [{**t, "reused": was_reused} for t in cell_timings]
            reused += [f"seed{seed}/{cell}"] if was_reused else []
            bar.update()
    bar.close()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "runs.csv", index=False)
    pd.DataFrame(timings, columns=["seed", "cell", "phase", "seconds", "reused"]).to_csv(
        out / "timings.csv", index=False
    )
    # the threads as this process saw them (a bench reading the folder later cannot know them)
    threads = {"torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    (out / "grid.json").write_text(
        json.dumps({"proposed": proposed, "plan": plan, "seeds": seeds, "reused_cells": reused,
                    "task": dataset.task, "metric": f"test_{grid.metric}", "methods": methods,
                    "n_boot": repro.n_boot, "threads": threads}, indent=2)
    )  # fmt: skip
    return df


def store_plan(out_dir: str | Path, proposed: str, plan: list[dict[str, str]]) -> Path:
    """Keep the verdict's proposed row and plan in ``out_dir/plan.json`` at the first run, before anything
    trains; refuse a later run into the same folder that names another (its test rows may have been read).

    Example:
        >>> store_plan("runs/05", "proposed (M=4, all) + gated", plan)  # doctest: +SKIP
    """
    path = Path(out_dir) / "plan.json"
    fixed = {"proposed": proposed, "plan": plan}
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != json.loads(json.dumps(fixed)):
            raise ValueError(
                f"{path}: this folder's verdict was fixed at its first run with proposed={stored['proposed']!r} "
                f"and plan {_claims(stored['plan'])}; this run names proposed={proposed!r} and plan "
                f"{_claims(plan)}. A verdict is not renamed after its test rows may have been read: use a new "
                f"out_dir, or proposed={stored['proposed']!r} with the settings of the first run"
            )
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fixed, indent=2))
    return path


def load_plan(out_dir: str | Path) -> dict[str, Any]:
    """The ``{"proposed", "plan"}`` that ``run_comparison`` stored in ``out_dir`` before the run."""
    path = Path(out_dir) / "plan.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no stored verdict plan; run the grid first (run_comparison)")
    return json.loads(path.read_text())


def _claims(plan: list[dict[str, str]]) -> str:
    return "[" + "; ".join(f"{c['proposed']} vs {c['comparator']}" for c in plan) + "]"


def time_breakdown(timings: pd.DataFrame) -> pd.DataFrame:
    """Seconds per phase (rows) and seed (columns), plus the total: where the grid's time went. Reused cells
    count with the time they took when they ran."""
    if timings.empty:
        return pd.DataFrame()
    table = timings.pivot_table(
        index="phase", columns="seed", values="seconds", aggfunc="sum", fill_value=0.0
    )
    table.columns = [f"seed {c}" for c in table.columns]
    table["total"] = table.sum(axis=1)
    return table.sort_values("total", ascending=False)


# Per-row settings that do not change with the seed: carried from the rows into the summary and the table.
ROW_COLUMNS = ("bank_views", "stage2_views", "approximation", "stage1_views", "trainable_share", "text_folds")


def _value(x: Any, col: str = "") -> Any:
    """A row setting as a JSON/table value: NaN (a column only other rows fill, or read back from CSV) is
    None, counts are ints again after a CSV round trip, "True"/"False" are bools."""
    if x is None or (isinstance(x, (float, np.floating)) and np.isnan(x)):
        return None
    if isinstance(x, str) and x in ("True", "False"):
        return x == "True"
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if col == "trainable_share":
        return float(x)
    if isinstance(x, (int, np.integer)) or (isinstance(x, (float, np.floating)) and float(x).is_integer()):
        return int(x)
    return x.item() if isinstance(x, np.generic) else x


def summarize(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std (sample, ddof=1) and count of ``metric`` per method, in the order methods first appear,
    with each row's settings (``ROW_COLUMNS``: the bank's K, the views seen, the trainable share...) when the
    rows carry them."""
    order = list(dict.fromkeys(df["method"]))
    g = df.groupby("method", sort=False)
    summary = pd.DataFrame(
        {
            "method": order,
            "group": [g.get_group(m)["group"].iloc[0] for m in order],
            "mean": [float(g.get_group(m)[metric].mean()) for m in order],
            "std": [
                float(g.get_group(m)[metric].std(ddof=1)) if len(g.get_group(m)) > 1 else 0.0 for m in order
            ],
            "n": [int(len(g.get_group(m))) for m in order],
        }
    )
    for col in ROW_COLUMNS:
        if col in df.columns:
            summary[col] = pd.Series([_value(g.get_group(m)[col].iloc[0], col) for m in order], dtype=object)
    return summary


def _k_cell(k: Any, drawn: Any, approximation: Any) -> str:
    if k is None:
        return "–"
    return f"{k} (approximation: {drawn} drawn from {k} cached)" if approximation else f"{k} (each view once)"


def markdown_table(summary: pd.DataFrame, metric: str) -> str:
    """The comparison as a markdown table: ``mean ± std`` in percent over ``n`` seeds (one seed has no
    spread: its cell says ``n/a`` instead of a ± 0.00 that would read as a measured zero), then each row's
    K (the feature-bank views per training image its stage 2 drew from; "approximation" unless each view
    was drawn exactly once, ``bank_views="epochs"``: an integer K draws M of K at random every step), the augmented views per training image it saw
    in stage 1 / stage 2 (the M=1 row at equal compute sees as many as M copies), and the share of the
    backbone's parameters stage 1 trained.

    Example:
        >>> s = pd.DataFrame([{"method": "p", "group": "g", "mean": .5, "std": .1, "n": 3, "bank_views": 8,
        ...                    "stage2_views": 80, "approximation": True, "stage1_views": 24, "trainable_share": 1.0}])
        >>> markdown_table(s, "accuracy").splitlines()[-1]
        '| p | g | 50.00 ± 10.00 | 3 | 8 (approximation: 80 drawn from 8 cached) | 24 / 80 | 100.00% |'
    """
    lines = [
        f"| method | group | test {metric} (%) mean ± std | seeds | K (bank views) | views seen per image "
        "(stage 1 / stage 2) | trainable share of the backbone |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary.to_dict("records"):
        spread = f"± {100 * r['std']:.2f}" if r["n"] > 1 else "± n/a"
        get = {c: _value(r.get(c), c) for c in ROW_COLUMNS}
        s1, s2 = get["stage1_views"], get["stage2_views"]
        views = (
            "–" if s1 is None and s2 is None else f"{'–' if s1 is None else s1} / {'–' if s2 is None else s2}"
        )
        share = "–" if get["trainable_share"] is None else f"{100 * get['trainable_share']:.2f}%"
        k = _k_cell(get["bank_views"], s2, get["approximation"])
        lines.append(
            f"| {r['method']} | {r['group']} | {100 * r['mean']:.2f} {spread} | {r['n']} | {k} | {views} | {share} |"
        )
    return "\n".join(lines)


def crossfit_summary(
    summary: pd.DataFrame, timings: pd.DataFrame, n_seeds: int, augment: AugmentConfig, fusion: FusionConfig
) -> dict[str, Any]:
    """Notebook 05's cross-fitting numbers: the seconds per seed of the main stage-1 run and of the K
    cross-fitted ones, their ratio, and the test mean of the proposed row with and without cross-fitting.
    Empty when ``fusion.stage1_folds`` is 1 (no cross-fitted row).

    Example:
        >>> s = pd.DataFrame({"method": ["proposed (M=2, all) + concat-linear",
        ...                              "proposed (M=2, all) + concat-linear · cross-fitted (K=2)"], "mean": [.6, .5]})
        >>> t = pd.DataFrame({"phase": ["stage 1 (M=2, all)", "stage 1 cross-fit (2 folds)"], "seconds": [4.0, 6.0]})
        >>> crossfit_summary(s, t, 2, AugmentConfig(copies=2), FusionConfig(stage1_folds=2))["cost_ratio"]
        1.5
    """
    k = fusion.stage1_folds
    if k <= 1:
        return {}
    main_row = f"proposed ({Variant(augment.copies, 'all').tag}) + {fusion.head}"
    cross_row = f"{main_row} · {crossfit_tag(k)}"
    per_seed = timings.groupby("phase")["seconds"].sum() / n_seeds
    full_s = float(per_seed[f"stage 1 ({Variant(augment.copies, 'all').tag})"])
    cross_s = float(per_seed[f"stage 1 cross-fit ({k} folds)"])
    means = summary.set_index("method")["mean"]
    return {
        "folds": k,
        "stage1_seconds_per_seed": full_s,
        "crossfit_stage1_seconds_per_seed": cross_s,
        "cost_ratio": cross_s / full_s,
        "test_mean_k1": float(means[main_row]),
        "test_mean_crossfit": float(means[cross_row]),
    }


def closing_words(results: dict[str, Any], dataset_name: str, cross: Optional[dict[str, Any]] = None) -> str:
    """Notebook 05's closing sentence: the best row overall (mean ± std of the headline metric) and what
    cross-fitting cost and changed. The verdict's family is printed beside it by ``verdict_words``.

    Example:
        >>> r = {"metric": "test_macro_f1", "n_seeds": 2, "summary": {"a": {"mean": .61, "std": .02, "n": 2},
        ...      "b": {"mean": .7, "std": None, "n": 1}}}
        >>> closing_words(r, "demo")
        'Over 2 seeds on **demo**, the best row overall by test macro_f1 was *b* at 70.0% (one seed: no spread).'
    """
    rows = results["summary"]
    best = max(rows, key=lambda m: rows[m]["mean"])
    spread = rows[best]["std"]
    metric = results["metric"].replace("test_", "")
    words = (
        f"Over {results['n_seeds']} seeds on **{dataset_name}**, the best row overall by test {metric} was "
        f"*{best}* at {100 * rows[best]['mean']:.1f}%"
        + (f" ± {100 * spread:.1f}." if spread is not None else " (one seed: no spread).")
    )
    if cross:
        words += (
            f" Cross-fitting with {cross['folds']} folds cost {cross['cost_ratio']:.1f} times the main stage-1 "
            f"run ({cross['crossfit_stage1_seconds_per_seed']:.0f} s against "
            f"{cross['stage1_seconds_per_seed']:.0f} s per seed) and moved the proposed row from "
            f"{100 * cross['test_mean_k1']:.1f}% to {100 * cross['test_mean_crossfit']:.1f}%."
        )
    return words


def save_comparison(
    df: pd.DataFrame,
    metric: str,
    out_dir: str | Path,
    *,
    plan: Optional[list[dict[str, str]]] = None,
    run_dirs: Optional[list[str | Path]] = None,
    n_boot: int = 10_000,
) -> dict[str, Any]:
    """Write ``comparison.csv`` / ``comparison.md`` (ours, then the paper's figures) and return the
    numbers notebook 05 puts in metrics.json. ``metric`` is ``test_<the dataset's headline metric>``; with a
    ``plan`` (``verdict_plan``, stored before the run) the ``verdict`` is its Holm-corrected family
    (``mmkit.verdict.verdict_family``), its predictions read from ``run_dirs`` (default ``[out_dir]``).

    Example:
        >>> results = save_comparison(df, "test_macro_f1", "runs/05", plan=load_plan("runs/05")["plan"])  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(df, metric)
    summary.to_csv(out / "comparison.csv", index=False)
    paper = paper_table()
    key = metric.replace("test_", "")
    result: dict[str, Any] = {
        "metric": metric,
        "n_seeds": int(df["seed"].nunique()),
        "seeds": sorted(int(s) for s in df["seed"].unique()),
        "summary": {
            r["method"]: {
                "mean": r["mean"], "std": r["std"] if r["n"] > 1 else None, "n": r["n"],
                **{c: _value(r[c], c) for c in ROW_COLUMNS if c in r},
            }
            for r in summary.to_dict("records")
        },
    }  # fmt: skip
    verdict_md = ""
    if plan is not None:
        family = verdict_family(df, [Path(r) for r in (run_dirs or [out])], key, plan, n_boot=n_boot)
        result["verdict"] = family
        verdict_md = (
            "## Verdict (named before the run, Holm-corrected over the family)\n\n"
            + verdict_words(family)
            + "\n\n"
        )
    text = (
        f"## This run ({df['seed'].nunique()} seeds)\n\n{markdown_table(summary, key)}\n\n"
        + verdict_md
        + "## The paper's figures, on the paper's data (not comparable with the rows above)\n\n"
        + "| paper's data | paper's method | paper's test accuracy (%) |\n|---|---|---|\n"
        + "\n".join(f"| {d} | {m} | {a:.2f} |" for d, m, a in paper.itertuples(index=False))
        + "\n"
    )
    (out / "comparison.md").write_text(text)
    return result


def gather(run_dirs: list[str | Path], out_dir: str | Path, n_boot: Optional[int] = None) -> dict[str, Any]:
    """Merge the runs of notebook 05 made as separate jobs (e.g. one seed each, ``-p seeds [3]``) into one
    table, figure and verdict in ``out_dir``, as if one run had done every seed.

    Each run folder holds ``runs.csv``, ``grid.json``, ``predictions/`` and ``config.json``; the runs must
    agree on the settings (the proposed row, the verdict's plan, the task and its metric) and not repeat a
    seed.

    Example:
        >>> gather(["runs/05_seed0", "runs/05_seed1"], "runs/05_all")  # doctest: +SKIP
    """
    from mmkit.report import write_metrics
    from mmkit.viz import plot_comparison

    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise ValueError("gather: name at least one run folder of notebook 05")
    grids, frames = [], []
    for run in runs:
        for name in ("runs.csv", "grid.json"):
            if not (run / name).exists():
                raise FileNotFoundError(
                    f"{run / name}: not a finished run of notebook 05 (mmkit run 05 --out {run})"
                )
        grids.append(json.loads((run / "grid.json").read_text()))
        frames.append(pd.read_csv(run / "runs.csv"))
    for key in ("proposed", "plan", "task", "metric", "methods"):
        values = {json.dumps(g.get(key), sort_keys=True) for g in grids}
        if len(values) > 1:
            raise ValueError(
                f"gather: the runs differ in {key} ({', '.join(sorted(values))}); rerun them alike"
            )
    configs = {(r / "config.json").read_text() for r in runs if (r / "config.json").exists()}
    if len(configs) > 1:
        import warnings

        warnings.warn(
            "gather: the runs' config.json differ (beyond their seeds?); check they are one grid",
            stacklevel=2,
        )
    seen: dict[int, Path] = {}
    for run, frame in zip(runs, frames):
        for seed in frame["seed"].unique():
            if int(seed) in seen:
                raise ValueError(f"gather: seed {seed} is in both {seen[int(seed)]} and {run}; keep one")
            seen[int(seed)] = run
    df = pd.concat(frames, ignore_index=True)
    df = _in_grid_order(df, grids[0]["methods"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "runs.csv", index=False)
    grid = grids[0]
    if "plan" not in grid:
        raise ValueError(
            f"gather: {runs[0] / 'grid.json'} holds no verdict plan (a run of an older mmkit); rerun notebook 05 "
            "into a new out_dir so its claims are named before the run"
        )
    if n_boot is None:
        n_boot = int(grid.get("n_boot", 10_000))
    results = save_comparison(df, grid["metric"], out, plan=grid["plan"], run_dirs=runs, n_boot=n_boot)
    fig = plot_comparison(summarize(df, grid["metric"]), grid["metric"].replace("test_", ""))
    fig.savefig(out / "comparison.png", dpi=120)
    timings = [pd.read_csv(r / "timings.csv") for r in runs if (r / "timings.csv").exists()]
    if timings:
        pd.concat(timings, ignore_index=True).to_csv(out / "timings.csv", index=False)
    write_metrics(out, {"task": grid["task"], "gathered_from": [str(r) for r in runs], **results})
    return results


def _in_grid_order(df: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Rows sorted by seed, then by the grid's method order (as one run writes them)."""
    rank = {m: i for i, m in enumerate(methods)}
    order = sorted(
        range(len(df)), key=lambda i: (int(df["seed"].iloc[i]), rank.get(df["method"].iloc[i], len(rank)))
    )
    return df.iloc[order].reset_index(drop=True)


__all__ = [
    "PAPER_FIGURES",
    "ROW_COLUMNS",
    "Variant",
    "closing_words",
    "comparison_seeds",
    "crossfit_summary",
    "frozen_fusion_heads",
    "gather",
    "grid_methods",
    "load_plan",
    "markdown_table",
    "paper_table",
    "proposed_method",
    "run_comparison",
    "save_comparison",
    "stage1_variants",
    "store_plan",
    "summarize",
    "time_breakdown",
    "verdict_plan",
]
