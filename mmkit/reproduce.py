"""Notebook 05: the paper's comparison and its ablations over several seeds, reported as mean ± std.

The grid, for each seed (model init, augmentation draws and text folds change; the data split does not):

    text only                          the text encoder's out-of-fold logits -> linear head
    image · frozen + linear            a frozen backbone's feature bank -> linear head (the seed's baseline)
    image+text · frozen + concat       frozen bank + text logits -> concat-linear (traditional multimodal)
    image · fine-tuned (M, blocks)     stage 1 on batch-augmented images, scored by its own classifier
    proposed (M, blocks) + head        stage-1 backbone -> feature bank -> fusion head (batch augmentation)

Stage 1 runs three times per seed: M=1 with all blocks trainable (the published recipe), M=``copies``
with all blocks (Hoffer's batch augmentation) and M=``copies`` with ``ablation_blocks`` (the paper's text:
adapt only the initial layers). The proposed fusion is trained on each, and on the main one (M=copies,
all blocks) with every fusion head. On FPUS23 the text-only and proposed rows are repeated without the
view field, which nearly names the organ.

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
from typing import Any, Optional

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


def _row(method: str, group: str, seed: int, metrics: dict[str, dict[str, Any]], task: str) -> dict[str, Any]:
    key = headline_metric(task)
    return {
        "method": method,
        "group": group,
        "seed": seed,
        f"test_{key}": metrics["test"][key],
        "test_macro_f1": metrics["test"]["macro_f1"],
        f"val_{key}": metrics["val"][key],
    }


def stage1_variants(repro: ReproduceConfig, copies: int) -> list[tuple[int, str]]:
    """(M, train_blocks) of the stage-1 runs: the published recipe, batch augmentation, and first-k."""
    variants = [(1, "all"), (copies, "all"), (copies, repro.ablation_blocks)]
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


def grid_methods(
    data: DataConfig, augment: AugmentConfig, fusion: FusionConfig, repro: ReproduceConfig
) -> list[str]:
    """Every method row the grid will produce, known before anything runs (the verdict's names are
    checked against it)."""
    from mmkit.heads import HEADS

    view = repro.view_ablation and "fpus23" in data.dataset and data.include_view
    names = ["text only", "image · frozen + linear", "image+text · frozen + concat-linear"]
    names += ["text only · no view field"] if view else []
    for copies, blocks in stage1_variants(repro, augment.copies):
        tag = f"M={copies}, {blocks}"
        main = copies == augment.copies and blocks == "all"
        names.append(f"image · fine-tuned ({tag})")
        heads = [fusion.head] + [h for h in HEADS if h != fusion.head] if main else [fusion.head]
        names += [f"proposed ({tag}) + {h}" for h in heads]
        if main and view:
            names.append(f"proposed ({tag}) + {fusion.head} · no view field")
    if fusion.stage1_folds > 1:
        names.append(
            f"proposed (M={augment.copies}, all) + {fusion.head} · {crossfit_tag(fusion.stage1_folds)}"
        )
    return names


class _Grid:
    """The cells of notebook 05's grid for one dataset: each (seed, cell) is an independent job whose rows,
    test predictions and timings land under ``out_dir``; a finished cell with the same settings is reused."""

    def __init__(self, dataset, *, data, augment, model, train, text, fusion, repro, out_dir, device, resume):
        from mmkit.features import dataset_fingerprint

        self.ds, self.data, self.augment, self.model, self.train = dataset, data, augment, model, train
        self.text, self.fusion, self.repro, self.out, self.device = text, fusion, repro, Path(out_dir), device
        self.resume, self.task = resume, dataset.task
        self.stage2 = replace(
            train, epochs=repro.stage2_epochs, lr=repro.stage2_lr, optimizer="adamw",
            weight_decay=repro.stage2_weight_decay, warmup_epochs=0.0,
        )  # fmt: skip
        self.no_view = None
        if repro.view_ablation and "fpus23" in data.dataset and data.include_view:
            from mmkit.data import load_dataset

            self.no_view = load_dataset(replace(data, include_view=False))
        # What a cell's results depend on (not how many seeds, not where, not the verdict's choice).
        settings = {type(c).__name__: asdict(c) for c in (data, augment, model, train, text, fusion)}
        settings["ReproduceConfig"] = {
            k: v for k, v in asdict(repro).items() if k not in ("n_seeds", "seeds", "proposed", "n_boot")
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
        names = ["baselines"] + [
            _variant_dir(c, b) for c, b in stage1_variants(self.repro, self.augment.copies)
        ]
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

    def text_features(self, seed: int, cell: str, no_view: bool = False) -> Any:
        """The seed's text features, computed once per seed and shared by every cell (not per variant)."""
        from mmkit.text import compute_text_features

        shared, key = self._shared(seed), "text_no_view" if no_view else "text"
        if key not in shared:
            ds = self.no_view if no_view else self.ds
            t = self.text
            with self._timed(seed, cell, "text features" + (" (no view)" if no_view else "")):
                shared[key] = compute_text_features(
                    ds, t.text_encoder, features=t.text_features, folds=t.text_folds, seed=seed,
                    fold_of=self.fold_of(seed), **(t.text_options or {}),
                )  # fmt: skip
        return shared[key][0]

    def bank(self, seed: int, cell: str, checkpoint: Optional[Path], dataset: Any = None) -> Any:
        from mmkit.features import build_feature_bank

        a, f, m = self.augment, self.fusion, self.model
        with self._timed(seed, cell, "bank build"):
            return build_feature_bank(
                dataset if dataset is not None else self.ds, m.backbone, pretrained=m.pretrained,
                checkpoint=checkpoint, preset=a.preset, views=f.bank_views, image_size=a.image_size, seed=seed,
                batch_size=max(a.batch_size, f.bank_views), cache_dir=f.bank_dir or self.out / "feature_bank",
                device=self.device, num_workers=a.num_workers,
            )  # fmt: skip

    def fuse(
        self, seed, cell, method, group, ds, table, bank, head, copies, modalities="both", keep=None
    ) -> dict[str, Any]:
        """Train one stage-2 head, keep its test predictions, return its row. ``keep`` = (stage-1
        checkpoint, train_blocks): also save the trained model to ``out_dir/model``."""
        from mmkit.model import model_from_stage2, save_model
        from mmkit.stage2 import predict, train_stage2

        with self._timed(seed, cell, "stage 2 heads"):
            result = train_stage2(
                ds, table, bank=bank, head=head, fusion=self.fusion, train=replace(self.stage2, seed=seed),
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
        return _row(method, group, seed, result.metrics, self.task)

    def _save_predictions(self, seed: int, method: str, scores: np.ndarray, y: np.ndarray, ids: list) -> None:
        path = predictions_path(self.out, seed, method)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, scores=scores, targets=y, ids=np.array(ids, dtype=np.str_))

    def stage1(self, seed: int, cell: str, dataset: Any, copies: int, blocks: str, out_dir: Path, phase: str):
        from mmkit.train import train_stage1

        with self._timed(seed, cell, phase):
            return train_stage1(
                dataset, replace(self.model, train_blocks=blocks), replace(self.train, seed=seed),
                replace(self.augment, seed=seed, copies=copies), out_dir=out_dir, resume=self.resume_stage1,
                device=self.device,
            )  # fmt: skip

    # ------------------------------------------------------------------------------------------- cells
    def _cell_baselines(self, seed: int, cell: str) -> list[dict[str, Any]]:
        feats = self.text_features(seed, cell)
        frozen = self.bank(seed, cell, None)
        rows = []
        for method, modalities in (
            ("text only", "text"),
            ("image · frozen + linear", "image"),
            ("image+text · frozen + concat-linear", "both"),
        ):
            group = "traditional" if modalities == "both" else "single modality"
            rows.append(
                self.fuse(seed, cell, method, group, self.ds, feats, frozen, "concat-linear", 1, modalities)
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

        copies, blocks = next(
            v for v in stage1_variants(self.repro, self.augment.copies) if _variant_dir(*v) == cell
        )
        tag = f"M={copies}, {blocks}"
        s1 = self.stage1(
            seed,
            cell,
            self.ds,
            copies,
            blocks,
            self.out / "stage1" / cell / f"seed{seed}",
            f"stage 1 ({tag})",
        )
        method = f"image · fine-tuned ({tag})"
        self._save_predictions(seed, method, *self._stage1_test_scores(s1, seed, copies), self.ds.ids("test"))
        rows = [_row(method, "stage 1", seed, s1.metrics, self.task)]
        feats = self.text_features(seed, cell)
        tuned = self.bank(seed, cell, s1.checkpoint)
        main = copies == self.augment.copies and blocks == "all"
        head0 = self.fusion.head
        for head in [head0] + [h for h in HEADS if h != head0] if main else [head0]:
            group = "proposed" if head == head0 else "fusion heads"
            # the first seed's proposed model is the run's artefact: out_dir/model (mmkit.model)
            keep = (s1.checkpoint, blocks) if main and head == head0 and seed == self.first_seed else None
            method = f"proposed ({tag}) + {head}"
            rows.append(self.fuse(seed, cell, method, group, self.ds, feats, tuned, head, copies, keep=keep))
        if main and self.no_view is not None:
            nv = self.text_features(seed, cell, no_view=True)
            method = f"proposed ({tag}) + {head0} · no view field"
            rows.append(
                self.fuse(seed, cell, method, "view ablation", self.no_view, nv, tuned, head0, copies)
            )
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
        full = self.bank(seed, cell, full_checkpoint)
        bank = cross_fitted_bank(
            self.ds,
            fold_of,
            [f.checkpoint for f in fits],
            full,
            lambda ds, ckpt: self.bank(seed, cell, ckpt, ds),
        )
        feats = self.text_features(seed, cell)
        method = f"proposed (M={copies}, all) + {self.fusion.head} · {crossfit_tag(k)}"
        return [self.fuse(seed, cell, method, "cross-fitted", self.ds, feats, bank, self.fusion.head, copies)]


def _variant_dir(copies: int, blocks: str) -> str:
    return f"M{copies}_{blocks.replace(':', '')}"


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
    resumes its stage-1 runs from their ``last.pt``. ``resume=False`` reruns everything. The verdict's ``repro.proposed`` must name a row of the grid; it is checked before anything runs.

    Example:
        >>> df = run_comparison(ds, data=DataConfig(), augment=AugmentConfig(image_size=32), ...)  # doctest: +SKIP
        >>> summarize(df, "test_accuracy")  # doctest: +SKIP
    """
    if fusion.bank_views < augment.copies:
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
    (out / "grid.json").write_text(
        json.dumps({"proposed": proposed, "seeds": seeds, "reused_cells": reused, "task": dataset.task,
                    "metric": f"test_{headline_metric(dataset.task)}", "methods": methods, "n_boot": repro.n_boot}, indent=2)
    )  # fmt: skip
    return df


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


def summarize(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std (sample, ddof=1) and count of ``metric`` per method, in the order methods first appear."""
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
    return summary


def markdown_table(summary: pd.DataFrame, metric: str) -> str:
    """The comparison as a markdown table: ``mean ± std`` in percent over ``n`` seeds (one seed has no
    spread: its cell says ``n/a`` instead of a ± 0.00 that would read as a measured zero)."""
    lines = [f"| method | group | test {metric} (%) mean ± std | seeds |", "|---|---|---|---|"]
    for r in summary.itertuples():
        spread = f"± {100 * r.std:.2f}" if r.n > 1 else "± n/a"
        lines.append(f"| {r.method} | {r.group} | {100 * r.mean:.2f} {spread} | {r.n} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ verdict
# The verdict's statistics live in mmkit.verdict; notebook 05 names verdict_text.
verdict_text = verdict_words


def default_plan(proposed: str) -> list[dict[str, str]]:
    """The family when only ``proposed`` is named: claim (a), proposed vs the best single modality on
    validation."""
    return [
        {
            "claim": "(a) the proposed row against the best single modality",
            "proposed": proposed,
            "comparator": BEST_SINGLE,
        }
    ]


def save_comparison(
    df: pd.DataFrame,
    metric: str,
    out_dir: str | Path,
    *,
    proposed: Optional[str] = None,
    run_dirs: Optional[list[str | Path]] = None,
    task: Optional[str] = None,
    n_boot: int = 10_000,
    plan: Optional[list[dict[str, str]]] = None,
) -> dict[str, Any]:
    """Write ``comparison.csv`` / ``comparison.md`` (ours, then the paper's figures) and return the
    numbers notebook 05 puts in metrics.json, the ``verdict`` among them (``mmkit.verdict.verdict_family``
    on ``metric``) when a ``plan`` of claims or a ``proposed`` row (``default_plan``) is given. Predictions
    are read from ``run_dirs``, default ``[out_dir]``; ``task`` only checks that mAP is a multilabel
    metric."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(df, metric)
    summary.to_csv(out / "comparison.csv", index=False)
    paper = paper_table()
    result: dict[str, Any] = {
        "metric": metric,
        "n_seeds": int(df["seed"].nunique()),
        "seeds": sorted(int(s) for s in df["seed"].unique()),
        "summary": {
            r.method: {"mean": r.mean, "std": r.std if r.n > 1 else None, "n": r.n}
            for r in summary.itertuples()
        },
    }
    verdict_md = ""
    if plan is None and proposed is not None:
        plan = default_plan(proposed)
    if plan:
        key = metric.removeprefix("test_")
        if key == "mAP" and task not in (None, "multilabel"):
            raise ValueError(f"metric {metric!r} does not fit task {task!r}: mAP is a multilabel metric")
        v = verdict_family(df, run_dirs or [out], key, plan, n_boot=n_boot)
        result["verdict"] = v
        verdict_md = f"## Verdict (fixed before the test set was read)\n\n{verdict_words(v)}\n\n"
    text = (
        f"## This run ({df['seed'].nunique()} seeds)\n\n{markdown_table(summary, metric.replace('test_', ''))}\n\n"
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
    agree on the settings (the proposed row, the task) and not repeat a seed.

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
    for key in ("proposed", "task", "metric", "methods"):
        values = {json.dumps(g[key]) for g in grids}
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
    if n_boot is None:
        n_boot = int(grid.get("n_boot", 1000))
    results = save_comparison(
        df, grid["metric"], out, proposed=grid["proposed"], run_dirs=runs, task=grid["task"], n_boot=n_boot
    )
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
    "comparison_seeds",
    "gather",
    "grid_methods",
    "markdown_table",
    "paper_table",
    "proposed_method",
    "run_comparison",
    "save_comparison",
    "stage1_variants",
    "summarize",
    "time_breakdown",
    "default_plan",
    "verdict_text",
]
