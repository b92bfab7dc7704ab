"""The binary decision threshold on ``p1``, chosen on the validation split by one of four strategies.

Candidates are the distinct validation probabilities (a row is positive when ``p1 >= threshold``)
plus one value just above the largest, where nothing is predicted positive: any threshold between
two neighbouring candidates makes the same validation predictions, so nothing else can do better.
When several candidates tie on the criterion the highest threshold wins, the most conservative one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipelines.errors import ConfigError, DataError
from pipelines.evaluation.metrics import threshold_table

STRATEGIES = ("fixed", "max_f1", "cost", "target_recall")


@dataclass
class ThresholdChoice:
    """A chosen threshold: the strategy, the threshold and the criterion value it reached on validation.

    ``criterion`` names what ``value`` measures: ``f1`` (fixed, max_f1), ``cost`` (the total
    ``cost_fp * FP + cost_fn * FN`` on the validation rows) or ``recall`` (target_recall).
    """

    strategy: str
    threshold: float
    criterion: str
    value: float

    def to_dict(self) -> dict[str, Any]:
        """Return the choice as JSON-ready data; ``ThresholdChoice(**d)`` rebuilds it."""
        return {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in asdict(self).items()}


def select_threshold(
    y01: np.ndarray,
    p1: np.ndarray,
    strategy: str,
    *,
    value: float = 0.5,
    cost_fp: float = 1.0,
    cost_fn: float = 1.0,
    target_recall: float = 0.9,
) -> ThresholdChoice:
    """Return the threshold on ``p1`` that ``strategy`` picks for validation labels ``y01``.

    Parameters
    ----------
    y01 : np.ndarray
        Validation labels, 1 for the positive class and 0 otherwise.
    p1 : np.ndarray
        Validation probabilities of the positive class.
    strategy : str
        ``fixed`` (use ``value``), ``max_f1`` (highest F1), ``cost`` (lowest
        ``cost_fp * FP + cost_fn * FN``) or ``target_recall`` (highest threshold whose recall
        is at least ``target_recall``).
    value, cost_fp, cost_fn, target_recall : float
        Settings of the strategies, as in ``evaluation.threshold``.

    Returns
    -------
    ThresholdChoice
        The strategy, the threshold and the criterion value on the validation rows.
    """
    _check_settings(strategy, value, cost_fp, cost_fn, target_recall)
    y01, p1 = _check_arrays(y01, p1)
    if strategy == "fixed":
        return ThresholdChoice("fixed", float(value), "f1", _f1_at(y01, p1, float(value)))
    if strategy in ("max_f1", "target_recall") and not np.any(y01 == 1):
        raise DataError(
            f"evaluation.threshold.strategy={strategy} needs positive rows in the validation split; it has none"
        )
    table = threshold_table(y01, p1)
    if strategy == "max_f1":
        best = _last_best(table["f1"] == table["f1"].max())
        return ThresholdChoice("max_f1", float(table["threshold"][best]), "f1", float(table["f1"][best]))
    if strategy == "cost":
        cost = cost_fp * table["fp"] + cost_fn * table["fn"]
        best = _last_best(cost == cost.min())
        return ThresholdChoice("cost", float(table["threshold"][best]), "cost", float(cost[best]))
    # target_recall: recall only falls as the threshold rises, and the lowest candidate has recall 1.
    best = _last_best(table["recall"] >= target_recall)
    return ThresholdChoice("target_recall", float(table["threshold"][best]), "recall", float(table["recall"][best]))


def _last_best(is_best: np.ndarray) -> int:
    # The table is sorted by increasing threshold, so the last match is the highest threshold.
    return int(np.flatnonzero(is_best)[-1])


def _f1_at(y01: np.ndarray, p1: np.ndarray, threshold: float) -> float:
    predicted = p1 >= threshold
    tp = float(np.sum(predicted & (y01 == 1)))
    denominator = float(np.sum(predicted)) + float(np.sum(y01))
    return 2 * tp / denominator if denominator > 0 else 0.0


def _check_settings(strategy: str, value: float, cost_fp: float, cost_fn: float, target_recall: float) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"evaluation.threshold.strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"evaluation.threshold.value must lie in [0, 1], got {value}")
    if cost_fp < 0 or cost_fn < 0 or not np.isfinite(cost_fp + cost_fn):
        raise ConfigError(f"evaluation.threshold.cost_fp and cost_fn must be finite and >= 0, got {cost_fp}, {cost_fn}")
    if not 0.0 < target_recall <= 1.0:
        raise ConfigError(f"evaluation.threshold.target_recall must lie in (0, 1], got {target_recall}")


def _check_arrays(y01: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y01 = np.asarray(y01)
    p1 = np.asarray(p1, dtype=np.float64)
    if y01.ndim != 1 or p1.ndim != 1 or len(y01) != len(p1):
        raise DataError(
            f"threshold selection needs 1-d labels and probabilities of equal length, got {y01.shape}, {p1.shape}"
        )
    if len(y01) == 0:
        raise DataError("cannot choose a threshold on an empty validation split")
    if not np.all(np.isfinite(p1)):
        raise DataError("validation probabilities contain NaN or infinite values")
    if not np.all((y01 == 0) | (y01 == 1)):
        raise DataError("threshold selection needs binary labels (0 or 1)")
    return y01.astype(np.int64), p1
