"""What the report shows about a fitted model: its learning curve and which features it uses.

Both are computed on the driver from a sample of rows every engine returns alike
(``Engine.sample_rows``) and the model layer's ``predict``, so they mean the same on every engine.
Learning curves: the loss recorded while fitting (L-BFGS objective, epoch loss), or for boosted
trees the train and valid log loss after each of up to ``CURVE_POINTS`` rounds. Importance: native
gain for xgboost (with SHAP values from xgboost's own contributions), impurity decrease for
scikit-learn's trees, coefficient magnitude for linear models (features are standardised, so
magnitudes compare), and permutation importance on the valid rows otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipelines.models.fitted import BoosterModel, EngineModel, SklearnModel

CURVE_POINTS = 300  # rounds evaluated at most: every round up to 300, else every k-th
PERMUTATION_REPEATS = 3
Importance = list[tuple[str, float, str]]  # (feature, value, kind)


def log_loss_of(proba: np.ndarray, y: np.ndarray) -> float:
    """Return the mean log loss of class probabilities for class indices ``y``."""
    picked = proba[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-15, None))))


def learning_curve(
    model: EngineModel, train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any] | None:
    """Return {"axis", "train", "valid"?, "steps"?} for a model that iterates, else None."""
    if isinstance(model, BoosterModel):
        return _booster_curve(model, train, valid)
    if isinstance(model, SklearnModel):
        est = model.estimator
        if hasattr(est, "staged_predict_proba") and hasattr(est, "n_iter_"):  # HistGradientBoosting
            return _staged_curve(est, train, valid)
        if hasattr(est, "loss_curve_"):  # MLPClassifier
            return {"axis": "epoch", "train": [float(v) for v in est.loss_curve_]}
        return None
    return model.curves


def _every(rounds: int) -> tuple[int, str]:
    """Return the step between evaluated rounds (every round up to CURVE_POINTS) and the curve's axis."""
    every = max(1, -(-rounds // CURVE_POINTS))
    return every, "boosting round" if every == 1 else f"{every} boosting rounds"


def _booster_curve(
    model: BoosterModel, train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    import xgboost

    booster = model.booster
    every, axis = _every(booster.num_boosted_rounds())
    steps = list(range(every, booster.num_boosted_rounds() + 1, every))
    out: dict[str, Any] = {"axis": axis}
    for name, (x, y) in (("train", train), ("valid", valid)):
        matrix = xgboost.DMatrix(np.asarray(x, dtype=np.float32))
        losses = []
        for step in steps:
            p = np.asarray(booster.predict(matrix, iteration_range=(0, step)), dtype=np.float64)
            proba = np.column_stack([1.0 - p, p]) if model.n_classes == 2 else p.reshape(len(x), -1)
            losses.append(log_loss_of(proba, y))
        out[name] = losses
    return out


def _staged_curve(est: Any, train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray]) -> dict:
    every, axis = _every(int(est.n_iter_))
    out: dict[str, Any] = {"axis": axis}
    for name, (x, y) in (("train", train), ("valid", valid)):
        staged = list(est.staged_predict_proba(x))
        out[name] = [log_loss_of(staged[i], y) for i in range(every - 1, len(staged), every)]
    return out


def feature_importance(
    model: EngineModel,
    names: list[str],
    valid: tuple[np.ndarray, np.ndarray],
    score: Callable[[np.ndarray, np.ndarray], float],
    *,
    kernel: bool,
    seed: int,
) -> Importance:
    """Return each feature's importance and how it was measured, largest first.

    ``score(y, model outputs)`` is the metric permutation importance uses (higher is better);
    ``kernel`` says the model sees kernel features, whose coefficients do not name input features.
    Boosters add their SHAP summary (xgboost's own contributions) after their gain.
    """
    from pipelines.evaluation.importance import permutation_importance

    x, y = valid
    native = None if kernel else model.native_importance()
    if native is not None:
        values, kind = native
        rows = [(n, float(v), kind) for n, v in zip(names, values, strict=True)]
    else:
        rows = permutation_importance(model.predict, x, y, score, PERMUTATION_REPEATS, seed).rows(names)
    out = sorted(rows, key=lambda t: -abs(t[1]))
    if isinstance(model, BoosterModel) and len(x):
        out += sorted(shap_importance(model, x, names), key=lambda t: -t[1])
    return out


def shap_importance(model: BoosterModel, x: np.ndarray, names: list[str]) -> Importance:
    """Return each feature's mean |SHAP value| from xgboost's own tree contributions."""
    import xgboost

    from pipelines.evaluation.importance import shap_summary

    return shap_summary(model.booster.predict(xgboost.DMatrix(np.asarray(x, np.float32)), pred_contribs=True), names)
