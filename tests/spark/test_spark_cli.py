"""``scaleclf`` with the Spark engine: class weights, predict reloads the model, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO, base_spec, terminal_noise


def _spec(tmp_path: Path, model: str, **extra: object) -> Path:
    spec = base_spec("synthetic:imbalanced", model=model, rows=2000)
    spec["engine"] = {"name": "spark", "workers": 2}
    spec["output"]["dir"] = str(tmp_path / "runs")
    spec["model"].update(extra)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_spark_predict_reproduces_test_predictions(cli, tmp_path: Path) -> None:
    config = _spec(tmp_path, "linear_svm", class_weight="balanced", params={"max_iter": 50})
    trained = cli("train", config, "--quiet")
    assert trained.code == 0, trained.err
    run = Path(trained.last_line)
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    assert manifest["engine"] == "spark" and manifest["native_format"] == "Spark ML PipelineModel"
    assert manifest["class_weights"] is not None
    out = tmp_path / "pred.parquet"
    scored = cli("predict", run, "--data", "synthetic:imbalanced", "--out", out)
    assert scored.code == 0, scored.err
    before = pq.read_table(run / "predictions.parquet").to_pandas().sort_values("row_key")
    after = pq.read_table(out).to_pandas().sort_values("row_key")
    assert before["row_key"].tolist() == after["row_key"].tolist()
    proba = [c for c in before.columns if c.startswith("proba_")]
    np.testing.assert_allclose(after[proba].to_numpy(), before[proba].to_numpy(), atol=1e-9)


def test_spark_unreachable_master_is_one_line(tmp_path: Path) -> None:
    # A fresh process: inside this one the package session is active and would be reused.
    config = _spec(tmp_path, "logistic_regression")
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "train", str(config), "--set", "engine.address=spark://127.0.0.1:7099"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        "error: engine.address: cannot reach the Spark master spark://127.0.0.1:7099 (Connection refused);"
        " is it running?"
    ]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_spark_too_many_workers_and_unknown_option(cli, tmp_path: Path) -> None:
    config = _spec(tmp_path, "xgboost")
    result = cli("train", config, "--set", "engine.workers=64", "--set", "model.params.n_estimators=5")
    assert result.code == 4
    assert "engine.workers: 64 workers asked for but the Spark cluster runs" in result.err
    result = cli("train", config, "--set", "engine.options.colour=blue")
    assert result.code == 2
    assert "engine.options.colour: unknown option for spark" in result.err
    result = cli("train", config, "--set", "engine.options.gbt_multiclass=ova")
    assert result.code == 2
    assert result.err.strip().splitlines()[-1] == (
        "error: config error: engine.options.gbt_multiclass: 'ova' is not allowed (allowed: softmax, ovr)"
    )


def test_spark_tuning_reports_every_trial(cli, tmp_path: Path) -> None:
    config = _spec(tmp_path, "logistic_regression")
    result = cli(
        "train",
        config,
        "--quiet",
        "--set",
        "tuning.enabled=true",
        "--set",
        "tuning.method=grid",
        "--set",
        "tuning.space={C: [0.0001, 0.01, 1.0]}",
        "--set",
        "tuning.parallelism=2",
    )
    assert result.code == 0, result.err
    run_dir = Path(result.last_line)
    tuning = json.loads((run_dir / "tuning.json").read_text())
    trials = tuning["trials"]
    assert [t["params"] for t in trials] == [{"C": 0.0001}, {"C": 0.01}, {"C": 1.0}]
    assert all(t["status"] == "ok" and t["valid"]["auc"] == t["score"] for t in trials)
    # Each param map really fitted its own C: the strongest penalty scores apart from the weakest.
    assert trials[0]["valid"]["log_loss"] != trials[2]["valid"]["log_loss"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["engine_info"]["tune"]["parallelism"] == 2
    assert "fitMultiple" in metrics["engine_info"]["tune"]["method"]
    # The kept model is the best trial's: its valid AUC is the best trial score.
    assert metrics["valid"]["auc"] == pytest.approx(max(t["score"] for t in trials), abs=1e-9)


def test_spark_train_prints_only_progress_and_logs_the_jvm_to_the_run(tmp_path: Path) -> None:
    # A fresh process, so the engine starts its own JVM with the log4j settings it passes.
    config = _spec(tmp_path, "logistic_regression")
    exe = Path(sys.executable).with_name("scaleclf")
    done = subprocess.run([exe, "train", config], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert terminal_noise(done.stderr) == []
    run = Path(done.stdout.strip())
    assert done.stdout.strip().splitlines() == [str(run)]
    driver_log = (run / "logs" / "spark-driver.log").read_text()
    assert " INFO " in driver_log or " WARN " in driver_log
