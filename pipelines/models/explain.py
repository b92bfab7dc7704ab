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

CURVE_POINTS = 40
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


def _booster_curve(
    model: BoosterModel, train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    import xgboost

    booster = model.booster
    rounds = booster.num_boosted_rounds()
    steps = sorted({max(1, round(rounds * i / CURVE_POINTS)) for i in range(1, CURVE_POINTS + 1)})
    out: dict[str, Any] = {"axis": "boosting round", "steps": steps}
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
    rounds = int(est.n_iter_)
    every = max(1, rounds // CURVE_POINTS)
    out: dict[str, Any] = {"axis": "boosting round"}
    for name, (x, y) in (("train", train), ("valid", valid)):
        staged = list(est.staged_predict_proba(x))
        out["steps"] = [i + 1 for i in range(0, len(staged), every)]
        out[name] = [log_loss_of(staged[i], y) for i in range(0, len(staged), every)]
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
    """
    x, _ = valid
    native = None if kernel else model.native_importance()
    if native is not None:
        values, kind = native
    else:
        values, kind = permutation_importance(model.predict, valid, score, PERMUTATION_REPEATS, seed), "permutation"
    pairs = [(n, float(v), kind) for n, v in zip(names, values, strict=True)]
    out = sorted(pairs, key=lambda t: -abs(t[1]))
    if isinstance(model, BoosterModel) and len(x):
        shap = shap_importance(model, x)
        out += sorted(((n, float(v), "shap") for n, v in zip(names, shap, strict=True)), key=lambda t: -t[1])
    return out


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    score: Callable[[np.ndarray, np.ndarray], float],
    repeats: int,
    seed: int,
) -> np.ndarray:
    """Return, per feature, the mean drop of ``score`` when that feature's values are shuffled."""
    x, y = valid
    base = score(y, predict(x))
    rng = np.random.default_rng(seed)
    drops = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        shuffled = x.copy()
        for _ in range(repeats):
            shuffled[:, j] = x[rng.permutation(len(x)), j]
            drops[j] += base - score(y, predict(shuffled))
    return drops / repeats


def shap_importance(model: BoosterModel, x: np.ndarray) -> np.ndarray:
    """Return each feature's mean |SHAP value| from xgboost's own tree contributions (summed over classes)."""
    import xgboost

    contribs = np.asarray(model.booster.predict(xgboost.DMatrix(np.asarray(x, np.float32)), pred_contribs=True))
    if contribs.ndim == 3:  # rows x classes x (features + bias)
        contribs = np.abs(contribs).sum(axis=1)
    return np.abs(contribs[:, :-1]).mean(axis=0)
