"""Integration: a standalone cluster from infra/spark, and spark-submit jobs/spark_train.py against it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.spark.conftest import INFRA


@pytest.mark.integration
@pytest.mark.parametrize(
    ("model", "params"), [("xgboost", {"n_estimators": 10}), ("rff_svm", {"n_components": 50, "max_iter": 100})]
)
def test_spark_submit_on_standalone_cluster(
    spark_cluster: dict[str, str], tmp_path: Path, model: str, params: dict[str, int]
) -> None:
    spec = {
        "name": "cluster",
        "seed": 3,
        "data": {"source": "synthetic:higgs", "rows": 2000, "label": "label"},
        "model": {"name": model, "params": params},
        "engine": {"name": "spark"},
        "output": {"dir": str(tmp_path / "runs"), "report": False},
    }
    config = tmp_path / "spec.yaml"
    config.write_text(yaml.safe_dump(spec))
    master = spark_cluster["SPARK_MASTER"]
    done = subprocess.run(
        [str(INFRA / "submit.sh"), "--master", master, str(config), "--quiet"],
        env=spark_cluster,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = Path(done.stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["engine_info"]["master"] == master
    assert metrics["rows"]["total"] == 2000 and metrics["test"]["auc"] > 0.6
    for name in ("spec.yaml", "predictions.parquet", "model/manifest.json", "model/spark_model/metadata/_SUCCESS"):
        assert (run / name).exists(), name
