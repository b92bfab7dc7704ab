"""Integration: a standalone cluster from infra/spark, and spark-submit jobs/spark_train.py against it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import terminal_noise
from tests.spark.conftest import INFRA

MODELS = {"xgboost": {"n_estimators": 10}, "rff_svm": {"n_components": 50, "max_iter": 100}}


@pytest.mark.integration
def test_spark_submit_on_standalone_cluster(spark_cluster: dict[str, str], tmp_path: Path) -> None:
    # One spark-submit (one application, one JVM and executor start) trains both acceptance
    # models, one spec after the other, as the 1M-row acceptance run does at full size.
    configs = []
    for model, params in MODELS.items():
        spec = {
            "name": f"cluster-{model}",
            "seed": 3,
            "data": {"source": "synthetic:higgs", "rows": 2000, "label": "label"},
            "model": {"name": model, "params": params},
            "engine": {"name": "spark"},
            "output": {"dir": str(tmp_path / "runs"), "report": False},
        }
        config = tmp_path / f"{model}.yaml"
        config.write_text(yaml.safe_dump(spec))
        configs.append(str(config))
    master = spark_cluster["SPARK_MASTER"]
    done = subprocess.run(
        [str(INFRA / "submit.sh"), "--master", master, *configs],
        env=spark_cluster,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Progress on stderr, nothing else there (Spark's log is in each run's logs/); only the runs on stdout.
    assert terminal_noise(done.stderr) == []
    assert sum(line.startswith("✓ fitted") for line in done.stderr.splitlines()) == len(MODELS)
    runs = [Path(line) for line in done.stdout.strip().splitlines()]
    assert len(runs) == len(MODELS)
    for model, run in zip(MODELS, runs, strict=True):
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["model"] == model and metrics["engine"] == "spark"
        assert metrics["engine_info"]["master"] == master
        assert metrics["rows"]["total"] == 2000 and metrics["test"]["auc"] > 0.6, model
        for name in ("spec.yaml", "predictions.parquet", "model/manifest.json", "model/spark_model/metadata/_SUCCESS"):
            assert (run / name).exists(), (model, name)
        assert json.loads((run / "model" / "manifest.json").read_text())["model"] == model
        assert " INFO DAGScheduler: " in (run / "logs" / "spark-driver.log").read_text()
