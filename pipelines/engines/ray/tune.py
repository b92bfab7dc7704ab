"""Ray Tune for the Ray engine: the shared trials scheduled as Tune trials, each fitting on Ray Train.

Every trial is a Tune function that fits its parameter set with the engine's own Ray Train
path and scores it with the shared ``score`` (valid split, same metrics as every engine).
The trial function itself holds no CPU; its Ray Train workers do, and at most as many trials
run at once as there are CPUs for their workers, so trials never hold placement groups that
starve each other's workers. Trials report once, when their fit is scored, so ASHA (the
scheduler) can only stop trials between rungs, not inside a Ray Train fit.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.engines.base import EngineModel, FitContext
from pipelines.tuning import LOWER_IS_BETTER, Trial, is_better, trial_contexts


def tune_on_ray(
    engine: Any,
    data: Any,
    ctx: FitContext,
    tuning: Any,
    score: Callable[[EngineModel, FitContext], dict[str, Any]],
    on_trial: Callable[[Trial], None] | None = None,
) -> tuple[EngineModel, FitContext, list[Trial]]:
    """Return the best model, its context and every trial, scheduled by Ray Tune with ASHA."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    searched, contexts = trial_contexts(tuning, ctx)
    per_trial = engine.workers * engine.cpus_per_worker()
    concurrent = max(1, min(tuning.parallelism, int(engine.cpus // per_trial)))
    mode = "min" if tuning.metric in LOWER_IS_BETTER else "max"
    engine.last_tune = {"scheduler": "ASHAScheduler", "trials": len(searched), "concurrent": concurrent}

    storage = tempfile.mkdtemp(prefix="scaleclf-ray-tune-")

    def run_trial(config: dict[str, Any]) -> None:
        trial_ctx = contexts[config["number"]]
        start = time.perf_counter()
        model = engine.fit(data, trial_ctx)
        fit_s = time.perf_counter() - start
        metrics = score(model, trial_ctx)
        value = metrics.get(tuning.metric)
        with tempfile.TemporaryDirectory(prefix="scaleclf-trial-") as tmp:
            model.save(Path(tmp))
            tune.report(
                {
                    "score": value if value is not None else float("nan"),
                    "fit_s": fit_s,
                    "valid": metrics,
                    "kind": model.kind,
                },
                checkpoint=tune.Checkpoint.from_directory(tmp),
            )

    # No CPU for the trial itself (its workers hold them); Tune needs some resource, so one byte.
    trainable = tune.with_resources(run_trial, {"CPU": 0, "memory": 1})
    tuner = tune.Tuner(
        trainable,
        param_space={"number": tune.grid_search(list(range(len(searched))))},
        tune_config=tune.TuneConfig(
            metric="score", mode=mode, scheduler=ASHAScheduler(), max_concurrent_trials=concurrent
        ),
        run_config=tune.RunConfig(storage_path=storage, name="scaleclf-tune", verbose=0),
    )
    try:
        results = engine._run("tuning with Ray Tune", tuner.fit)
        # Models are read back from the trials' checkpoints, which live under ``storage``.
        return _collect_trials(engine, results, searched, contexts, tuning, on_trial)
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def _collect_trials(
    engine: Any,
    results: Any,
    searched: list[dict[str, Any]],
    contexts: list[FitContext],
    tuning: Any,
    on_trial: Callable[[Trial], None] | None,
) -> tuple[EngineModel, FitContext, list[Trial]]:
    """Return the best model, its context and every trial, in trial order."""
    trials: list[Trial] = []
    best: tuple[EngineModel, FitContext, float | None] | None = None
    for result in sorted(results, key=lambda r: r.config["number"]):
        number = result.config["number"]
        trial = Trial(number, searched[number])
        if result.error is not None or result.checkpoint is None:
            trial.status = "failed"
        else:
            trial.metrics = result.metrics["valid"]
            trial.score = trial.metrics.get(tuning.metric)
            trial.fit_s = float(result.metrics["fit_s"])
            with result.checkpoint.as_directory() as directory:
                model = engine.load_model(Path(directory), contexts[number], result.metrics["kind"])
            if best is None or is_better(tuning.metric, trial.score, best[2]):
                best = (model, contexts[number], trial.score)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    if best is None:
        from pipelines.errors import EngineError

        raise EngineError("ray: every Ray Tune trial failed")
    return best[0], best[1], trials
