"""Hyper-parameter search: trials drawn from ``tuning.space``, each scored on the valid split."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipelines.engines.base import Engine, EngineModel, FitContext
from pipelines.errors import ConfigError
from pipelines.progress import Progress
from pipelines.spec import TuningSpec

LOWER_IS_BETTER = {"log_loss", "brier", "ece"}


@dataclass
class Trial:
    """One tried parameter set with its validation metrics."""

    number: int
    params: dict[str, Any]  # only the searched parameters
    score: float | None = None
    metrics: dict[str, Any] | None = None
    fit_s: float = 0.0
    status: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        """Return the trial as JSON-ready data."""
        return {
            "trial": self.number,
            "params": self.params,
            "score": self.score,
            "status": self.status,
            "fit_s": round(self.fit_s, 4),
            "valid": self.metrics,
        }


def _sample(key: str, spec: Any, rng: np.random.Generator) -> Any:
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"config error: tuning.space.{key}: the list of values is empty")
        return spec[int(rng.integers(len(spec)))]
    if isinstance(spec, dict) and {"low", "high"} <= set(spec):
        low, high = float(spec["low"]), float(spec["high"])
        if not low < high:
            raise ConfigError(f"config error: tuning.space.{key}: low must be below high")
        if spec.get("log"):
            if low <= 0:
                raise ConfigError(f"config error: tuning.space.{key}: a log range needs low > 0")
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return round(value) if spec.get("int") else value
    raise ConfigError(
        f"config error: tuning.space.{key}: expected a list of values or {{low, high[, log, int]}}, got {spec!r}"
    )


def make_trials(tuning: TuningSpec, seed: int) -> list[dict[str, Any]]:
    """Return the parameter sets to try: the full grid, or ``n_trials`` random draws."""
    space = tuning.space
    if tuning.method == "grid":
        for key, values in space.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"config error: tuning.space.{key}: grid search needs a non-empty list of values")
        keys = list(space)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(space[k] for k in keys))]
    rng = np.random.default_rng([seed, 0x7E5])
    return [{k: _sample(k, v, rng) for k, v in space.items()} for _ in range(tuning.n_trials)]


def trial_contexts(tuning: TuningSpec, ctx: FitContext) -> tuple[list[dict[str, Any]], list[FitContext]]:
    """Return the searched parameter sets and, for each, ``ctx`` with its full resolved params.

    Parameters outside the space keep the spec's values. Every engine tries exactly these.
    """
    searched = make_trials(tuning, ctx.seed)
    contexts = [
        replace(ctx, params=ctx.model.resolve_params({**ctx.params, **s}, prefix="tuning.space")) for s in searched
    ]
    return searched, contexts


def is_better(metric: str, a: float | None, b: float | None) -> bool:
    """Return True when score ``a`` beats ``b`` for ``metric`` (None never wins)."""
    if a is None:
        return False
    if b is None:
        return True
    return a < b if metric in LOWER_IS_BETTER else a > b


def run_tuning(
    engine: Engine,
    data: Any,
    ctx: FitContext,
    tuning: TuningSpec,
    score: Callable[[EngineModel, FitContext], dict[str, Any]],
    on_trial: Callable[[Trial], None] | None = None,
    progress: Progress | None = None,
) -> tuple[EngineModel, FitContext, list[Trial]]:
    """Return the best model, its context and every trial; ``score`` gives valid metrics.

    With ``progress``, a bar counts the trials as they are reported (on any engine, also when
    the engine schedules them itself) with the best score so far.
    """
    searched_sets, contexts = trial_contexts(tuning, ctx)
    with (progress or Progress(quiet=True)).iterations(len(contexts), "tuning trials") as step:
        reported: list[Trial] = []

        def report(trial: Trial) -> None:
            reported.append(trial)
            scores = [t.score for t in reported if t.score is not None]
            best = (min if tuning.metric in LOWER_IS_BETTER else max)(scores) if scores else None
            step(len(reported), **({f"best valid {tuning.metric}": best} if best is not None else {}))
            if on_trial is not None:
                on_trial(trial)

        return _run_trials(engine, data, ctx, tuning, score, report, searched_sets, contexts)


def _run_trials(
    engine: Engine,
    data: Any,
    ctx: FitContext,
    tuning: TuningSpec,
    score: Callable[[EngineModel, FitContext], dict[str, Any]],
    on_trial: Callable[[Trial], None],
    searched_sets: list[dict[str, Any]],
    contexts: list[FitContext],
) -> tuple[EngineModel, FitContext, list[Trial]]:
    scheduled = engine.tune(data, ctx, tuning, score, on_trial)
    if scheduled is not None:
        return scheduled
    trials = []
    best: tuple[EngineModel, FitContext, float | None] | None = None
    for number, (searched, trial_ctx) in enumerate(zip(searched_sets, contexts, strict=True)):
        trial = Trial(number, searched)
        start = time.perf_counter()
        model = engine.fit(data, trial_ctx)
        trial.fit_s = time.perf_counter() - start
        trial.metrics = score(model, trial_ctx)
        trial.score = trial.metrics.get(tuning.metric)
        trials.append(trial)
        on_trial(trial)
        if best is None or is_better(tuning.metric, trial.score, best[2]):
            best = (model, trial_ctx, trial.score)
    assert best is not None
    return best[0], best[1], trials
