"""Notebook 05's verdict: a small family of claims named before the run, each a paired comparison of two
rows of the grid on the same test rows over the same seeds, with a bootstrap interval, Holm-corrected.

The design the statistics follow. Every seed scores the *same* test rows, so the seeds and the test rows
are crossed: the test rows' sampling noise is shared by every seed (and by both rows of a claim), the
seed-to-seed noise is not. The difference of seed ``s`` on the full test set, ``D_s``, is

    D_s = mu + (shared test-row part, the same for every s) + (seed part, independent across s)

where the seed part holds the training randomness and the seed-by-row interaction (which rows this seed
happens to get right). ``paired_bootstrap`` estimates the two parts apart and adds them:

- the test rows: each replicate draws ONE resample of the test rows (multinomial counts) and applies it to
  every seed and to both rows, so the replicates keep the sharing. The covariance of two seeds' replicate
  deviations is exactly the shared part's variance (the seed-by-row part is independent across seeds), so
  the replicate deviations of the seed mean are scaled down to that variance; their variance across seeds
  is the seed-by-row part, which the seed term below already counts.
- the seeds: ``s_D^2`` (the sample variance of ``D_s`` over the S seeds, S-1 degrees of freedom) estimates
  the seed part's variance, seed-by-row interaction included. Half the replicates add it as
  ``s_D / sqrt(S) * t`` with ``t`` from Student's t with S-1 degrees of freedom (a generalised pivot);
  the other half draw it as a normal and stretch the whole deviation by a t with Welch-Satterthwaite
  degrees of freedom (the two parts' variances, the row part's with N-1). The interval is the percentiles
  of the pooled replicates.

Why this mix. Resampling 3 seeds gives 10 distinct seed resamples whose spread is ``(S-1)/S`` of the seed
variance, read with normal quantiles where a t with 2 degrees of freedom is needed (4.30 vs 1.96): where
the seeds dominate such an interval covers a true zero in 87% of grids (3 seeds). The generalised pivot
alone is exact when one part dominates but over-covers when both are alike (up to 98% at 3 seeds); Welch
alone under-covers when the seeds dominate (down to 91%). Pooled, over simulated grids with every mix of seed, row and
seed-by-row noise (1,000 grids each, test rows n = 200): 93.4-96.1% at 3 seeds, 93.7-95.1% at 5; in a
normal model with the seed share swept from 0 to 1: 94.5-96.7% at 3 seeds, 94.6-95.7% at 5. The old
verdict (a fresh row resample per resampled seed) covered 83-89% in tests/test_verdict.py's simulation.
With one seed there is no seed-to-seed estimate: the interval then covers the test rows' noise only, and
the result says so (``seed_variance_estimated``).

The metric is the dataset's headline (``accuracy``, ``macro_f1`` or ``mAP``), computed for a replicate
from its row weights: accuracy as a weighted mean, macro-F1 from weighted per-class TP / FP / FN (every
class counts, an absent one scores 0, as ``compute_metrics`` does), mAP as the weighted average precision
of each label (ties grouped as scikit-learn does), labels with no positive in the replicate left out. On
unit weights each equals ``mmkit.metrics.compute_metrics(...)[metric]``.

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 200)
    >>> a = np.eye(3)[np.where(rng.random((3, 200)) < 0.8, y, (y + 1) % 3)]  # 3 seeds, about 80% right
    >>> r = paired_bootstrap(y, a, a, "accuracy", n_boot=1000)
    >>> r["ci_low"], r["ci_high"], r["p_value"]
    (0.0, 0.0, 1.0)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmkit.seeding import numpy_generator

BEST_SINGLE = "best single modality on validation"
SINGLE_MODALITY_GROUPS = ("single modality", "stage 1")  # text only, frozen image, fine-tuned image
METRICS = ("accuracy", "macro_f1", "mAP")
_CELLS_PER_CHUNK = 4_000_000  # row weights held at once (replicates x test rows): 16 MB of float32


def _slug(method: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", method).strip("_")


def predictions_path(out_dir: str | Path, seed: int, method: str) -> Path:
    """Where a (method, seed)'s test predictions are kept (the verdict's bootstrap reads them).

    Example:
        >>> predictions_path("runs/05", 2, "text only").as_posix()
        'runs/05/predictions/seed2/text_only.npz'
    """
    return Path(out_dir) / "predictions" / f"seed{seed}" / f"{_slug(method)}.npz"


def load_predictions(run_dirs: list[Path], seed: int, method: str) -> dict[str, np.ndarray]:
    """The test predictions of ``method`` at ``seed``: ``ids``, ``targets`` and ``scores`` (the first of
    ``run_dirs`` that holds them).

    Example:
        >>> load_predictions([Path("runs/05")], 0, "text only")["scores"].shape  # doctest: +SKIP
        (22716, 101)
    """
    for run in run_dirs:
        path = predictions_path(run, seed, method)
        if path.exists():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
    raise FileNotFoundError(
        f"no test predictions of {method!r} for seed {seed} under {', '.join(map(str, run_dirs))}"
        " (expected predictions/seed<s>/<method>.npz beside runs.csv)"
    )


# ------------------------------------------------------------------------------------- weighted metrics
class _Scorer:
    """One metric of one set of predictions ``scores`` [N, C] against ``y``, for many row weightings at
    once: ``__call__(w)`` with ``w`` [N, B] row counts (one column per replicate) gives [B] values. Every
    metric is a few weighted sums of rows, taken at once as ``matrix @ w`` with a sparse 0/1 ``matrix``
    [width, N] (a row per sum)."""

    def __init__(self, y: np.ndarray, scores: np.ndarray, metric: str, multilabel: bool):
        from scipy import sparse

        self.metric = metric
        n, c = scores.shape
        if multilabel:
            pred = scores > 0.0  # logits, as compute_metrics' default threshold
            truth = y.astype(bool)
        else:
            pred = np.zeros((n, c), bool)
            pred[np.arange(n), scores.argmax(1)] = True
            truth = np.zeros((n, c), bool)
            truth[np.arange(n), y] = True
        if metric == "accuracy":  # one column: the row is right (the whole label set, when multilabel)
            cols = (pred == truth).all(1)[:, None]
        elif metric == "macro_f1":  # TP of each class, then predicted + true count (F1 = 2TP / (P + T))
            cols = np.hstack([pred & truth, pred.astype(np.int8) + truth.astype(np.int8)])
        if metric != "mAP":
            self.matrix = sparse.csc_matrix(cols.astype(np.float32)).T.tocsr()
            self.c = c
            return
        # mAP: each label's rows by descending score. Precision is read at the end of each tie group that
        # holds a positive (the thresholds where recall moves), so a label's rows fall into segments, each
        # ending with such a group: "seen" sums every row of a segment, "hits" its positive rows.
        seen_rows, seen_cols, hit_rows, hit_cols, self.starts = [], [], [], [], []
        width = 0
        for j in range(c):
            if not truth[:, j].any():
                continue  # never positive on the full set, so in no resample either
            order = np.argsort(-scores[:, j], kind="stable")
            ranked = scores[order, j]
            group = np.cumsum(np.r_[0, ranked[1:] != ranked[:-1]])
            positive = truth[order, j]
            with_positive = np.unique(group[positive])
            segment = np.searchsorted(with_positive, group)
            kept = segment < len(with_positive)  # rows below the last positive never enter a precision
            seen_rows.append(order[kept])
            seen_cols.append(width + segment[kept])
            hit_rows.append(order[positive])
            hit_cols.append(width + segment[positive])
            self.starts.append(width)
            width += len(with_positive)
        self.width = width
        rows = np.concatenate(seen_rows + hit_rows) if width else np.zeros(0, np.int64)
        cols = np.concatenate(seen_cols + [h + width for h in hit_cols]) if width else np.zeros(0, np.int64)
        self.matrix = sparse.csr_matrix((np.ones(len(rows), np.float32), (cols, rows)), shape=(2 * width, n))

    def __call__(self, w: np.ndarray) -> np.ndarray:
        got = self.matrix @ w  # [width, B]
        if self.metric == "accuracy":
            return got[0] / w.sum(0)
        if self.metric == "macro_f1":
            tp, denom = got[: self.c], got[self.c :]
            f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
            return f1.mean(0)
        if not self.width:
            return np.full(w.shape[1], np.nan)
        seen, hits = got[: self.width], got[self.width :]
        ap = np.full((len(self.starts), w.shape[1]), np.nan)
        for k, (a, b) in enumerate(zip(self.starts, self.starts[1:] + [self.width])):
            cum_seen = np.cumsum(seen[a:b], 0)
            cum_hits = np.cumsum(hits[a:b], 0)
            precision = np.divide(cum_hits, cum_seen, out=np.zeros_like(cum_hits), where=cum_seen > 0)
            positives = cum_hits[-1]
            gained = np.einsum("kb,kb->b", hits[a:b], precision)
            ap[k] = np.divide(gained, positives, out=np.full_like(gained, np.nan), where=positives > 0)
        present = ~np.isnan(ap)
        total = np.where(present, ap, 0.0).sum(0)
        return np.divide(total, present.sum(0), out=np.full_like(total, np.nan), where=present.any(0))


def _check_inputs(y: Any, scores_a: Any, scores_b: Any, metric: str) -> tuple[np.ndarray, ...]:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: one of {', '.join(METRICS)} (the dataset's headline_metric)")
    y, a, b = np.asarray(y), np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    if a.ndim == 2:
        a = a[None]
    if b.ndim == 2:
        b = b[None]
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(
            f"scores_a {a.shape} and scores_b {b.shape}: give both as [seeds, test rows, classes], "
            "the same seeds and the same test rows in the same order"
        )
    if len(y) != a.shape[1]:
        raise ValueError(f"y has {len(y)} test rows but the scores have {a.shape[1]}")
    multilabel = y.ndim == 2
    if multilabel and y.shape != a.shape[1:]:
        raise ValueError(f"multi-hot y must be {a.shape[1:]}, got {y.shape}")
    if metric == "mAP" and not multilabel:
        raise ValueError("metric='mAP' needs multi-hot targets [N, C]; multiclass data: accuracy or macro_f1")
    return y if multilabel else y.astype(np.int64).reshape(-1), a, b, multilabel


def _row_weights(rng: np.random.Generator, n_rep: int, n: int) -> np.ndarray:
    """``n_rep`` resamples of ``n`` test rows, as counts [n, n_rep] (each column sums to n). Float32 holds
    the counts and their sums exactly (up to 2**24 rows) at half the memory traffic of float64."""
    idx = rng.integers(0, n, size=(n_rep, n), dtype=np.int64)
    idx *= n_rep
    idx += np.arange(n_rep)[:, None]
    return np.bincount(idx.ravel(), minlength=n * n_rep).reshape(n, n_rep).astype(np.float32)


def paired_bootstrap(
    y: Any,
    scores_a: Any,
    scores_b: Any,
    metric: str,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    key: int = 0,
) -> dict[str, Any]:
    """The difference ``metric(a) - metric(b)`` over seeds on the same test rows, with a (1 - ``alpha``)
    interval and a two-sided p-value (the module docstring gives the design).

    ``y``: [N] class indices or [N, C] multi-hot, the same test rows for every seed; ``scores_a`` and
    ``scores_b``: [S, N, C] (seed s of a is paired with seed s of b). The replicates come from
    ``numpy_generator(seed, "bootstrap", key)``.

    Returns ``per_seed_diff`` (each equals the difference of ``compute_metrics(...)[metric]``),
    ``diff_mean``, ``ci_low``/``ci_high`` (percentiles of ``boot``), ``p_value``, ``boot`` (the replicates
    of the mean difference), ``n_boot``, ``alpha``, ``seed_se`` and ``row_se`` (the standard errors of
    the seed part and of the shared test-row part) and ``seed_variance_estimated`` (False with one seed).

    The p-value inverts the same replicates: ``2 * min(#{boot <= 0} + 1, #{boot >= 0} + 1) / (n_boot + 1)``
    (at most 1). So 0 lies outside the (1 - alpha) interval exactly when p < alpha, up to 1/n_boot.

    Example:
        >>> y = np.array([0, 1, 1, 0])
        >>> a = np.eye(2)[[[0, 1, 1, 1], [0, 1, 0, 0]]]  # 2 seeds: 3/4 and 3/4 right
        >>> b = np.eye(2)[[[1, 1, 1, 1], [0, 0, 0, 0]]]  # 2 seeds: 2/4 and 2/4 right
        >>> paired_bootstrap(y, a, b, "accuracy", n_boot=200)["per_seed_diff"]
        [0.25, 0.25]
    """
    y, a, b, multilabel = _check_inputs(y, scores_a, scores_b, metric)
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot}: at least 1 resample (10,000 for a reported interval)")
    n_seeds, n = a.shape[:2]
    scorers = [
        (_Scorer(y, a[s], metric, multilabel), _Scorer(y, b[s], metric, multilabel)) for s in range(n_seeds)
    ]
    ones = np.ones((n, 1))
    diffs = np.array([float(sa(ones)[0] - sb(ones)[0]) for sa, sb in scorers])
    rows_rng = numpy_generator(seed, "bootstrap", key, 0)
    dev = np.empty((n_boot, n_seeds))  # each replicate's per-seed difference minus the full-set one
    widest = max(max(sa.matrix.shape[0], sb.matrix.shape[0]) for sa, sb in scorers)
    chunk = max(1, _CELLS_PER_CHUNK // max(n, widest, 1))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        w = _row_weights(rows_rng, stop - start, n)  # one resample of the rows, shared by every seed
        for s, (sa, sb) in enumerate(scorers):
            dev[start:stop, s] = sa(w) - sb(w) - diffs[s]
    # A replicate whose resample leaves the metric undefined (mAP with no positive of any label) is left
    # out whole, and counted, rather than letting a NaN silently zero the test-row part below.
    kept = np.isfinite(dev).all(1)
    if not kept.any():
        raise ValueError(
            f"{metric} is undefined on every resample of these {n} test rows (no positive label?)"
        )
    dev, n_rep = dev[kept], int(kept.sum())
    row_mean = dev.mean(1)
    if n_seeds > 1:
        # the shared part: the mean covariance of two different seeds' deviations
        cov = np.cov(dev, rowvar=False, ddof=0)
        shared = max(0.0, float((cov.sum() - np.trace(cov)) / (n_seeds * (n_seeds - 1))))
        spread = float(row_mean.var())
        scale = np.sqrt(shared / spread) if spread > 0 else 0.0
        seed_se = float(np.sqrt(diffs.var(ddof=1) / n_seeds))
        # Half the replicates add the seed part as a t with S-1 degrees of freedom (a generalised pivot,
        # conservative when both parts are alike), half stretch the whole deviation by a Welch-Satterthwaite
        # t (liberal there); pooled, they stay near 95% whatever the seeds' share (module docstring).
        seeds_rng = numpy_generator(seed, "bootstrap", key, 1)
        pivot = np.arange(n_rep) % 2 == 0
        total = shared + seed_se**2
        welch_df = (
            total**2 / (seed_se**4 / (n_seeds - 1) + shared**2 / max(n - 1, 1)) if total > 0 else np.inf
        )
        t = seeds_rng.standard_t(n_seeds - 1, size=n_rep)
        z = seeds_rng.standard_normal(n_rep)
        stretch = np.sqrt(welch_df / seeds_rng.chisquare(welch_df, n_rep)) if seed_se > 0 else np.ones(n_rep)
        boot_dev = np.where(pivot, scale * row_mean + seed_se * t, (scale * row_mean + seed_se * z) * stretch)
    else:
        shared, seed_se = float(row_mean.var()), 0.0
        boot_dev = row_mean
    diff_mean = float(diffs.mean())
    boot = diff_mean + boot_dev
    lo, hi = (float(v) for v in np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    below, above = int((boot <= 0).sum()), int((boot >= 0).sum())
    p = min(1.0, 2 * (min(below, above) + 1) / (n_rep + 1))
    return {
        "per_seed_diff": [float(d) for d in diffs],
        "diff_mean": diff_mean,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": float(p),
        "boot": boot,
        "n_boot": int(n_boot),
        "n_dropped": int(n_boot - n_rep),  # replicates where the metric was undefined
        "alpha": float(alpha),
        "seed_se": seed_se,
        "row_se": float(np.sqrt(shared)),
        "seed_variance_estimated": n_seeds > 1,
    }


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, np.float64)
    k = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = adjusted
    return [round(float(v), 12) for v in out]


# ---------------------------------------------------------------------------------------------- family
def _best_single(df: pd.DataFrame, metric: str) -> str:
    col = f"val_{metric}"
    singles = df[df["group"].isin(SINGLE_MODALITY_GROUPS)]
    if singles.empty:
        raise ValueError(
            f"no single-modality row (group in {SINGLE_MODALITY_GROUPS}) to compare with; "
            "the grid's text-only and image-only rows are missing from runs.csv"
        )
    if col not in singles:
        raise ValueError(f"runs.csv has no {col} column: the comparator is chosen on validation {metric}")
    return str(singles.groupby("method", sort=False)[col].mean().idxmax())


def _stack(runs: list[Path], seeds: list[int], method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets, ids and scores [S, N, C] of ``method``, every seed's rows put in the first seed's id order."""
    ids = targets = None
    scores = []
    for seed in seeds:
        p = load_predictions(runs, seed, method)
        if ids is None:
            ids, targets = p["ids"], p["targets"]
            scores.append(p["scores"])
            continue
        if not np.array_equal(p["ids"], ids):
            where = {str(i): k for k, i in enumerate(p["ids"])}
            if sorted(where) != sorted(map(str, ids)):
                raise ValueError(
                    f"{method!r} seed {seed} was scored on other test rows than seed {seeds[0]}; "
                    "every seed of the grid must score the same test split (rerun the grid)"
                )
            take = np.array([where[str(i)] for i in ids])
            p = {k: p[k][take] for k in ("targets", "scores")}
        if not np.array_equal(p["targets"], targets):
            raise ValueError(f"{method!r} seed {seed}: the test targets differ from seed {seeds[0]}'s")
        scores.append(p["scores"])
    return targets, ids, np.stack(scores)


def _decision(p_holm: float, diff: float, alpha: float) -> str:
    if p_holm < alpha and diff > 0:
        return "better"
    if p_holm < alpha and diff < 0:
        return "worse"
    return "not shown different"


def verdict_family(
    df: pd.DataFrame,
    run_dirs: list[str | Path],
    metric: str,
    plan: list[dict[str, str]],
    n_boot: int = 10_000,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The claims of ``plan`` decided on the test predictions under ``run_dirs``, Holm-corrected together.

    ``metric``: the headline key (``accuracy`` | ``macro_f1`` | ``mAP``); ``df`` has ``method``, ``group``,
    ``seed``, ``test_<metric>`` and ``val_<metric>``. Each claim is ``{"claim", "proposed",
    "comparator"}``, the comparator a method or ``BEST_SINGLE``: the single-modality row with the best mean
    *validation* score. Each claim gets ``paired_bootstrap`` over the seeds both rows have.

    Reported: the per-claim (1 - alpha) percentile interval (95% by default, not adjusted for the family),
    the bootstrap p-value and Holm's adjusted ``p_holm``. The decision uses ``p_holm``: "better" when
    ``p_holm < alpha`` and the mean difference is above 0, "worse" when below, else "not shown different";
    so a claim whose own interval excludes 0 can still be "not shown different" once the family counts.

    Example:
        >>> plan = [{"claim": "(a) proposed vs the best single modality", "proposed": "proposed (M=4, all) + "
        ...          "concat-linear", "comparator": BEST_SINGLE}]
        >>> v = verdict_family(runs, ["runs/05"], "accuracy", plan)  # doctest: +SKIP
        >>> v["family"][0]["decision"]  # doctest: +SKIP
        'better'
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: one of {', '.join(METRICS)} (the dataset's headline_metric)")
    if not plan:
        raise ValueError("plan is empty: name at least one claim (proposed, comparator) before the run")
    runs = [Path(r) for r in run_dirs]
    methods = set(df["method"])
    family = []
    for k, item in enumerate(plan):
        missing = {"claim", "proposed", "comparator"} - set(item)
        if missing:
            raise ValueError(f"plan[{k}] lacks {sorted(missing)}: give claim, proposed and comparator")
        proposed, comparator = item["proposed"], item["comparator"]
        chosen_on = "named before the run"
        if comparator == BEST_SINGLE:
            comparator, chosen_on = _best_single(df, metric), f"val_{metric}"
        for role, name in (("proposed", proposed), ("comparator", comparator)):
            if name not in methods:
                raise ValueError(
                    f"plan[{k}] {role}={name!r} is not a row of the grid; rows: {'; '.join(sorted(methods))}"
                )
        seeds = sorted(
            int(s)
            for s in set(df.loc[df["method"] == proposed, "seed"])
            & set(df.loc[df["method"] == comparator, "seed"])
        )
        if not seeds:
            raise ValueError(f"plan[{k}]: {proposed!r} and {comparator!r} share no seed")
        y, ids, sa = _stack(runs, seeds, proposed)
        y_b, ids_b, sb = _stack(runs, seeds, comparator)
        if not np.array_equal(ids, ids_b) or not np.array_equal(y, y_b):
            where = {str(i): j for j, i in enumerate(ids_b)}
            if sorted(where) != sorted(map(str, ids)):
                raise ValueError(
                    f"plan[{k}]: {proposed!r} and {comparator!r} were scored on different test rows"
                )
            sb = sb[:, [where[str(i)] for i in ids]]
        stats = paired_bootstrap(y, sa, sb, metric, n_boot=n_boot, seed=seeds[0], alpha=alpha, key=k)
        family.append(
            {
                "claim": item["claim"],
                "proposed": proposed,
                "comparator": comparator,
                "comparator_chosen_on": chosen_on,
                "seeds": seeds,
                **{key: v for key, v in stats.items() if key not in ("boot", "n_boot", "alpha")},
            }
        )
    for item, p in zip(family, holm([f["p_value"] for f in family])):
        item["p_holm"] = p
        item["decision"] = _decision(p, item["diff_mean"], alpha)
        item["text"] = _sentence(item, metric, alpha)
    return {"metric": metric, "alpha": alpha, "n_boot": int(n_boot), "correction": "holm", "family": family}


def _sentence(c: dict[str, Any], metric: str, alpha: float) -> str:
    d, lo, hi = (100 * c[k] for k in ("diff_mean", "ci_low", "ci_high"))
    how = (
        f"the best single modality on validation {metric}, *{c['comparator']}*"
        if c["comparator_chosen_on"].startswith("val_")
        else f"*{c['comparator']}*"
    )
    seeds = len(c["seeds"])
    caveat = "" if c["seed_variance_estimated"] else " (one seed: the interval covers test-row noise only)"
    return (
        f"{c['claim']}: *{c['proposed']}* against {how}: {d:+.2f} points of test {metric} (mean of {seeds} "
        f"paired seed{'s' * (seeds != 1)}; {100 * (1 - alpha):.0f}% CI {lo:+.2f} to {hi:+.2f}{caveat}; "
        f"p = {c['p_value']:.3g}, Holm p = {c['p_holm']:.3g}): {c['decision']}."
    )


def verdict_words(result: dict[str, Any]) -> str:
    """The family as markdown lines: how it was decided, then one sentence per claim.

    Example:
        >>> print(verdict_words(v))  # doctest: +SKIP
    """
    k = len(result["family"])
    head = (
        f"{k} claim{'s' * (k != 1)} on test {result['metric']}, fixed before the test set was read; "
        f"paired by seed; the test rows resampled once per replicate and shared by every seed "
        f"({result['n_boot']:,} replicates), the seed-to-seed spread from the per-seed differences (t); "
        f"Holm-corrected at alpha = {result['alpha']:g}."
    )
    return "\n".join([head, ""] + [f"- {c['text']}" for c in result["family"]])


__all__ = [
    "BEST_SINGLE",
    "METRICS",
    "SINGLE_MODALITY_GROUPS",
    "holm",
    "load_predictions",
    "paired_bootstrap",
    "predictions_path",
    "verdict_family",
    "verdict_words",
]
