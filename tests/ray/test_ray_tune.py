"""Ray Tune through Engine.tune: the shared trials, each reported, the best by the shared score."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.progress import Progress
from pipelines.run import train
from pipelines.spec import build_spec
from pipelines.tuning import make_trials


class Notes(Progress):
    """A quiet Progress that keeps every note (one per reported trial)."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)


def tuning_spec(engine: dict, out: Path) -> dict:
    """Return a 3-trial xgboost grid on 4,000 HIGGS-like rows."""
    return {
        "name": "ray-tune",
        "seed": 3,
        "data": {"source": "synthetic:higgs", "label": "label", "rows": 4000},
        "model": {"name": "xgboost", "params": {"n_estimators": 15}},
        "engine": engine,
        "tuning": {
            "enabled": True,
            "method": "grid",
            "metric": "auc",
            "parallelism": 2,
            "space": {"max_depth": [2, 3, 5]},
        },
        "output": {"dir": str(out), "report": False},
    }


def test_ray_tune_runs_the_shared_trials_and_keeps_the_best(ray_address: str, tmp_path: Path) -> None:
    job = build_spec(tuning_spec({"name": "ray", "address": ray_address, "workers": 1}, tmp_path))
    notes = Notes()
    run_dir = train(job, notes)
    trials = json.loads((run_dir / "tuning.json").read_text())["trials"]
    metrics = json.loads((run_dir / "metrics.json").read_text())

    # Scheduled by Ray Tune (ASHA), not the sequential fallback, over the shared grid in its order.
    assert metrics["engine_info"]["tune"]["scheduler"] == "ASHAScheduler"
    assert [t["params"] for t in trials] == make_trials(job.tuning, job.seed)
    assert [t["trial"] for t in trials] == [0, 1, 2]
    # Every trial finished, was scored on the valid split and reported once.
    assert all(t["status"] == "ok" and t["valid"]["auc"] is not None for t in trials)
    assert sorted(line.split(":")[0] for line in notes.lines if line.startswith("trial ")) == [
        "trial 0",
        "trial 1",
        "trial 2",
    ]
    # The best trial by the shared score is the model that was kept and evaluated.
    best = max(trials, key=lambda t: t["valid"]["auc"])
    assert metrics["params"]["max_depth"] == best["params"]["max_depth"]
    assert abs(metrics["valid"]["auc"] - best["valid"]["auc"]) <= 1e-9

    # The shared run_tuning on the local engine tries the same parameter sets, scores close by.
    local = json.loads((train(build_spec(tuning_spec({"name": "local"}, tmp_path))) / "tuning.json").read_text())
    assert [t["params"] for t in local["trials"]] == [t["params"] for t in trials]
    for ours, reference in zip(trials, local["trials"], strict=True):
        assert abs(ours["valid"]["auc"] - reference["valid"]["auc"]) <= 0.01
