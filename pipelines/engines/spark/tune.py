"""Tuning on Spark: the shared trials as param maps fitted by ``Estimator.fitMultiple`` in parallel threads.

``TrainValidationSplit`` and ``CrossValidator`` fit their param maps with ``fitMultiple`` on a
pool of ``parallelism`` threads (each thread submits its own Spark jobs) and score them with a
Spark evaluator on a split they draw with ``rand()``. scaleclf keeps that parallel fitting but
scores on the fixed valid split (the rows every engine validates on, found by row key) with the
shared metrics, so a Spark trial's score equals what any other engine reports for the same model:
TrainValidationSplit's own random split and evaluator would make Spark's trials incomparable.

The trials are the shared parameter sets (``pipelines.tuning.make_trials``); each becomes a param
map on one estimator (the params where its estimator differs from the base one, OneVsRest's inner
classifier included). The shared features are computed and cached once for every trial.
xgboost.spark trains as a barrier stage holding every task slot, so its trials run one at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from multiprocessing.pool import ThreadPool
from typing import Any

from pipelines.engines.base import EngineModel, FitContext
from pipelines.errors import ConfigError, EngineError
from pipelines.tuning import Trial, is_better, trial_contexts


def param_map(base: Any, trial: Any) -> dict[Any, Any]:
    """Return the params (of ``base``) whose values ``trial`` sets differently."""
    theirs = trial.extractParamMap()
    ours = base.extractParamMap()
    out = {}
    for param, value in theirs.items():
        mine = base.getParam(param.name)
        if mine not in ours or (ours[mine] is not value and ours[mine] != value):
            out[mine] = value
    return out


def tune_on_spark(
    engine: Any,
    data: Any,
    ctx: FitContext,
    tuning: Any,
    score: Callable[[EngineModel, FitContext], dict[str, Any]],
    on_trial: Callable[[Trial], None] | None = None,
) -> tuple[EngineModel, FitContext, list[Trial]]:
    """Return the best model, its context and every trial (in trial order)."""
    from pyspark.ml import PipelineModel

    from pipelines.engines.spark.engine import SparkModel, spark_reason

    searched, contexts = trial_contexts(tuning, ctx)
    base = engine.estimator(ctx)
    maps = [param_map(base, engine.estimator(c)) for c in contexts]
    parallel = 1 if ctx.model.name == "xgboost" else max(1, min(int(tuning.parallelism), len(maps)))
    engine.last_tune = {
        "method": "Estimator.fitMultiple (TrainValidationSplit's parallel fitting) scored on the fixed valid split",
        "trials": len(maps),
        "parallelism": parallel,
    }
    features, train = engine.train_frame(data, ctx)
    fits = base.fitMultiple(train, maps)
    results: dict[int, tuple[EngineModel, dict[str, Any], float]] = {}

    def one(_: int) -> tuple[int, str | None]:
        start = time.perf_counter()
        try:
            index, fitted = next(fits)
        except StopIteration:
            return -1, None
        except (ConfigError, EngineError):
            raise
        except Exception as exc:  # the trial's fit failed: keep going, report it
            return -2, spark_reason(exc)
        fit_s = time.perf_counter() - start
        model = SparkModel(PipelineModel(stages=[features, fitted]), contexts[index])
        results[index] = (model, score(model, contexts[index]), fit_s)
        return index, None

    try:
        with ThreadPool(parallel) as pool:
            outcomes = pool.map(one, range(len(maps)))
    finally:
        train.unpersist()
    errors = [why for index, why in outcomes if why]
    trials: list[Trial] = []
    best: tuple[EngineModel, FitContext, float | None] | None = None
    for number, params in enumerate(searched):
        trial = Trial(number, params)
        if number not in results:
            trial.status = "failed"
        else:
            model, metrics, fit_s = results[number]
            trial.metrics, trial.fit_s = metrics, fit_s
            trial.score = metrics.get(tuning.metric)
            if best is None or is_better(tuning.metric, trial.score, best[2]):
                best = (model, contexts[number], trial.score)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    if best is None:
        raise EngineError(f"engine spark: every tuning trial failed ({errors[0] if errors else 'no trial ran'})")
    return best[0], best[1], trials
