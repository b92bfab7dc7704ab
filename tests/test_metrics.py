"""The shared metrics equal scikit-learn 1.9.1's on random and adversarial arrays; batches stream correctly."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pytest
from sklearn import calibration as skcal
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from pipelines.errors import ConfigError, DataError
from pipelines.evaluation.metrics import (
    PredictionAccumulator,
    calibration_bins,
    compute_metrics,
    confusion_matrix,
    pr_curve,
    roc_curve,
    threshold_table,
)

TOL = 1e-9


# ---------------------------------------------------------------- reference values


def reference_ece(y01: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """ECE by a plain loop: each value goes to the first bin whose upper edge it does not exceed."""
    upper = np.linspace(0.0, 1.0, n_bins + 1)[1:]
    bins: dict[int, list[int]] = {}
    for i, value in enumerate(p):
        b = next((b for b in range(n_bins - 1) if value <= upper[b]), n_bins - 1)
        bins.setdefault(b, []).append(i)
    return sum(abs(y01[rows].mean() - p[rows].mean()) * len(rows) / len(p) for rows in bins.values())


def sklearn_metrics(y: np.ndarray, proba: np.ndarray, threshold: float, ece_bins: int) -> dict[str, float | None]:
    """Return the expected metrics, computed with scikit-learn wherever it defines them."""
    k = proba.shape[1]
    labels = list(range(k))
    present = np.unique(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if k == 2:
            y_pred = (proba[:, 1] >= threshold).astype(int)
            ranked = len(present) == 2
            expected = {
                "auc": skm.roc_auc_score(y, proba[:, 1]) if ranked else None,
                "pr_auc": skm.average_precision_score(y, proba[:, 1]) if 1 in present else None,
                "f1": skm.f1_score(y, y_pred, zero_division=0),
                "precision": skm.precision_score(y, y_pred, zero_division=0),
                "recall": skm.recall_score(y, y_pred, zero_division=0),
                "brier": skm.brier_score_loss(y, proba[:, 1], pos_label=1),
                "ece": reference_ece((y == 1).astype(float), proba[:, 1], ece_bins),
                "positive_rate": float(np.mean(y == 1)),
                "threshold": threshold,
            }
        else:
            y_pred = np.argmax(proba, axis=1)
            ranked = len(present) == k
            onehot = label_binarize(y, classes=labels)
            expected = {
                "auc": skm.roc_auc_score(y, proba, multi_class="ovr", average="macro") if ranked else None,
                "pr_auc": skm.average_precision_score(onehot, proba, average="macro") if ranked else None,
                "f1": skm.f1_score(y, y_pred, average="macro", zero_division=0),
                "precision": skm.precision_score(y, y_pred, average="macro", zero_division=0),
                "recall": skm.recall_score(y, y_pred, average="macro", zero_division=0),
                "brier": skm.brier_score_loss(y, proba, labels=labels),
                "ece": reference_ece((y_pred == y).astype(float), proba.max(axis=1), ece_bins),
                "auc_ovr_weighted": (
                    skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted") if ranked else None
                ),
                "f1_weighted": skm.f1_score(y, y_pred, average="weighted", zero_division=0),
                "positive_rate": None,
                "threshold": None,
            }
        expected |= {
            "accuracy": skm.accuracy_score(y, y_pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, y_pred),
            "log_loss": skm.log_loss(y, proba, labels=labels),
            "n": len(y),
        }
    return expected


def assert_matches(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5, ece_bins: int = 15) -> None:
    got = compute_metrics(y, proba, threshold=threshold, ece_bins=ece_bins)
    expected = sklearn_metrics(y, proba, threshold, ece_bins)
    assert set(got) == set(expected)
    for key, want in expected.items():
        value = got[key]
        if want is None:
            assert value is None, f"{key}: expected None, got {value}"
        else:
            assert value is not None, f"{key}: got None, expected {want}"
            assert abs(value - want) <= TOL, f"{key}: {value!r} != scikit-learn {want!r}"
    json.dumps(got, allow_nan=False)


# ---------------------------------------------------------------- generators of hard cases


def binary_case(rng: np.random.Generator, n: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (y, proba) for binary tasks; ``style`` picks the kind of difficulty."""
    y = rng.integers(0, 2, n)
    if style == "continuous":
        p1 = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    elif style == "ties":
        p1 = np.round(rng.random(n), 1)
    elif style == "extremes":
        p1 = rng.choice([0.0, 1.0, 0.5, 1e-300, 1 - 1e-16], n)
    elif style == "constant":
        p1 = np.full(n, rng.choice([0.0, 0.5, 1.0]))
    elif style == "bin_edges":
        p1 = rng.integers(0, 16, n) / 15.0
    else:
        raise AssertionError(style)
    return y, np.column_stack([1.0 - p1, p1])


def multiclass_case(rng: np.random.Generator, n: int, k: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (y, proba) with rows summing to 1 for k classes."""
    y = rng.integers(0, k, n)
    if style == "continuous":
        proba = rng.dirichlet(np.ones(k), n)
    elif style == "ties":
        raw = rng.integers(0, 3, (n, k)).astype(float) + 1e-3 * (np.arange(k) == 0)
        proba = raw / raw.sum(axis=1, keepdims=True)
    elif style == "onehot":
        proba = np.eye(k)[rng.integers(0, k, n)]
    elif style == "informative":
        proba = rng.dirichlet(np.ones(k), n) * 0.5 + 0.5 * np.eye(k)[y]
    else:
        raise AssertionError(style)
    return y, proba


BINARY_STYLES = ["continuous", "ties", "extremes", "constant", "bin_edges"]
MULTI_STYLES = ["continuous", "ties", "onehot", "informative"]


@pytest.mark.parametrize("style", BINARY_STYLES)
@pytest.mark.parametrize("seed", range(12))
def test_binary_metrics_equal_sklearn(style: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = [1, 2, 3, 4, 7, 20, 200, 1000][seed % 8]
    y, proba = binary_case(rng, n, style)
    threshold = [0.5, 0.3, 0.0, 1.0, 0.7][seed % 5]
    assert_matches(y, proba, threshold=threshold, ece_bins=[15, 10, 1, 7][seed % 4])


@pytest.mark.parametrize("style", MULTI_STYLES)
@pytest.mark.parametrize("seed", range(10))
def test_multiclass_metrics_equal_sklearn(style: str, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    k = [3, 4, 7][seed % 3]
    n = [3, 5, 12, 60, 400][seed % 5]
    y, proba = multiclass_case(rng, n, k, style)
    assert_matches(y, proba, ece_bins=[15, 5][seed % 2])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_one_or_two_rows_per_class(k: int) -> None:
    rng = np.random.default_rng(k)
    for per_class in (1, 2):
        y = np.repeat(np.arange(k), per_class)
        proba = rng.dirichlet(np.ones(k), len(y))
        assert_matches(y, proba)


@pytest.mark.parametrize("k", [2, 3])
def test_single_class_gives_none_not_nan(k: int) -> None:
    y = np.zeros(6, dtype=int)
    proba = np.random.default_rng(0).dirichlet(np.ones(k), 6)
    got = compute_metrics(y, proba)
    assert got["auc"] is None and got["pr_auc"] is None
    json.dumps(got, allow_nan=False)
    assert_matches(y, proba)


def test_all_positive_binary() -> None:
    y = np.ones(5, dtype=int)
    p1 = np.array([0.1, 0.9, 0.9, 0.4, 1.0])
    got = compute_metrics(y, np.column_stack([1 - p1, p1]))
    assert got["auc"] is None
    assert got["pr_auc"] == pytest.approx(1.0)
    assert_matches(y, np.column_stack([1 - p1, p1]))


def test_multiclass_missing_class_has_no_ranking_metrics() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 30)  # class 2 never occurs
    proba = rng.dirichlet(np.ones(3), 30)
    got = compute_metrics(y, proba)
    assert got["auc"] is None and got["pr_auc"] is None and got["auc_ovr_weighted"] is None
    assert_matches(y, proba)


def test_perfect_and_inverted_scores() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p1 = y * 0.8 + 0.1
    assert compute_metrics(y, np.column_stack([1 - p1, p1]))["auc"] == 1.0
    assert compute_metrics(y, np.column_stack([p1, 1 - p1]))["auc"] == 0.0


# ---------------------------------------------------------------- curves


@pytest.mark.parametrize("seed", range(15))
def test_curves_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n = [2, 5, 30, 300, 2000][seed % 5]
    y01 = rng.integers(0, 2, n)
    y01[0], y01[-1] = 0, 1
    score = np.round(rng.random(n), [1, 2, 6][seed % 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ours, theirs in (
            (roc_curve(y01, score), skm.roc_curve(y01, score)),
            (pr_curve(y01, score), skm.precision_recall_curve(y01, score)),
        ):
            for a, b in zip(ours, theirs, strict=True):
                np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
        n_bins = [5, 10, 15][seed % 3]
        fraction, mean_p, count = calibration_bins(y01, score, n_bins)
        want_fraction, want_mean = skcal.calibration_curve(y01, score, n_bins=n_bins)
    np.testing.assert_allclose(fraction, want_fraction, atol=TOL)
    np.testing.assert_allclose(mean_p, want_mean, atol=TOL)
    assert count.sum() == n


def test_curves_without_one_class_match_sklearn() -> None:
    score = np.array([0.2, 0.4, 0.4, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y01 in (np.zeros(4, dtype=int), np.ones(4, dtype=int)):
            for a, b in zip(roc_curve(y01, score), skm.roc_curve(y01, score), strict=True):
                np.testing.assert_allclose(a, b, atol=TOL)
            for a, b in zip(pr_curve(y01, score), skm.precision_recall_curve(y01, score), strict=True):
                np.testing.assert_allclose(a, b, atol=TOL)


@pytest.mark.parametrize("k", [2, 3, 6])
def test_confusion_matrix_equals_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    y, y_pred = rng.integers(0, k, 100), rng.integers(0, k, 100)
    np.testing.assert_array_equal(confusion_matrix(y, y_pred, k), skm.confusion_matrix(y, y_pred, labels=range(k)))


@pytest.mark.parametrize("seed", range(8))
def test_threshold_table_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    n = [1, 3, 10, 100][seed % 4]
    y01 = rng.integers(0, 2, n)
    p1 = np.round(rng.random(n), 1)
    table = threshold_table(y01, p1)
    assert np.all(np.diff(table["threshold"]) > 0)
    assert table["tp"][-1] == 0 and table["fp"][-1] == 0
    for i, t in enumerate(table["threshold"]):
        y_pred = (p1 >= t).astype(int)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert table["precision"][i] == pytest.approx(skm.precision_score(y01, y_pred, zero_division=0), abs=TOL)
            assert table["recall"][i] == pytest.approx(skm.recall_score(y01, y_pred, zero_division=0), abs=TOL)
            assert table["f1"][i] == pytest.approx(skm.f1_score(y01, y_pred, zero_division=0), abs=TOL)
        assert table["tp"][i] + table["fn"][i] == y01.sum()
        assert table["fp"][i] + table["tn"][i] == n - y01.sum()


# ---------------------------------------------------------------- streaming batches


def _batch(y: np.ndarray, proba: np.ndarray) -> pa.RecordBatch:
    columns = {"y": pa.array(y, pa.int32())} | {f"p_{j}": pa.array(proba[:, j]) for j in range(proba.shape[1])}
    return pa.RecordBatch.from_pydict(columns)


@pytest.mark.parametrize("k", [2, 4])
def test_accumulator_batches_equal_one_batch(k: int) -> None:
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 503)
    proba = rng.dirichlet(np.ones(k), 503)
    whole = PredictionAccumulator(k)
    whole.update(_batch(y, proba))
    split = PredictionAccumulator(k)
    for start, stop in ((0, 0), (0, 1), (1, 100), (100, 101), (101, 503)):
        split.update(_batch(y[start:stop], proba[start:stop]))
    table = PredictionAccumulator(k)
    table.update(pa.Table.from_batches([_batch(y[:250], proba[:250]), _batch(y[250:], proba[250:])]))
    for acc in (whole, split, table):
        got_y, got_proba = acc.arrays()
        np.testing.assert_array_equal(got_y, y)
        np.testing.assert_array_equal(got_proba, proba)
        assert acc.n_rows == 503
        assert compute_metrics(*acc.arrays()) == compute_metrics(y, proba)


def test_accumulator_rejects_bad_batches() -> None:
    acc = PredictionAccumulator(2)
    assert acc.arrays()[1].shape == (0, 2)
    with pytest.raises(DataError, match="p_1"):
        acc.update(pa.RecordBatch.from_pydict({"y": pa.array([0], pa.int32()), "p_0": pa.array([1.0])}))
    with pytest.raises(DataError, match="outside"):
        acc.update(_batch(np.array([2]), np.array([[0.5, 0.5]])))
    with pytest.raises(DataError, match="null"):
        acc.update(
            pa.RecordBatch.from_pydict(
                {"y": pa.array([0, None], pa.int32()), "p_0": pa.array([0.5, 0.5]), "p_1": pa.array([0.5, 0.5])}
            )
        )
    with pytest.raises(DataError):
        PredictionAccumulator(1)


def test_bad_inputs_raise_one_line_errors() -> None:
    proba = np.array([[0.4, 0.6], [0.5, 0.5]])
    cases = [
        (DataError, lambda: compute_metrics(np.array([0]), proba)),
        (DataError, lambda: compute_metrics(np.array([0, 2]), proba)),
        (DataError, lambda: compute_metrics(np.array([], dtype=int), np.zeros((0, 2)))),
        (DataError, lambda: compute_metrics(np.array([0, 1]), np.array([[np.nan, 1.0], [0.5, 0.5]]))),
        (DataError, lambda: compute_metrics(np.array([0, 1]), np.array([[-3.0, 4.0], [0.5, 0.5]]))),
        (DataError, lambda: compute_metrics(np.array([0, 1]), np.array([0.4, 0.6]))),
        (ConfigError, lambda: compute_metrics(np.array([0, 1]), proba, ece_bins=0)),
    ]
    for error, call in cases:
        with pytest.raises(error) as info:
            call()
        assert "\n" not in str(info.value)
