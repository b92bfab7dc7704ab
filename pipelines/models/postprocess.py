"""What turns an engine's raw outputs into final probabilities and a decision threshold.

Fitted on the validation split, identically for every engine: Platt scaling of decision
scores (SVM-type models), then optional calibration (``model.calibration``), then the
binary threshold (``evaluation.threshold``). Saved as JSON beside the engine's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.evaluation.calibration import Calibrator, apply_platt, fit_calibrator, fit_platt
from pipelines.evaluation.thresholds import ThresholdChoice, select_threshold


def scores_to_columns(values: np.ndarray, n_classes: int) -> np.ndarray:
    """Return scores as (rows x columns): one column for binary, one per class otherwise."""
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1) if n_classes > 2 or values.ndim == 2 else values[:, None]


@dataclass
class Postprocess:
    """Fitted post-processing: Platt pairs per score column, a calibrator, a threshold."""

    n_classes: int
    platt: list[tuple[float, float]] | None = None
    calibrator: Calibrator | None = None
    threshold: ThresholdChoice | None = None

    def raw_probabilities(self, values: np.ndarray, output: str) -> np.ndarray:
        """Return probabilities (rows x k) before calibration, from probabilities or scores."""
        if output == "proba":
            return np.asarray(values, dtype=np.float64)
        assert self.platt is not None, "scores need Platt scaling fitted on the validation split"
        scores = scores_to_columns(values, self.n_classes)
        if self.n_classes == 2:
            p1 = apply_platt(scores[:, 0], *self.platt[0])
            return np.column_stack([1.0 - p1, p1])
        probs = np.column_stack([apply_platt(scores[:, j], *ab) for j, ab in enumerate(self.platt)])
        total = probs.sum(axis=1, keepdims=True)
        return np.divide(probs, total, out=np.full_like(probs, 1.0 / self.n_classes), where=total > 0)

    def probabilities(self, values: np.ndarray, output: str) -> np.ndarray:
        """Return the final calibrated probabilities (rows x k)."""
        proba = self.raw_probabilities(values, output)
        return self.calibrator.transform(proba) if self.calibrator is not None else proba

    @property
    def decision_threshold(self) -> float:
        """Return the binary threshold on the positive-class probability (0.5 by default)."""
        return self.threshold.threshold if self.threshold is not None else 0.5

    def to_dict(self) -> dict[str, Any]:
        """Return the fitted state as JSON-ready data."""
        return {
            "n_classes": self.n_classes,
            "platt": [list(ab) for ab in self.platt] if self.platt is not None else None,
            "calibrator": self.calibrator.to_dict() if self.calibrator is not None else None,
            "threshold": self.threshold.to_dict() if self.threshold is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Postprocess:
        """Return the Postprocess that ``to_dict`` described."""
        return cls(
            n_classes=int(d["n_classes"]),
            platt=[(float(a), float(b)) for a, b in d["platt"]] if d.get("platt") is not None else None,
            calibrator=Calibrator.from_dict(d["calibrator"]) if d.get("calibrator") else None,
            threshold=ThresholdChoice(**d["threshold"]) if d.get("threshold") else None,
        )


def fit_platt_only(
    y: np.ndarray, values: np.ndarray, output: str, n_classes: int, class_weights: np.ndarray | None = None
) -> Postprocess:
    """Return a Postprocess with only the Platt step (used to score tuning trials).

    Platt scaling is part of an SVM's probability output, so it is weighted like the SVM
    was (``model.class_weight``); otherwise it would undo the weighting on valid.
    """
    post = Postprocess(n_classes=n_classes)
    if output == "scores":
        scores = scores_to_columns(values, n_classes)
        weights = class_weights[y] if class_weights is not None else None
        columns = [1] if n_classes == 2 else range(n_classes)
        post.platt = [fit_platt(scores[:, i], (y == c).astype(np.float64), weights) for i, c in enumerate(columns)]
    return post


def fit_postprocess(
    y: np.ndarray,
    values: np.ndarray,
    output: str,
    n_classes: int,
    *,
    calibration: str,
    threshold: Any,
    class_weights: np.ndarray | None = None,
) -> Postprocess:
    """Return the post-processing fitted on validation labels ``y`` and raw engine ``values``.

    ``model.calibration`` is fitted unweighted: asked for, it maps to observed frequencies.
    """
    post = fit_platt_only(y, values, output, n_classes, class_weights)
    if calibration != "none":
        post.calibrator = fit_calibrator(calibration, y, post.raw_probabilities(values, output))
    if n_classes == 2:
        p1 = post.probabilities(values, output)[:, 1]
        post.threshold = select_threshold(
            (y == 1).astype(np.int64),
            p1,
            threshold.strategy,
            value=threshold.value,
            cost_fp=threshold.cost_fp,
            cost_fn=threshold.cost_fn,
            target_recall=threshold.target_recall,
        )
    return post
