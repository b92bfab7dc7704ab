"""Feature importance any engine can supply to the report: permutation, SHAP summary, coefficients.

Each helper returns rows ``(feature, value, kind)`` for ``write_report(importance=...)``. They need
only NumPy and a prediction function, so the same code explains a scikit-learn, xgboost, Spark, Dask
or Ray model once its predictions come back to the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.errors import DataError
from pipelines.evaluation.metrics import check_predictions, log_loss, roc_auc

PERMUTATION = "permutation (valid split)"
SHAP = "SHAP (mean |contribution|)"
GAIN = "gain"
COEFFICIENT = "coefficient magnitude (standardised features)"

Importance = list[tuple[str, float, str]]
Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class PermutationResult:
    """Score drops when each feature is shuffled: ``drops[j, r]`` for feature j and repeat r."""

    baseline: float
    drops: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Return the mean drop per feature (sklearn's ``importances_mean``)."""
        return np.asarray(self.drops.mean(axis=1))

    @property
    def std(self) -> np.ndarray:
        """Return the standard deviation of the drop per feature (sklearn's ``importances_std``)."""
        return np.asarray(self.drops.std(axis=1))

    def rows(self, feature_names: list[str]) -> Importance:
        """Return ``(feature, mean drop, "permutation (valid split)")`` rows."""
        return [(name, float(v), PERMUTATION) for name, v in zip(feature_names, self.mean, strict=True)]


def scorer(name: str) -> Metric:
    """Return a greater-is-better score of ``(y, proba)``: auc (macro one-vs-rest), log_loss (negated), accuracy."""

    def auc(y: np.ndarray, proba: np.ndarray) -> float:
        y, proba = check_predictions(y, proba)
        if proba.shape[1] == 2:
            return float(roc_auc((y == 1).astype(np.int64), proba[:, 1]) or 0.0)
        areas = [roc_auc((y == j).astype(np.int64), proba[:, j]) for j in range(proba.shape[1])]
        return float(np.mean([a for a in areas if a is not None]))

    def negative_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
        return -log_loss(*check_predictions(y, proba))

    def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
        return float(np.mean(np.argmax(proba, axis=1) == y))

    scorers: dict[str, Metric] = {"auc": auc, "log_loss": negative_log_loss, "accuracy": accuracy}
    if name not in scorers:
        raise DataError(f"permutation importance: unknown metric {name!r} (allowed: {', '.join(scorers)})")
    return scorers[name]


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    metric: Metric | str = "auc",
    n_repeats: int = 5,
    seed: int = 0,
) -> PermutationResult:
    """Return how much ``metric`` drops when each column of ``x`` is shuffled.

    The shuffles are scikit-learn's (``sklearn.inspection.permutation_importance`` with the same
    ``random_state`` permutes the same rows), so the two agree on the same model and rows.

    Parameters
    ----------
    predict : callable
        Maps a feature matrix (n, d) to probabilities (n, k).
    x, y : np.ndarray
        Feature matrix and class indices of the rows to explain (the valid split).
    metric : callable or str
        Greater-is-better score of ``(y, proba)``, or a name for :func:`scorer`.
    n_repeats, seed : int
        Shuffles per feature, and the seed that draws them.
    """
    score = scorer(metric) if isinstance(metric, str) else metric
    x = np.asarray(x)
    if x.ndim != 2 or len(x) != len(y) or n_repeats < 1:
        raise DataError(f"permutation importance: need x (n, d) and y (n,), got {x.shape} and {np.shape(y)}")
    baseline = score(y, predict(x))
    # One seed for every column, as scikit-learn draws it.
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    drops = np.empty((x.shape[1], n_repeats))
    for j in range(x.shape[1]):
        rng = np.random.RandomState(column_seed)
        shuffled, order = x.copy(), np.arange(len(x))
        for r in range(n_repeats):
            rng.shuffle(order)
            shuffled[:, j] = shuffled[order, j]
            drops[j, r] = baseline - score(y, predict(shuffled))
    return PermutationResult(float(baseline), drops)


def shap_summary(contribs: np.ndarray, feature_names: list[str]) -> Importance:
    """Return the mean |SHAP contribution| per feature from xgboost's ``pred_contribs`` output.

    ``contribs`` is (n, d + 1) for a binary model or (n, k, d + 1) for k classes; the last column
    is the bias and is left out. Multiclass contributions are averaged over classes too.
    """
    values = np.asarray(contribs, dtype=np.float64)
    if values.ndim not in (2, 3) or values.shape[-1] != len(feature_names) + 1:
        raise DataError(
            f"SHAP contributions of shape {values.shape} do not match {len(feature_names)} features plus the bias"
        )
    magnitude = np.abs(values[..., :-1])
    mean = magnitude.reshape(-1, magnitude.shape[-1]).mean(axis=0)
    return [(name, float(v), SHAP) for name, v in zip(feature_names, mean, strict=True)]


def coefficient_importance(coef: np.ndarray, feature_names: list[str]) -> Importance:
    """Return |coefficient| per feature of a linear model on standardised features (classes averaged)."""
    values = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    if values.shape[-1] != len(feature_names):
        raise DataError(f"{values.shape[-1]} coefficients for {len(feature_names)} features")
    mean = np.abs(values).mean(axis=0)
    return [(name, float(v), COEFFICIENT) for name, v in zip(feature_names, mean, strict=True)]
