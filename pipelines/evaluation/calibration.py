"""Probability calibration (Platt sigmoid or isotonic), fitted on validation rows and saved as JSON.

Binary tasks calibrate ``p1`` and set ``p0 = 1 - p1``; multiclass tasks calibrate each column
one-vs-rest and renormalise the rows, as scikit-learn's ``CalibratedClassifierCV`` does. The sigmoid
is Platt scaling of ``logit(p)``; :func:`fit_platt` is also what turns SVM decision values into
probabilities. Fitted state is plain floats, so ``to_dict`` / ``from_dict`` reproduce ``transform``
bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression, minimize
from scipy.special import expit, logit

from pipelines.errors import ConfigError, DataError

METHODS = ("sigmoid", "isotonic")

# Platt fits large decision values in a rescaled space for a well-conditioned optimisation
# (the same bound as scikit-learn's _sigmoid_calibration).
_PLATT_MAX_ABS_SCORE = 30.0


def fit_platt(scores: np.ndarray, y01: np.ndarray, sample_weight: np.ndarray | None = None) -> tuple[float, float]:
    """Return Platt's ``(a, b)`` so that ``P(y = 1 | s) = 1 / (1 + exp(a * s + b))``.

    Targets are Platt's smoothed labels ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``, which keep the
    fit finite on separable data; ``sample_weight`` weights each row's loss. Both follow
    scikit-learn's ``_sigmoid_calibration``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    y01 = np.asarray(y01)
    if scores.ndim != 1 or len(scores) != len(y01) or len(scores) == 0:
        raise DataError(f"Platt scaling needs non-empty 1-d scores and labels of equal length, got {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise DataError("Platt scaling: scores contain NaN or infinite values")
    positive = y01 > 0
    w = np.ones(len(scores)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    n_pos = float(np.sum(w[positive]))  # Platt's priors count weighted rows
    n_neg = float(np.sum(w[~positive]))
    target = np.where(positive, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    biggest = float(np.max(np.abs(scores)))
    scale = biggest if biggest >= _PLATT_MAX_ABS_SCORE else 1.0
    f = scores / scale

    def loss_and_gradient(ab: np.ndarray) -> tuple[float, np.ndarray]:
        # z = a*f + b and P(y=1) = expit(-z): cross-entropy is logaddexp(0, z) - (1 - t) z.
        z = ab[0] * f + ab[1]
        loss = float(np.sum(w * (np.logaddexp(0.0, z) - (1.0 - target) * z)))
        residual = w * (target - expit(-z))
        return loss, np.array([residual @ f, residual.sum()])

    start = np.array([0.0, np.log((n_neg + 1.0) / (n_pos + 1.0))])
    result = minimize(
        loss_and_gradient, start, method="L-BFGS-B", jac=True, options={"gtol": 1e-6, "ftol": 64 * np.finfo(float).eps}
    )
    return float(result.x[0] / scale), float(result.x[1])


def apply_platt(scores: np.ndarray, a: float, b: float) -> np.ndarray:
    """Return the probabilities ``1 / (1 + exp(a * s + b))`` of the positive class."""
    return expit(-(a * np.asarray(scores, dtype=np.float64) + b))


def fit_isotonic(x: np.ndarray, y01: np.ndarray) -> tuple[list[float], list[float]]:
    """Return the knots ``(xs, ys)`` of the increasing step-and-ramp fit of ``y01`` on ``x``.

    Tied ``x`` are pooled first (their mean label, weighted by count), then pool-adjacent-violators
    runs on the unique values; knots inside flat stretches are dropped since interpolation between
    the remaining ones gives the same curve (as scikit-learn's ``IsotonicRegression``).
    """
    x = np.asarray(x, dtype=np.float64)
    y01 = np.asarray(y01, dtype=np.float64)
    if len(x) == 0 or len(x) != len(y01):
        raise DataError(f"isotonic calibration needs non-empty inputs of equal length, got {len(x)} and {len(y01)}")
    xs, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    mean_y = np.bincount(inverse, weights=y01) / counts
    ys = isotonic_regression(mean_y, weights=counts.astype(np.float64), increasing=True).x
    keep = np.ones(len(ys), dtype=bool)
    keep[1:-1] = (ys[1:-1] != ys[:-2]) | (ys[1:-1] != ys[2:])
    return xs[keep].tolist(), ys[keep].tolist()


def apply_isotonic(x: np.ndarray, xs: list[float], ys: list[float]) -> np.ndarray:
    """Return the isotonic fit at ``x``: linear between knots, constant beyond the end knots."""
    return np.interp(np.asarray(x, dtype=np.float64), np.asarray(xs), np.asarray(ys))


def _logit(p: np.ndarray) -> np.ndarray:
    # Clipped so that probabilities of exactly 0 or 1 map to large finite scores, not infinities.
    eps = np.finfo(np.float64).eps
    return logit(np.clip(p, eps, 1 - eps))


@dataclass
class Calibrator:
    """A fitted calibrator: the method, the class count and one fitted curve per calibrated column.

    ``columns`` holds ``{"a", "b"}`` (sigmoid) or ``{"x", "y"}`` knot lists (isotonic): one entry
    for binary tasks (column 1) and one per class otherwise.
    """

    method: str
    n_classes: int
    columns: list[dict[str, Any]] = field(default_factory=list)

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities (n, k) whose rows sum to 1."""
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2 or proba.shape[1] != self.n_classes:
            raise DataError(f"calibrator expects {self.n_classes} probability columns, got shape {proba.shape}")
        if self.n_classes == 2:
            p1 = self._calibrate_column(proba[:, 1], self.columns[0])
            return np.column_stack([1.0 - p1, p1])
        calibrated = np.column_stack(
            [self._calibrate_column(proba[:, j], column) for j, column in enumerate(self.columns)]
        )
        total = calibrated.sum(axis=1, keepdims=True)
        # A row every one-vs-rest curve sends to 0 carries no information: make it uniform.
        uniform = np.full_like(calibrated, 1.0 / self.n_classes)
        return np.divide(calibrated, total, out=uniform, where=total > 0)

    def _calibrate_column(self, p: np.ndarray, column: dict[str, Any]) -> np.ndarray:
        if self.method == "sigmoid":
            return apply_platt(_logit(p), column["a"], column["b"])
        return apply_isotonic(p, column["x"], column["y"])

    def to_dict(self) -> dict[str, Any]:
        """Return the fitted state as JSON-ready data."""
        return {"method": self.method, "n_classes": self.n_classes, "columns": [dict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        """Return the Calibrator that ``to_dict`` described."""
        method = str(d["method"])
        if method not in METHODS:
            raise DataError(f"saved calibrator has unknown method {method!r}")
        columns: list[dict[str, Any]]
        if method == "sigmoid":
            columns = [{"a": float(c["a"]), "b": float(c["b"])} for c in d["columns"]]
        else:
            columns = [{"x": [float(v) for v in c["x"]], "y": [float(v) for v in c["y"]]} for c in d["columns"]]
        return cls(method, int(d["n_classes"]), columns)


def fit_calibrator(method: str, y: np.ndarray, proba: np.ndarray) -> Calibrator:
    """Return a ``method`` ("sigmoid" or "isotonic") calibrator fitted on class indices ``y``.

    Parameters
    ----------
    method : str
        ``sigmoid`` (Platt scaling of ``logit(p)``) or ``isotonic``.
    y : np.ndarray
        True class indices 0..k-1 of the validation rows.
    proba : np.ndarray
        Uncalibrated probabilities (n, k) of the same rows.

    Returns
    -------
    Calibrator
        Fitted on column 1 for binary tasks, on every column one-vs-rest otherwise.
    """
    if method not in METHODS:
        raise ConfigError(f"model.calibration: {method!r} is not one of none, {', '.join(METHODS)}")
    y = np.asarray(y)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2 or len(proba) != len(y) or len(y) == 0:
        raise DataError(
            f"calibration needs non-empty labels and a (rows x classes) array, got {y.shape}, {proba.shape}"
        )
    if not np.all(np.isfinite(proba)):
        raise DataError("calibration: probabilities contain NaN or infinite values")
    k = proba.shape[1]
    targets = [1] if k == 2 else list(range(k))
    columns: list[dict[str, Any]] = []
    for j in targets:
        y01 = (y == j).astype(np.float64)
        if method == "sigmoid":
            a, b = fit_platt(_logit(proba[:, j]), y01)
            columns.append({"a": a, "b": b})
        else:
            xs, ys = fit_isotonic(proba[:, j], y01)
            columns.append({"x": xs, "y": ys})
    return Calibrator(method, k, columns)
