"""Drift of new data against the training data: per-feature PSI and two-sample tests, score shift, a verdict.

The reference is a sample of the training split (``reference_sample``), written once by the
pipelines' ``data`` stage. A feature drifts when both hold: its two-sample test (Kolmogorov-Smirnov
for numeric columns, chi-squared for categorical ones) rejects "same distribution" after the
Benjamini-Hochberg correction over all features at level ``alpha``, and its population stability
index (PSI) reaches ``psi``. The test alone flags negligible shifts once samples are large, PSI
alone is noisy on small samples; requiring both keeps fresh rows from the same distribution from
being flagged while a real shift is. The predicted-score distribution is compared the same way,
and when the new rows carry labels the live metric is compared with the run's test metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.data.schema import DataPlan, numeric_values, text_values
from pipelines.data.sources import open_dataset
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, TRAIN, split_uniform

MISSING = "<missing>"
OTHER = "<other>"
PSI_FLOOR = 1e-4  # share given to an empty bin, so that PSI stays finite
SAMPLE_SALT = 7919  # the reference sample is independent of the split's own draw


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature, the scores or the live metric count as drifted."""

    psi: float = 0.1
    alpha: float = 0.01
    min_features: int = 1
    metric_drop: float = 0.05
    bins: int = 10


@dataclass
class FeatureDrift:
    """One feature's comparison: PSI, the test, its p-value and BH-adjusted q-value, the flag."""

    name: str
    kind: str  # numeric | categorical
    test: str  # ks | chi2
    statistic: float
    p_value: float
    psi: float
    q_value: float = 1.0
    drifted: bool = False
    reference_mean: float | None = None
    current_mean: float | None = None


@dataclass
class DriftResult:
    """The whole comparison and its verdict, as written to ``drift.json``."""

    verdict: str  # drift | no_drift
    reasons: list[str]
    thresholds: dict[str, Any]
    rows: dict[str, int]
    features: list[FeatureDrift]
    scores: dict[str, Any] | None = None
    live: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return asdict(self)


def reference_sample(plan: DataPlan, max_rows: int, expected_train_rows: int) -> pa.Table:
    """Return up to about ``max_rows`` train rows of the plan's source (features and label), read batch by batch."""
    rate = min(1.0, max_rows / max(expected_train_rows, 1))
    columns = [*plan.features, *([plan.label] if plan.has_label else [])]
    parts = []
    for batch in open_dataset(plan.source).to_batches(columns=plan.columns):
        table = plan.attach(pa.Table.from_batches([batch]))
        keys = np.asarray(table.column(KEY_COLUMN).to_numpy())
        keep = (np.asarray(table.column(SPLIT_COLUMN).to_numpy()) == TRAIN) & (
            split_uniform(keys, plan.seed + SAMPLE_SALT) < rate
        )
        parts.append(table.filter(pa.array(keep)).select(columns))
    return pa.concat_tables(parts)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Return the population stability index of two vectors of bin counts."""
    p = np.maximum(reference / max(reference.sum(), 1), PSI_FLOOR)
    q = np.maximum(current / max(current.sum(), 1), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def numeric_bins(reference: np.ndarray, current: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Return bin counts of both samples on the reference's quantile bins, missing values as a last bin."""
    ref_ok, cur_ok = reference[~np.isnan(reference)], current[~np.isnan(current)]
    edges = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1])) if len(ref_ok) else np.array([])

    def counts(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        found = np.bincount(np.searchsorted(edges, ok, side="right"), minlength=len(edges) + 1)
        return np.append(found, len(values) - len(ok)).astype(np.float64)

    return counts(reference, ref_ok), counts(current, cur_ok)


def numeric_drift(name: str, reference: np.ndarray, current: np.ndarray, bins: int) -> FeatureDrift:
    """Return the KS test and PSI of one numeric column."""
    from scipy.stats import ks_2samp

    ref_ok, cur_ok = reference[~np.isnan(reference)], current[~np.isnan(current)]
    test = ks_2samp(ref_ok, cur_ok) if len(ref_ok) and len(cur_ok) else None
    ref_counts, cur_counts = numeric_bins(reference, current, bins)
    return FeatureDrift(
        name,
        "numeric",
        "ks",
        float(test.statistic) if test is not None else 0.0,
        float(test.pvalue) if test is not None else 1.0,
        psi(ref_counts, cur_counts),
        reference_mean=float(ref_ok.mean()) if len(ref_ok) else None,
        current_mean=float(cur_ok.mean()) if len(cur_ok) else None,
    )


def category_counts(reference: list[Any], current: list[Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return the levels and both samples' counts; levels rare in both (< 5 expected) pool into one."""
    ref = [MISSING if v is None else str(v) for v in reference]
    cur = [MISSING if v is None else str(v) for v in current]
    levels = sorted(set(ref) | set(cur))
    ref_counts = np.array([ref.count(v) for v in levels], dtype=np.float64)
    cur_counts = np.array([cur.count(v) for v in levels], dtype=np.float64)
    total = ref_counts + cur_counts
    expected = np.minimum(
        total * len(ref) / max(len(ref) + len(cur), 1), total * len(cur) / max(len(ref) + len(cur), 1)
    )
    rare = expected < 5
    if rare.sum() > 1:
        levels = [v for v, r in zip(levels, rare, strict=True) if not r] + [OTHER]
        ref_counts = np.append(ref_counts[~rare], ref_counts[rare].sum())
        cur_counts = np.append(cur_counts[~rare], cur_counts[rare].sum())
    return levels, ref_counts, cur_counts


def categorical_drift(name: str, reference: list[Any], current: list[Any]) -> FeatureDrift:
    """Return the chi-squared test of homogeneity and PSI of one categorical column."""
    from scipy.stats import chi2_contingency

    _, ref_counts, cur_counts = category_counts(reference, current)
    used = (ref_counts + cur_counts) > 0
    table = np.vstack([ref_counts[used], cur_counts[used]])
    if table.shape[1] < 2 or table.sum(axis=1).min() == 0:
        statistic, p_value = 0.0, 1.0
    else:
        result = chi2_contingency(table, correction=False)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return FeatureDrift(name, "categorical", "chi2", statistic, p_value, psi(ref_counts, cur_counts))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Return the Benjamini-Hochberg adjusted p-values (q-values) in the input order."""
    n = len(p_values)
    if n == 0:
        return p_values
    order = np.argsort(p_values)
    ranked = p_values[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out = np.empty(n)
    out[order] = adjusted
    return out


def compare_features(
    reference: pa.Table, current: pa.Table, numeric: list[str], categorical: list[str], limits: DriftThresholds
) -> list[FeatureDrift]:
    """Return the drift of every feature, flagged by the BH-corrected test together with PSI."""
    found = [
        numeric_drift(c, numeric_values(reference.column(c)), numeric_values(current.column(c)), limits.bins)
        for c in numeric
    ]
    found += [
        categorical_drift(c, text_values(reference.column(c)).to_pylist(), text_values(current.column(c)).to_pylist())
        for c in categorical
    ]
    q_values = benjamini_hochberg(np.array([f.p_value for f in found]))
    for f, q in zip(found, q_values, strict=True):
        f.q_value = float(q)
        f.drifted = bool(q < limits.alpha and f.psi >= limits.psi)
    return found


def score_drift(reference: np.ndarray, current: np.ndarray, limits: DriftThresholds) -> dict[str, Any]:
    """Return the KS test and PSI of the predicted positive-class (or top-class) probability."""
    result = numeric_drift("score", reference, current, limits.bins)
    drifted = result.p_value < limits.alpha and result.psi >= limits.psi
    return {
        "psi": result.psi,
        "ks_statistic": result.statistic,
        "p_value": result.p_value,
        "reference_mean": result.reference_mean,
        "current_mean": result.current_mean,
        "drifted": bool(drifted),
    }


def score_of(proba: np.ndarray) -> np.ndarray:
    """Return the score compared for drift: P(positive) for binary tasks, the top probability otherwise."""
    return proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)


def verdict(
    features: list[FeatureDrift],
    scores: dict[str, Any] | None,
    live: dict[str, Any] | None,
    limits: DriftThresholds,
    rows: dict[str, int],
) -> DriftResult:
    """Return the verdict: drift when enough features drift, the scores shift, or the live metric drops."""
    reasons = []
    flagged = [f.name for f in features if f.drifted]
    if len(flagged) >= limits.min_features:
        reasons.append(f"{len(flagged)} feature(s) drifted: {', '.join(flagged[:8])}")
    if scores is not None and scores["drifted"]:
        reasons.append(f"predicted scores shifted (PSI {scores['psi']:.3f})")
    if live is not None and live.get("dropped"):
        reasons.append(f"live {live['metric']} fell from {live['reference']:.4f} to {live['current']:.4f}")
    return DriftResult(
        "drift" if reasons else "no_drift",
        reasons,
        asdict(limits),
        rows,
        features,
        scores,
        live,
    )


def live_metrics(
    y: np.ndarray, proba: np.ndarray, threshold: float, reference: dict[str, Any], metric: str, limits: DriftThresholds
) -> dict[str, Any] | None:
    """Return the metrics on labelled new rows beside the run's test metrics (None without labels)."""
    from pipelines.evaluation.metrics import compute_metrics

    known = y >= 0
    if not known.any() or len(np.unique(y[known])) < 2:
        return None
    current = compute_metrics(y[known], proba[known], threshold=threshold)
    value, before = current.get(metric), reference.get(metric)
    lower_is_better = metric in ("log_loss", "brier", "ece")
    change = None if value is None or before is None else (before - value) * (-1 if lower_is_better else 1)
    return {
        "metric": metric,
        "reference": before,
        "current": value,
        "drop": change,
        "dropped": bool(change is not None and change > limits.metric_drop),
        "rows": int(known.sum()),
        "metrics": {k: v for k, v in current.items() if isinstance(v, int | float) and not isinstance(v, bool)},
    }
