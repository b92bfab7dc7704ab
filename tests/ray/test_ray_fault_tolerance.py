"""A training worker killed mid-fit is replaced and training resumes from the last checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.run import train
from pipelines.spec import build_spec
from tests.ray.conftest import job_spec


def test_killed_worker_resumes_from_checkpoint(
    ray_address: str, submitted_runs: dict[str, Path], tmp_path: Path
) -> None:
    flag = tmp_path / "killed.pid"
    spec = job_spec("xgboost", tmp_path, ray_address, fail_at={"at": 25, "flag": str(flag)})
    killed = train(build_spec(spec))
    assert flag.is_file(), "the worker was never killed"
    ours = json.loads((killed / "metrics.json").read_text())
    # The uninterrupted reference: the same spec trained by the submitted job.
    reference = json.loads((submitted_runs["xgboost"] / "metrics.json").read_text())
    # Resumed from a checkpoint (every 10 rounds; the one at 20 may not be registered yet
    # when the worker dies at 25), not from scratch, and ended with all 40 rounds.
    resumed = ours["engine_info"]["last_fit"]
    assert resumed["resumed_from"] in (10, 20) and resumed["round"] == 40
    assert abs(ours["test"]["auc"] - reference["test"]["auc"]) <= 0.005
