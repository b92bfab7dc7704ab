"""``ray job submit`` to the loopback cluster trains xgboost and rff_svm and leaves run directories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.run import train
from pipelines.spec import build_spec
from tests.conftest import terminal_noise
from tests.ray.conftest import job_spec


@pytest.mark.integration
@pytest.mark.parametrize("model", ["xgboost", "rff_svm"])
def test_submitted_job_leaves_a_run_matching_local(submitted_runs: dict[str, Path], tmp_path: Path, model: str) -> None:
    run_dir = submitted_runs[model]
    for name in ("metrics.json", "predictions.parquet", "spec.yaml", "model/manifest.json", "model/preprocess.json"):
        assert (run_dir / name).is_file(), name
    ours = json.loads((run_dir / "metrics.json").read_text())
    assert ours["engine"] == "ray" and ours["engine_info"]["address"] == "auto"
    local_spec: dict[str, Any] = job_spec(model, tmp_path)
    local_spec["engine"] = {"name": "local"}
    reference = json.loads((train(build_spec(local_spec)) / "metrics.json").read_text())
    assert abs(ours["test"]["auc"] - reference["test"]["auc"]) <= 0.01


@pytest.mark.integration
def test_predict_reloads_the_submitted_model(
    ray_address: str, submitted_runs: dict[str, Path], tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.data.sources import resolve_source

    run_dir = submitted_runs["xgboost"]
    assert (run_dir / "model" / "xgboost.json").is_file()
    out = tmp_path / "scored.parquet"
    # The run's spec says engine.address=auto: RAY_ADDRESS points "auto" at the test cluster.
    monkeypatch.setenv("RAY_ADDRESS", ray_address)
    source = resolve_source("synthetic:higgs", rows=5000).paths[0]
    result = cli("predict", run_dir, "--data", source, "--out", out)
    assert result.code == 0, result.err
    saved = pq.read_table(run_dir / "predictions.parquet").to_pandas().set_index("row_key")
    again = pq.read_table(out).to_pandas().set_index("row_key").loc[saved.index]
    assert np.allclose(again["proba_1"], saved["proba_1"], atol=1e-6)


@pytest.mark.integration
def test_ray_train_on_the_cluster_prints_only_progress(ray_address: str, tmp_path: Path) -> None:
    import yaml

    spec = job_spec("logistic_regression", tmp_path / "runs", address=ray_address)
    spec["engine"]["workers"] = 1
    config = tmp_path / "spec.yaml"
    config.write_text(yaml.safe_dump(spec))
    exe = Path(sys.executable).with_name("scaleclf")
    done = subprocess.run([exe, "train", config], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert terminal_noise(done.stderr) == []  # Ray's FutureWarning and worker logs go to logs/
    run = Path(done.stdout.strip())
    assert done.stdout.strip().splitlines() == [str(run)]
    assert (run / "logs" / "scaleclf.log").is_file()
