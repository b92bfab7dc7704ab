"""Every metric scaleclf reports, computed from labels and probabilities the same way for every engine.

Engines only stream ``(y, p_0..p_{k-1})`` Arrow batches into a :class:`PredictionAccumulator`;
:func:`compute_metrics` turns the collected arrays into the ``test`` / ``valid`` sections of
``metrics.json``. The numbers match scikit-learn 1.9.1 (tests/test_metrics.py checks this on random
and adversarial arrays), but nothing here imports scikit-learn, so those tests can fail.

Conventions, where scikit-learn's own behaviour is a choice:

* Binary tasks have two probability columns; the positive class is column 1 and a row is
  predicted positive when ``p1 >= threshold``. Multiclass predictions are the argmax (the first
  column wins a tie) and ``threshold`` is ignored.
* Precision, recall and F1 with an empty denominator are 0.0 (scikit-learn's ``zero_division``
  default). Macro averages run over the classes present in ``y`` or in the predictions, as
  scikit-learn does when no ``labels`` are given.
* Ranking metrics (``auc``, ``pr_auc``, ``auc_ovr_weighted``) need every class present in ``y``;
  otherwise they are ``None``. scikit-learn returns NaN for AUC there and 0.0 for average
  precision without positives; both are undefined, and ``None`` keeps ``metrics.json`` valid JSON.
* ``log_loss`` clips probabilities to ``[eps, 1 - eps]`` (``eps`` of float64) without
  renormalising rows, exactly as scikit-learn does.
* ``brier`` is the mean squared error of ``p1`` (binary) and the mean over rows of the summed
  squared error over all k columns (multiclass, range [0, 2]), scikit-learn's ``scale_by_half="auto"``.
* ``ece`` (expected calibration error) = ``sum_b |mean(y in b) - mean(p in b)| * n_b / n`` over
  ``ece_bins`` equal-width bins of [0, 1]; a value on a bin edge falls into the lower bin, as in
  scikit-learn's ``calibration_curve(strategy="uniform")``. Binary: ``p = p1``, ``y = (y == 1)``.
  Multiclass (top-label): ``p`` = probability of the predicted class, ``y`` = prediction correct.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.errors import ConfigError, DataError

MetricValue = float | int | None

# Probabilities further than this outside [0, 1] are scores, not probabilities: fail loudly
# rather than report a meaningless log loss.
_PROBA_SLACK = 1e-6


class PredictionAccumulator:
    """Collects streamed prediction batches (``y``, ``p_0..p_{k-1}``) into two arrays."""

    def __init__(self, n_classes: int) -> None:
        if n_classes < 2:
            raise DataError(f"a classifier needs at least 2 classes, got n_classes={n_classes}")
        self.n_classes = n_classes
        self._columns = ["y", *(f"p_{j}" for j in range(n_classes))]
        self._y: list[np.ndarray] = []
        self._proba: list[np.ndarray] = []

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append one batch; it must hold ``y`` (class index) and ``p_0..p_{k-1}`` without nulls."""
        names = set(batch.schema.names)
        for name in self._columns:
            if name not in names:
                raise DataError(f"prediction batch has no column {name!r} (needs {', '.join(self._columns)})")
        y = _column_numpy(batch, "y")
        if len(y) and (not np.all(np.isfinite(y)) or np.any(y != np.round(y))):
            raise DataError("prediction batch column 'y' must hold integer class indices")
        y = y.astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= self.n_classes):
            raise DataError(f"prediction batch column 'y' has class indices outside 0..{self.n_classes - 1}")
        proba = np.column_stack([_column_numpy(batch, f"p_{j}").astype(np.float64) for j in range(self.n_classes)])
        self._y.append(y)
        self._proba.append(proba.reshape(len(y), self.n_classes))

    @property
    def n_rows(self) -> int:
        """Return the number of rows collected so far."""
        return sum(len(y) for y in self._y)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(y, proba)``: class indices (n,) int64 and probabilities (n, k) float64."""
        if not self._y:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.n_classes), dtype=np.float64)
        return np.concatenate(self._y), np.concatenate(self._proba, axis=0)


def _column_numpy(batch: pa.RecordBatch | pa.Table, name: str) -> np.ndarray:
    column = batch.column(name)
    if column.null_count:
        raise DataError(f"prediction batch column {name!r} has {column.null_count} null values")
    if isinstance(column, pa.ChunkedArray):
        return column.to_numpy()
    return column.to_numpy(zero_copy_only=False)


def compute_metrics(
    y: np.ndarray, proba: np.ndarray, *, threshold: float = 0.5, ece_bins: int = 15
) -> dict[str, MetricValue]:
    """Return every metric of probabilities ``proba`` (n, k) against class indices ``y`` (n,).

    Parameters
    ----------
    y : np.ndarray
        True class indices 0..k-1.
    proba : np.ndarray
        Probabilities, one column per class; two columns make a binary task.
    threshold : float
        Binary decision threshold on column 1 (``p1 >= threshold`` is positive).
    ece_bins : int
        Number of equal-width bins of the expected calibration error.

    Returns
    -------
    dict
        ``auc, pr_auc, accuracy, balanced_accuracy, f1, precision, recall, log_loss, brier, ece``
        (macro / top-label variants for multiclass, plus ``auc_ovr_weighted`` and ``f1_weighted``),
        then ``n``, ``positive_rate`` and ``threshold`` (the last two None for multiclass).
        Undefined values are None, never NaN.
    """
    y, proba = check_predictions(y, proba)
    if ece_bins < 1:
        raise ConfigError(f"evaluation.ece_bins must be at least 1, got {ece_bins}")
    if not np.isfinite(threshold):
        raise ConfigError(f"evaluation.threshold must be a finite number, got {threshold}")
    k = proba.shape[1]
    if k == 2:
        return _binary_metrics(y, proba, float(threshold), ece_bins)
    return _multiclass_metrics(y, proba, ece_bins)


def check_predictions(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y, proba)`` as int64 (n,) and float64 (n, k) after checking they fit together."""
    y = np.asarray(y)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise DataError(f"probabilities must be a (rows x classes) array with >= 2 columns, got shape {proba.shape}")
    if y.ndim != 1 or len(y) != len(proba):
        raise DataError(f"labels ({y.shape}) and probabilities ({proba.shape}) do not have the same rows")
    if len(y) == 0:
        raise DataError("cannot compute metrics on zero rows")
    if not np.all(np.isfinite(proba)):
        raise DataError("probabilities contain NaN or infinite values")
    if proba.min() < -_PROBA_SLACK or proba.max() > 1 + _PROBA_SLACK:
        raise DataError(f"probabilities must lie in [0, 1], got values in [{proba.min():.4g}, {proba.max():.4g}]")
    if y.dtype.kind == "f" and np.any(y != np.round(y)):
        raise DataError("labels must be integer class indices")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= proba.shape[1]:
        raise DataError(f"labels must be class indices 0..{proba.shape[1] - 1}, got {y.min()}..{y.max()}")
    return y, proba


def _binary_metrics(y: np.ndarray, proba: np.ndarray, threshold: float, ece_bins: int) -> dict[str, MetricValue]:
    p1 = proba[:, 1]
    y01 = (y == 1).astype(np.int64)
    y_pred = (p1 >= threshold).astype(np.int64)
    scores = per_class_scores(y, y_pred, 2)
    return {
        "auc": roc_auc(y01, p1),
        "pr_auc": average_precision(y01, p1),
        "accuracy": float(np.mean(y_pred == y)),
        "balanced_accuracy": balanced_accuracy(y, y_pred, 2),
        "f1": float(scores["f1"][1]),
        "precision": float(scores["precision"][1]),
        "recall": float(scores["recall"][1]),
        "log_loss": log_loss(y, proba),
        "brier": float(np.mean((y01 - p1) ** 2)),
        "ece": expected_calibration_error(y01, p1, ece_bins),
        "n": len(y),
        "positive_rate": float(np.mean(y01)),
        "threshold": threshold,
    }


def _multiclass_metrics(y: np.ndarray, proba: np.ndarray, ece_bins: int) -> dict[str, MetricValue]:
    k = proba.shape[1]
    y_pred = np.argmax(proba, axis=1)
    support = np.bincount(y, minlength=k)
    auc_macro = auc_weighted = ap_macro = None
    if np.all(support > 0):
        # With every class present each one-vs-rest split has both labels, so none is None.
        auc_per_class = np.array([roc_auc((y == j).astype(np.int64), proba[:, j]) for j in range(k)], dtype=float)
        ap_per_class = np.array(
            [average_precision((y == j).astype(np.int64), proba[:, j]) for j in range(k)], dtype=float
        )
        auc_macro = float(np.mean(auc_per_class))
        auc_weighted = float(np.average(auc_per_class, weights=support))
        ap_macro = float(np.mean(ap_per_class))
    scores = per_class_scores(y, y_pred, k)
    # Macro averages cover the classes seen in y or in the predictions, as scikit-learn's do.
    seen = (support > 0) | (np.bincount(y_pred, minlength=k) > 0)
    confidence = proba[np.arange(len(y)), y_pred]
    onehot = np.eye(k)[y]
    return {
        "auc": auc_macro,
        "pr_auc": ap_macro,
        "accuracy": float(np.mean(y_pred == y)),
        "balanced_accuracy": balanced_accuracy(y, y_pred, k),
        "f1": float(np.mean(scores["f1"][seen])),
        "precision": float(np.mean(scores["precision"][seen])),
        "recall": float(np.mean(scores["recall"][seen])),
        "log_loss": log_loss(y, proba),
        "brier": float(np.mean(np.sum((onehot - proba) ** 2, axis=1))),
        "ece": expected_calibration_error((y_pred == y).astype(np.int64), confidence, ece_bins),
        "auc_ovr_weighted": auc_weighted,
        "f1_weighted": float(np.average(scores["f1"], weights=support)),
        "n": len(y),
        "positive_rate": None,
        "threshold": None,
    }


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Return the mean negative log probability of the true class, clipped as scikit-learn clips."""
    eps = np.finfo(np.float64).eps
    clipped = np.clip(proba, eps, 1 - eps)
    return float(np.mean(-np.log(clipped[np.arange(len(y)), y])))


def confusion_matrix(y: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Return the (k, k) count matrix: rows are true classes, columns predicted classes."""
    y = np.asarray(y, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y * k + y_pred, minlength=k * k).reshape(k, k)


def per_class_scores(y: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Return per-class ``precision``, ``recall``, ``f1`` and ``support`` arrays of length k."""
    cm = confusion_matrix(y, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    true_sum = cm.sum(axis=1).astype(np.float64)
    pred_sum = cm.sum(axis=0).astype(np.float64)
    return {
        "precision": _safe_divide(tp, pred_sum),
        "recall": _safe_divide(tp, true_sum),
        "f1": _safe_divide(2 * tp, true_sum + pred_sum),
        "support": true_sum.astype(np.int64),
    }


def balanced_accuracy(y: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    """Return the mean recall over the classes present in ``y``."""
    cm = confusion_matrix(y, y_pred, k)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # 0/0 is 0.0: scikit-learn's zero_division default for precision, recall and F1.
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def _counts_at_thresholds(y01: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(fps, tps, thresholds)`` at each distinct score, thresholds decreasing."""
    y01 = np.asarray(y01, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score, kind="stable")[::-1]
    score, y01 = score[order], y01[order]
    # The last index of each run of tied scores: all tied rows switch class together.
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(y01)[last]
    fps = 1.0 + last - tps
    return fps, tps, score[last]


def roc_curve(y01: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(fpr, tpr, thresholds)`` of the ROC curve, as scikit-learn's ``roc_curve``.

    Collinear intermediate points are dropped; the curve starts at (0, 0) with threshold +inf.
    ``fpr`` (``tpr``) is NaN when ``y01`` has no negatives (positives).
    """
    fps, tps, thresholds = _counts_at_thresholds(y01, score)
    if len(fps) > 2:
        corner = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thresholds = fps[corner], tps[corner], thresholds[corner]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thresholds = np.r_[np.inf, thresholds]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thresholds


def pr_curve(y01: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(precision, recall, thresholds)``, as scikit-learn's ``precision_recall_curve``.

    Recall decreases along the arrays, which end with the point (recall 0, precision 1);
    thresholds increase and are one shorter. Without positives recall is 1 everywhere.
    """
    fps, tps, thresholds = _counts_at_thresholds(y01, score)
    precision = _safe_divide(tps, tps + fps)
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def roc_auc(y01: np.ndarray, score: np.ndarray) -> float | None:
    """Return the area under the ROC curve (trapezoids), or None unless both classes occur."""
    y01 = np.asarray(y01)
    if y01.min() == y01.max():
        return None
    fpr, tpr, _ = roc_curve(y01, score)
    return float(np.trapezoid(tpr, fpr))


def average_precision(y01: np.ndarray, score: np.ndarray) -> float | None:
    """Return average precision ``sum (R_i - R_{i-1}) P_i``, or None when there are no positives."""
    if not np.any(np.asarray(y01) == 1):
        return None
    precision, recall, _ = pr_curve(y01, score)
    # Clipped like scikit-learn's: rounding can give -0.0.
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def calibration_bins(y01: np.ndarray, p: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(fraction_positive, mean_predicted, count)`` of each non-empty equal-width bin.

    The first two equal scikit-learn's ``calibration_curve(y01, p, n_bins=n_bins)``; a value on an
    inner bin edge belongs to the lower bin.
    """
    y01 = np.asarray(y01, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(bin_ids, minlength=n_bins)
    sum_p = np.bincount(bin_ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(bin_ids, weights=y01, minlength=n_bins)
    nonempty = count > 0
    return sum_y[nonempty] / count[nonempty], sum_p[nonempty] / count[nonempty], count[nonempty]


def expected_calibration_error(y01: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """Return ``sum_b |mean(y01 in b) - mean(p in b)| * n_b / n`` over equal-width bins."""
    fraction, mean_p, count = calibration_bins(y01, p, n_bins)
    return float(np.sum(np.abs(fraction - mean_p) * count) / np.sum(count))


def threshold_table(y01: np.ndarray, p1: np.ndarray) -> dict[str, np.ndarray]:
    """Return confusion counts and precision / recall / F1 at every candidate threshold.

    Candidates are the distinct values of ``p1`` in increasing order (a row is positive when
    ``p1 >= threshold``), then one just above the largest value, where nothing is positive.
    Keys: ``threshold, tp, fp, fn, tn, precision, recall, f1``; 0/0 ratios are 0.
    """
    y01 = np.asarray(y01, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    if len(p1) == 0:
        raise DataError("cannot build a threshold table from zero rows")
    fps, tps, thresholds = _counts_at_thresholds(y01, p1)
    # Reverse to increasing thresholds and append the "nothing positive" candidate.
    tp = np.r_[tps[::-1], 0.0]
    fp = np.r_[fps[::-1], 0.0]
    above_max = np.nextafter(thresholds[0], np.inf)
    n_pos, n_neg = tps[-1], fps[-1]
    return {
        "threshold": np.r_[thresholds[::-1], above_max],
        "tp": tp,
        "fp": fp,
        "fn": n_pos - tp,
        "tn": n_neg - fp,
        "precision": _safe_divide(tp, tp + fp),
        "recall": _safe_divide(tp, np.full_like(tp, n_pos)),
        "f1": _safe_divide(2 * tp, tp + fp + n_pos),
    }
