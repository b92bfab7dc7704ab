"""jobs/dask_train.py against the scheduler + 2 workers that infra/dask/start.sh started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, terminal_noise

pytestmark = pytest.mark.integration

RUN_FILES = [
    "spec.yaml",
    "metrics.json",
    "predictions.parquet",
    "model/manifest.json",
    "model/preprocess.json",
    "logs/scaleclf.log",
]


@pytest.mark.parametrize(
    ("model", "params", "native"),
    [
        ("xgboost", ["model.params.n_estimators=40"], "model/xgboost.json"),
        ("rff_svm", ["model.params.n_components=200"], "model/network.json"),
    ],
)
def test_dask_train_writes_a_run_directory_on_the_infra_cluster(
    model: str, params: list[str], native: str, dask_address: str, tmp_path: Path
) -> None:
    sets = ["data.rows=20000", f"model.name={model}", f"output.dir={tmp_path / 'runs'}", "output.report=false"]
    cmd = [sys.executable, str(REPO / "jobs" / "dask_train.py"), str(REPO / "conf" / "dask_higgs.yaml")]
    cmd += ["--address", dask_address]
    for item in sets + params:
        cmd += ["--set", item]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert terminal_noise(done.stderr) == []  # distributed's and xgboost's lines go to logs/
    run_dir = Path(done.stdout.strip())
    assert done.stdout.strip().splitlines() == [str(run_dir)]
    for name in [*RUN_FILES, native]:
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["engine"] == "dask" and metrics["model"] == model
    assert metrics["engine_info"]["cluster"] == "external" and metrics["engine_info"]["workers"] == 2
    assert metrics["rows"]["total"] == 20000 and metrics["test"]["auc"] > 0.7
