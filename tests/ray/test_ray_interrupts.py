"""SIGINT and SIGTERM during a Ray Train fit: one line, exit 130, no run directory, no Ray process left.

Ray Train v2's own SIGINT handler once made the command exit 1 without a word, and our handler
raising inside ``ray.get`` was swallowed until the fit ended (minutes); see
``pipelines/engines/ray/internals.py``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.interrupts import interrupt_fit

CASES = [
    # Ctrl-C: SIGINT to the whole process group (the driver, Ray's GCS, raylet and workers); XGBoostTrainer.
    pytest.param(signal.SIGINT, "xgboost", {"n_estimators": 400}, True, id="Ctrl-C-xgboost"),
    # kill: SIGTERM to the driver alone; DataParallelTrainer.
    pytest.param(
        signal.SIGTERM,
        "logistic_regression",
        {"max_iter": 5000, "tol": 1e-12},
        False,
        id="SIGTERM-logistic_regression",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("sig", "model", "params", "group"), CASES)
def test_an_interrupted_ray_train_fit_stops_at_once_and_leaves_nothing(
    sig: int, model: str, params: dict, group: bool, tmp_path: Path
) -> None:
    # The signal waits for the run's Train controller, then 3 s: the workers are in their loop.
    done = interrupt_fit(tmp_path, "ray", sig, model=model, params=params, fitting="TrainController", group=group)
    assert (done.code, done.err) == (130, ["error: interrupted"])
    assert done.left == []
    assert done.stray == []  # ray.init's GCS, raylet, workers, the controller: all gone
    assert done.exit_s < 30, done.exit_s
