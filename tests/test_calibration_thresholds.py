"""Calibration improves mis-scaled probabilities and round-trips through JSON; thresholds match brute force."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn import calibration as skcal
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from pipelines.errors import ConfigError, DataError
from pipelines.evaluation.calibration import (
    Calibrator,
    apply_isotonic,
    apply_platt,
    fit_calibrator,
    fit_isotonic,
    fit_platt,
)
from pipelines.evaluation.thresholds import ThresholdChoice, select_threshold


def overconfident_binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return labels drawn from true probabilities and a model that reports them far too confidently."""
    true_p = expit(rng.normal(0.0, 1.5, n))
    y = (rng.random(n) < true_p).astype(int)
    reported = expit(4.0 * logit(true_p) + 1.0)
    return y, np.column_stack([1 - reported, reported])


def overconfident_multiclass(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return labels and softmax probabilities whose logits are three times too large."""
    logits = rng.normal(0.0, 1.0, (n, k))
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in true_p])
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)
    return y, sharp


# ---------------------------------------------------------------- Platt


@pytest.mark.parametrize("seed", range(5))
def test_fit_platt_matches_sklearn_sigmoid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = [5, 40, 300, 1000, 50][seed]
    y01 = rng.integers(0, 2, n)
    # Seed 4 uses large SVM-like margins, which both implementations rescale before fitting.
    scores = rng.normal(0, 1, n) + y01 * 1.5 if seed < 4 else rng.normal(0, 80, n) + 120 * y01
    a, b = fit_platt(scores, y01)
    want_a, want_b = skcal._sigmoid_calibration(scores, y01)
    np.testing.assert_allclose(apply_platt(scores, a, b), apply_platt(scores, want_a, want_b), atol=1e-4)


def test_weighted_platt_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    y01 = (rng.random(800) < 0.1).astype(int)
    scores = rng.normal(0, 1, 800) + 2.0 * y01
    weights = np.where(y01 == 1, 5.0, 0.55)
    a, b = fit_platt(scores, y01, weights)
    want_a, want_b = skcal._sigmoid_calibration(scores, y01, sample_weight=weights)
    np.testing.assert_allclose(apply_platt(scores, a, b), apply_platt(scores, want_a, want_b), atol=1e-4)
    assert apply_platt(scores, a, b).mean() > apply_platt(scores, *fit_platt(scores, y01)).mean() + 0.1


def test_platt_on_separable_data_stays_finite() -> None:
    scores = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    a, b = fit_platt(scores, np.array([0, 0, 0, 1, 1, 1]))
    p = apply_platt(scores, a, b)
    assert np.isfinite([a, b]).all() and a < 0
    assert np.all(np.diff(p) > 0) and p.min() > 0 and p.max() < 1
    assert apply_platt(np.array([0.0]), 0.0, 0.0)[0] == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_sigmoid_improves_log_loss_of_misscaled_binary_model(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    y_fit, p_fit = overconfident_binary(rng, 2000)
    y_new, p_new = overconfident_binary(rng, 2000)
    calibrated = fit_calibrator("sigmoid", y_fit, p_fit).transform(p_new)
    assert skm.log_loss(y_new, calibrated) < 0.9 * skm.log_loss(y_new, p_new)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-12)
    # Ranking is kept: Platt scaling of logit(p) is monotone.
    assert skm.roc_auc_score(y_new, calibrated[:, 1]) == pytest.approx(skm.roc_auc_score(y_new, p_new[:, 1]))


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_multiclass_calibration_improves_and_rows_sum_to_one(method: str) -> None:
    rng = np.random.default_rng(7)
    y_fit, p_fit = overconfident_multiclass(rng, 3000, 4)
    y_new, p_new = overconfident_multiclass(rng, 3000, 4)
    calibrated = fit_calibrator(method, y_fit, p_fit).transform(p_new)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-12)
    assert skm.brier_score_loss(y_new, calibrated) < skm.brier_score_loss(y_new, p_new)
    if method == "sigmoid":
        assert skm.log_loss(y_new, calibrated) < skm.log_loss(y_new, p_new)


# ---------------------------------------------------------------- isotonic


@pytest.mark.parametrize("seed", range(6))
def test_isotonic_matches_sklearn_and_is_monotone(seed: int) -> None:
    rng = np.random.default_rng(20 + seed)
    n = [1, 2, 10, 100, 1000, 500][seed]
    x = np.round(rng.random(n), [1, 2, 3][seed % 3])
    y01 = (rng.random(n) < x).astype(float)
    xs, ys = fit_isotonic(x, y01)
    grid = np.r_[-0.5, np.linspace(0, 1, 301), 1.5, x]
    got = apply_isotonic(grid, xs, ys)
    want = IsotonicRegression(out_of_bounds="clip").fit(x, y01).predict(grid)
    np.testing.assert_allclose(got, want, atol=1e-9)
    ordered = apply_isotonic(np.sort(grid), xs, ys)
    assert np.all(np.diff(ordered) >= 0)
    assert np.all((ordered >= 0) & (ordered <= 1))


def test_isotonic_calibrator_output_is_monotone_in_p1() -> None:
    rng = np.random.default_rng(3)
    y, proba = overconfident_binary(rng, 1500)
    calibrator = fit_calibrator("isotonic", y, proba)
    p1 = np.linspace(0, 1, 1001)
    out = calibrator.transform(np.column_stack([1 - p1, p1]))
    assert np.all(np.diff(out[:, 1]) >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)


def test_rows_every_curve_zeroes_become_uniform() -> None:
    # Class j occurs only with p_j = 0.9 and never with p_j = 0.6, so every curve is 0 up to 0.6.
    y = np.array([0, 1, 2])
    proba = np.full((3, 3), 0.6) + 0.3 * np.eye(3)
    calibrator = fit_calibrator("isotonic", y, proba)
    out = calibrator.transform(np.array([[0.4, 0.3, 0.3], [0.9, 0.05, 0.05]]))
    np.testing.assert_allclose(out[1], [1.0, 0.0, 0.0])
    out = out[:1]
    np.testing.assert_allclose(out, [[1 / 3, 1 / 3, 1 / 3]])


# ---------------------------------------------------------------- JSON round trip and errors


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
@pytest.mark.parametrize("k", [2, 3])
def test_json_round_trip_reproduces_transform_exactly(method: str, k: int) -> None:
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 400)
    proba = rng.dirichlet(np.ones(k), 400)
    proba[:3] = np.eye(k)[:3] if k == 3 else np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    calibrator = fit_calibrator(method, y, proba)
    restored = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict(), allow_nan=False)))
    test = rng.dirichlet(np.ones(k), 500)
    np.testing.assert_array_equal(restored.transform(test), calibrator.transform(test))
    assert restored == calibrator
    assert np.all(np.isfinite(calibrator.transform(proba)))


def test_calibration_errors_are_one_line() -> None:
    proba = np.array([[0.3, 0.7], [0.6, 0.4]])
    with pytest.raises(ConfigError, match=r"model\.calibration"):
        fit_calibrator("beta", np.array([1, 0]), proba)
    calibrator = fit_calibrator("sigmoid", np.array([1, 0]), proba)
    with pytest.raises(DataError, match="2 probability columns"):
        calibrator.transform(np.ones((2, 3)) / 3)
    with pytest.raises(DataError):
        fit_platt(np.array([np.nan, 1.0]), np.array([0, 1]))


# ---------------------------------------------------------------- thresholds


def brute_force(y01: np.ndarray, p1: np.ndarray, **settings: float) -> dict[str, tuple[float, float]]:
    """Return {strategy: (threshold, criterion)} by trying every distinct p1 and one value above all."""
    candidates = [*sorted(set(p1.tolist())), np.nextafter(p1.max(), np.inf)]
    best: dict[str, tuple[float, float]] = {}
    for t in candidates:  # increasing, and ">=" / "<=" below keep the highest of equal candidates
        y_pred = (p1 >= t).astype(int)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f1 = skm.f1_score(y01, y_pred, zero_division=0)
            recall = skm.recall_score(y01, y_pred, zero_division=0)
        _, fp, fn, _ = skm.confusion_matrix(y01, y_pred, labels=[0, 1]).ravel()
        cost = settings["cost_fp"] * fp + settings["cost_fn"] * fn
        if "max_f1" not in best or f1 >= best["max_f1"][1]:
            best["max_f1"] = (t, f1)
        if "cost" not in best or cost <= best["cost"][1]:
            best["cost"] = (t, cost)
        if recall >= settings["target_recall"]:
            best["target_recall"] = (t, recall)
    return best


@pytest.mark.parametrize("seed", range(25))
def test_strategies_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(40 + seed)
    n = [1, 2, 5, 30, 200][seed % 5]
    y01 = rng.integers(0, 2, n)
    y01[0] = 1
    p1 = np.round(np.clip(0.4 * y01 + 0.6 * rng.random(n), 0, 1), [1, 2, 4][seed % 3])
    settings = {
        "cost_fp": [1.0, 5.0, 0.2, 0.0][seed % 4],
        "cost_fn": [1.0, 1.0, 3.0, 1.0][seed % 4],
        "target_recall": [0.9, 0.5, 1.0, 0.75][seed % 4],
    }
    expected = brute_force(y01, p1, **settings)
    for strategy, (want_t, want_value) in expected.items():
        choice = select_threshold(y01, p1, strategy, **settings)
        assert choice.strategy == strategy
        assert choice.threshold == want_t, strategy
        assert choice.value == pytest.approx(want_value, abs=1e-12), strategy
    # No threshold on a fine grid beats the chosen F1: the candidate set is complete.
    grid = np.linspace(0, 1, 201)[:, None]
    tp = np.sum((p1 >= grid) & (y01 == 1), axis=1)
    grid_f1 = 2 * tp / (np.sum(p1 >= grid, axis=1) + y01.sum())
    assert grid_f1.max() <= expected["max_f1"][1] + 1e-12


def test_target_recall_is_the_highest_threshold_reaching_the_target() -> None:
    y01 = np.array([1, 1, 1, 1, 0, 0, 1, 0])
    p1 = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.3, 0.1])
    # Recall by threshold: 0.9 -> 1/5, 0.8 -> 2/5, 0.7 and 0.6 -> 3/5, 0.3 -> 5/5.
    choice = select_threshold(y01, p1, "target_recall", target_recall=0.8)
    assert choice.threshold == 0.3 and choice.value == 1.0
    assert select_threshold(y01, p1, "target_recall", target_recall=0.6).threshold == 0.7


def test_fixed_cost_extremes_and_round_trip() -> None:
    y01 = np.array([0, 1, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.8])
    fixed = select_threshold(y01, p1, "fixed", value=0.4)
    assert (fixed.threshold, fixed.criterion) == (0.4, "f1")
    assert fixed.value == pytest.approx(skm.f1_score(y01, (p1 >= 0.4).astype(int)))
    # Free false positives: predict everything positive; free false negatives: nothing.
    assert select_threshold(y01, p1, "cost", cost_fp=0.0, cost_fn=1.0).threshold == 0.4
    nothing = select_threshold(y01, p1, "cost", cost_fp=1.0, cost_fn=0.0)
    assert nothing.threshold > p1.max() and nothing.value == 0.0
    for choice in (fixed, nothing):
        data = json.loads(json.dumps(choice.to_dict(), allow_nan=False))
        assert ThresholdChoice(**data) == choice


def test_threshold_errors() -> None:
    y01, p1 = np.array([0, 0, 0]), np.array([0.2, 0.5, 0.9])
    with pytest.raises(ConfigError, match=r"evaluation\.threshold\.strategy"):
        select_threshold(y01, p1, "youden")
    with pytest.raises(DataError, match="positive rows"):
        select_threshold(y01, p1, "max_f1")
    assert select_threshold(y01, p1, "cost").threshold > 0.9
    assert select_threshold(y01, p1, "fixed").threshold == 0.5
    with pytest.raises(ConfigError, match="target_recall"):
        select_threshold(y01, p1, "target_recall", target_recall=0.0)
    with pytest.raises(DataError):
        select_threshold(np.array([0, 2]), np.array([0.1, 0.2]), "max_f1")
    with pytest.raises(DataError):
        select_threshold(np.array([], dtype=int), np.array([]), "fixed")
