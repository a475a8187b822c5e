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

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

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
) -> pd.DataFrame:
    """Run the grid for ``repro.n_seeds`` seeds (``train.seed``, ``train.seed + 1``, ...); one row per
    (method, seed). Stage-1 checkpoints go to ``out_dir/stage1/<variant>/seed<s>``.

    Example:
        >>> df = run_comparison(ds, data=DataConfig(), augment=AugmentConfig(image_size=32), ...)  # doctest: +SKIP
        >>> summarize(df, "test_accuracy")  # doctest: +SKIP
    """
    from mmkit.data import load_dataset
    from mmkit.features import build_feature_bank
    from mmkit.heads import HEADS
    from mmkit.model import model_from_stage2, save_model
    from mmkit.stage2 import train_stage2
    from mmkit.text import compute_text_features
    from mmkit.train import train_stage1

    if fusion.bank_views < augment.copies:
        raise ValueError(
            f"bank_views={fusion.bank_views} < copies={augment.copies}: stage 2 draws M=copies of the K=bank_views "
            "cached views of each sample; raise bank_views or lower copies"
        )
    out = Path(out_dir)
    task = dataset.task
    stage2 = replace(
        train,
        epochs=repro.stage2_epochs,
        lr=repro.stage2_lr,
        optimizer="adamw",
        weight_decay=repro.stage2_weight_decay,
        warmup_epochs=0.0,
    )
    no_view = None
    if repro.view_ablation and "fpus23" in data.dataset and data.include_view:
        no_view = load_dataset(replace(data, include_view=False))
    rows: list[dict[str, Any]] = []
    seeds = [train.seed + i for i in range(repro.n_seeds)]
    bar = progress(
        total=len(seeds) * (1 + len(stage1_variants(repro, augment.copies))), desc="05 grid", unit="run"
    )

    def bank_for(seed: int, checkpoint: Optional[Path]) -> Any:
        return build_feature_bank(
            dataset, model.backbone, pretrained=model.pretrained, checkpoint=checkpoint, preset=augment.preset,
            views=fusion.bank_views, image_size=augment.image_size, seed=seed,
            batch_size=max(augment.batch_size, fusion.bank_views), cache_dir=fusion.bank_dir or out / "feature_bank",
            device=device, num_workers=augment.num_workers,
        )  # fmt: skip

    for seed in seeds:
        aug_s, s2 = replace(augment, seed=seed), replace(stage2, seed=seed)

        def fuse(ds: Any, table: Any, bank: Any, head: str, copies: int, modalities: str = "both",
                 aug_s: AugmentConfig = aug_s, s2: TrainConfig = s2, full: bool = False) -> Any:  # fmt: skip
            result = train_stage2(
                ds, table, bank=bank, head=head, fusion=fusion, train=s2, augment=replace(aug_s, copies=copies),
                modalities=modalities, device=device,
            )  # fmt: skip
            return result if full else result.metrics

        def text_features(ds: Any, seed: int = seed, encoder: bool = False) -> Any:
            kw = dict(features=text.text_features, folds=text.text_folds, seed=seed)
            table, fitted = compute_text_features(ds, text.text_encoder, **kw, **(text.text_options or {}))
            return (table, fitted) if encoder else table

        feats, text_encoder = text_features(dataset, encoder=True)
        frozen = bank_for(seed, None)
        for method, modalities in (
            ("text only", "text"),
            ("image · frozen + linear", "image"),
            ("image+text · frozen + concat-linear", "both"),
        ):
            group = "traditional" if modalities == "both" else "single modality"
            rows.append(
                _row(method, group, seed, fuse(dataset, feats, frozen, "concat-linear", 1, modalities), task)
            )
        if no_view is not None:
            nv_feats = text_features(no_view)
            metrics = fuse(no_view, nv_feats, frozen, "concat-linear", 1, "text")
            rows.append(_row("text only · no view field", "view ablation", seed, metrics, task))
        bar.update()

        for copies, blocks in stage1_variants(repro, augment.copies):
            tag = f"M={copies}, {blocks}"
            s1 = train_stage1(
                dataset, replace(model, train_blocks=blocks), replace(train, seed=seed),
                replace(aug_s, copies=copies), out_dir=out / "stage1" / f"M{copies}_{blocks.replace(':', '')}" / f"seed{seed}",
                device=device,
            )  # fmt: skip
            rows.append(_row(f"image · fine-tuned ({tag})", "stage 1", seed, s1.metrics, task))
            tuned = bank_for(seed, s1.checkpoint)
            main = copies == augment.copies and blocks == "all"
            heads = [fusion.head] + [h for h in HEADS if h != fusion.head] if main else [fusion.head]
            for head in heads:
                group = "proposed" if head == fusion.head else "fusion heads"
                if main and head == fusion.head and seed == seeds[0]:
                    # the proposed model of the first seed is the run's artefact: out_dir/model (mmkit.model)
                    result = fuse(dataset, feats, tuned, head, copies, full=True)
                    save_model(
                        model_from_stage2(
                            result, text_encoder, augment=replace(aug_s, copies=copies), fusion=fusion,
                            model=replace(model, train_blocks=blocks), text_kind=feats.kind, bank=tuned,
                            checkpoint=s1.checkpoint,
                        ),
                        out / "model",
                    )  # fmt: skip
                    metrics = result.metrics
                else:
                    metrics = fuse(dataset, feats, tuned, head, copies)
                rows.append(_row(f"proposed ({tag}) + {head}", group, seed, metrics, task))
            if main and no_view is not None:
                metrics = fuse(no_view, nv_feats, tuned, fusion.head, copies)
                rows.append(
                    _row(
                        f"proposed ({tag}) + {fusion.head} · no view field",
                        "view ablation",
                        seed,
                        metrics,
                        task,
                    )
                )
            bar.update()
    bar.close()
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "runs.csv", index=False)
    return df


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
    """The comparison as a markdown table: ``mean ± std`` in percent over ``n`` seeds."""
    lines = [f"| method | group | test {metric} (%) mean ± std | seeds |", "|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.method} | {r.group} | {100 * r.mean:.2f} ± {100 * r.std:.2f} | {r.n} |")
    return "\n".join(lines)


def save_comparison(df: pd.DataFrame, metric: str, out_dir: str | Path) -> dict[str, Any]:
    """Write ``comparison.csv`` / ``comparison.md`` (ours, then the paper's figures) and return the
    numbers notebook 05 puts in metrics.json."""
    out = Path(out_dir)
    summary = summarize(df, metric)
    summary.to_csv(out / "comparison.csv", index=False)
    paper = paper_table()
    text = (
        f"## This run ({df['seed'].nunique()} seeds)\n\n{markdown_table(summary, metric.replace('test_', ''))}\n\n"
        "## The paper's figures, on the paper's data (not comparable with the rows above)\n\n"
        + "| paper's data | paper's method | paper's test accuracy (%) |\n|---|---|---|\n"
        + "\n".join(f"| {d} | {m} | {a:.2f} |" for d, m, a in paper.itertuples(index=False))
        + "\n"
    )
    (out / "comparison.md").write_text(text)
    means = dict(zip(summary["method"], summary["mean"]))
    single = max(means["text only"], means["image · frozen + linear"])
    # Every head trained on a stage-1 backbone is the proposed method; the head is an ablation of it.
    proposed = summary[summary["method"].str.startswith("proposed") & (summary["group"] != "view ablation")]
    return {
        "metric": metric,
        "n_seeds": int(df["seed"].nunique()),
        "summary": {r.method: {"mean": r.mean, "std": r.std, "n": r.n} for r in summary.itertuples()},
        "best_single_modality": single,
        "best_proposed": float(proposed["mean"].max()),
        "best_proposed_method": str(proposed.loc[proposed["mean"].idxmax(), "method"]),
        "proposed_beats_single": bool(proposed["mean"].max() > single),
    }


__all__ = [
    "PAPER_FIGURES",
    "markdown_table",
    "paper_table",
    "run_comparison",
    "save_comparison",
    "stage1_variants",
    "summarize",
]
