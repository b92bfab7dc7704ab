"""Pipelines as Dagster assets: caching, resume after a kill, retries, the registry, pyfunc equality, retraining."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO

pytest.importorskip("dagster")
mlflow = pytest.importorskip("mlflow")

STAGES = ["data", "train/logreg", "train/naive_bayes", "compare", "champion", "register", "score", "drift", "retrain"]


def write_pipeline(path: Path, **changes: object) -> Path:
    """Write a small local pipeline (two candidates, shifted new data) with ``changes`` on top."""
    spec: dict = {
        "name": "tiny",
        "job": {"seed": 3, "data": {"source": "synthetic:higgs", "rows": 3000}, "output": {"report": False}},
        "candidates": {
            "logreg": {"model": {"name": "logistic_regression"}},
            "naive_bayes": {"model": {"name": "naive_bayes"}},
        },
        "new_data": {"source": "synthetic:higgs?shift=2", "rows": 2000, "generator_seed": 5},
        "retries": {"max_retries": 2, "delay_s": 0.05},
    }
    spec.update(changes)
    path.write_text(yaml.safe_dump(spec))
    return path


def outcome(err: str) -> dict[str, str]:
    """Return stage -> "up to date" or the stage's summary from the per-stage progress lines."""
    found = {}
    for line in err.splitlines():
        if line.startswith("✓ ") and ": " in line and not line.startswith("✓ every"):
            stage, _, text = line[2:].partition(": ")
            found[stage] = "up to date" if text == "up to date" else text
    return found


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Return the directory, spec file and stderr of one full run of the small pipeline."""
    tmp = tmp_path_factory.mktemp("pipeline")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    config = write_pipeline(tmp / "tiny.yaml")
    out = tmp / "out"
    stderr = tmp / "stderr.txt"
    with open(stderr, "w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "jobs.cli", "pipeline", "run", str(config), "--out", str(out)],
            cwd=REPO,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            stdout=subprocess.PIPE,
            stderr=fh,
            text=True,
            timeout=600,
        )
    err = stderr.read_text()
    assert done.returncode == 0, err[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(out)
    return {"out": out, "config": config, "err": err, "uri": uri}


def test_every_stage_runs_and_prints_its_outcome(first_run: dict) -> None:
    found = outcome(first_run["err"])
    assert list(found) == STAGES
    assert all(v != "up to date" for v in found.values())
    assert "MLflow run" in found["train/logreg"] and "models:/" in found["train/logreg"]
    assert found["register"].startswith("models:/tiny@champion is version 1 (first_champion)")
    assert found["drift"].startswith("drift: ")  # new data shifted by shift=2


def test_champion_is_the_best_on_valid_and_the_registry_serves_it(first_run: dict, tmp_path: Path, cli) -> None:
    import json

    out = first_run["out"]
    compare = json.loads((out / "compare.json").read_text())
    champion = json.loads((out / "assets" / "champion.json").read_text())
    assert champion["value"] == max(r["valid_auc"] for r in compare)
    mlflow.set_tracking_uri(first_run["uri"])
    mlflow.set_registry_uri(first_run["uri"])
    version = mlflow.MlflowClient().get_model_version_by_alias("tiny", "champion")
    assert str(version.version) == "1"
    # Acceptance: models:/NAME@champion predicts what scaleclf predict writes for that run, to 1e-9.
    source = pq.read_table(json.loads((out / "assets" / "score.json").read_text())["path"])
    new_data = pq.ParquetDataset(str(_new_data_dir())).read()
    expected = tmp_path / "p.parquet"
    result = cli("predict", champion["run_dir"], "--data", _new_data_dir(), "--out", expected, "-q")
    assert result.code == 0, result.err
    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    got = model.predict(new_data.to_pandas())
    want = pq.read_table(expected)
    for cls in ("0", "1"):
        np.testing.assert_allclose(got[f"proba_{cls}"], want.column(f"proba_{cls}").to_numpy(), rtol=0, atol=1e-9)
    assert list(got["prediction"]) == want.column("prediction").to_pylist()
    # The score stage wrote the same predictions (label kept: the synthetic new data are labelled).
    np.testing.assert_allclose(source.column("proba_1").to_numpy(), want.column("proba_1").to_numpy(), atol=1e-12)
    native = mlflow.pyfunc.load_model(f"runs:/{champion['mlflow_run_id']}/native_model")
    assert native.metadata.flavors.keys() >= {"python_function"}


def _new_data_dir() -> Path:
    from pipelines.data.sources import cache_root

    return cache_root() / "synthetic" / "higgs-shift2-rows2000-seed5-v1"


def test_drift_report_and_status(first_run: dict, cli) -> None:
    import json

    drift = json.loads((first_run["out"] / "drift" / "drift.json").read_text())
    assert drift["verdict"] == "drift" and drift["thresholds"]["alpha"] == 0.01
    assert {f["name"] for f in drift["features"] if f["drifted"]} >= {"lepton_pt", "m_bb"}
    assert drift["live"]["metric"] == "auc" and drift["live"]["rows"] == 2000
    assert (first_run["out"] / "drift" / "plots" / "psi.png").is_file()
    assert "Verdict: drift" in (first_run["out"] / "drift" / "drift.html").read_text()
    result = cli("pipeline", "status", first_run["out"])
    assert result.code == 0, result.err
    lines = {line.split()[0]: line.split()[1] for line in result.out.splitlines() if not line.startswith(" ")}
    assert lines == dict.fromkeys(STAGES, "fresh")


def test_a_rerun_is_up_to_date_and_a_changed_candidate_retrains_alone(
    first_run: dict, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first_run["uri"])
    args = ["pipeline", "run", first_run["config"], "--out", first_run["out"]]
    again = cli(*args)
    assert again.code == 0, again.err
    assert outcome(again.err) == dict.fromkeys(STAGES, "up to date")
    assert "every stage is up to date" in again.err
    changed = cli(*args, "--set", "candidates.logreg.model.params.C=0.01")
    assert changed.code == 0, changed.err
    found = outcome(changed.err)
    assert found["data"] == found["train/naive_bayes"] == "up to date"
    assert found["train/logreg"] != "up to date" and found["compare"] != "up to date"
    # New data (another content hash) make what reads them stale, and nothing upstream.
    fresh = cli(*args, "--set", "candidates.logreg.model.params.C=0.01", "--set", "new_data.generator_seed=6")
    assert fresh.code == 0, fresh.err
    found = outcome(fresh.err)
    assert all(found[s] == "up to date" for s in STAGES[:6]), found
    assert all(found[s] != "up to date" for s in ("score", "drift", "retrain")), found


def test_kill_during_a_train_stage_then_rerun_recomputes_only_what_did_not_finish(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = write_pipeline(
        tmp_path / "kill.yaml",
        name="kill",
        candidates={
            "a_fast": {"model": {"name": "logistic_regression"}},
            "b_slow": {
                "model": {"name": "xgboost", "params": {"n_estimators": 3000, "max_depth": 8}},
                "engine": {"workers": 1},
            },
        },
        new_data=None,
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jobs.cli", "pipeline", "run", str(config), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("✓ train/a_fast:"):
                break
        deadline = time.monotonic() + 120
        while not list((out / "runs" / "b_slow").glob(".*.tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "the slow candidate finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # The killed candidate reruns (here with fewer trees, to keep the test short); the finished one does not.
    again = cli("pipeline", "run", config, "--out", out, "--set", "candidates.b_slow.model.params.n_estimators=40")
    assert again.code == 0, again.err
    found = outcome(again.err)
    assert found["data"] == found["train/a_fast"] == "up to date"
    assert all(found[s] != "up to date" for s in ("train/b_slow", "compare", "champion", "register"))
    assert "was interrupted" in again.err


def test_engine_errors_retry_with_backoff_and_other_errors_do_not(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    unreachable = {
        "model": {"name": "logistic_regression"},
        "engine": {"name": "dask", "address": "tcp://127.0.0.1:9", "options": {"timeout": 1}},
    }
    config = write_pipeline(tmp_path / "retry.yaml", name="retry", candidates={"remote": unreachable}, new_data=None)
    result = cli("pipeline", "run", config, "--out", tmp_path / "a")
    assert result.code == 4, result.err
    assert result.err.count("cannot reach the Dask scheduler at tcp://127.0.0.1:9") == 3 + 1  # 3 tries + the error
    assert result.err.strip().splitlines()[-1].startswith("error: stage train/remote failed after retries:")
    bad_weights = {"model": {"name": "logistic_regression", "class_weight": {"7": 2.0}}}
    config = write_pipeline(tmp_path / "bad.yaml", name="bad", candidates={"weights": bad_weights}, new_data=None)
    result = cli("pipeline", "run", config, "--out", tmp_path / "b")
    assert result.code == 2, result.err
    assert "warning" not in result.err  # never retried
    assert result.err.strip().splitlines()[-1].startswith("error: stage train/weights failed: config error")


def test_retraining_promotes_a_better_challenger_and_keeps_a_worse_one(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name, champion, challenger in (("up", "naive_bayes", "xgboost"), ("down", "xgboost", "naive_bayes")):
        config = write_pipeline(
            tmp_path / f"{name}.yaml",
            name=name,
            candidates={"only": {"model": {"name": champion}}},
            retrain={"when": "always", "set": [f"model.name={challenger}"]},
        )
        result = cli("pipeline", "run", config, "--out", tmp_path / name)
        assert result.code == 0, result.err
        retrain = json.loads((tmp_path / name / "assets" / "retrain.json").read_text())
        duel = retrain["duel"]
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client = mlflow.MlflowClient()
        aliases = {a: str(client.get_model_version_by_alias(name, a).version) for a in ("champion",)}
        if name == "up":
            assert retrain["action"] == "promoted" and duel["challenger_score"] > duel["champion_score"]
            assert aliases["champion"] == "2"
        else:
            assert retrain["action"] == "kept" and duel["challenger_score"] < duel["champion_score"]
            assert aliases["champion"] == "1"
            assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
        assert duel["rows"] == pq.read_metadata(Path(retrain["challenger_run_dir"]) / "predictions.parquet").num_rows


def test_definitions_load_with_the_dagster_cli(tmp_path: Path) -> None:
    env = {**os.environ, "SCALECLF_PIPELINE": str(REPO / "conf/pipelines/champion.yaml"), "DAGSTER_HOME": str(tmp_path)}
    env["SCALECLF_PIPELINE_OUT"] = str(tmp_path / "out")
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [dagster, "definitions", "validate", "-m", "pipelines.orchestration.definitions"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"candidates": {"x": {"data": {"rows": 10}, "model": {"name": "naive_bayes"}}}}, "data cannot differ"),
        ({"candidates": {}}, "at least one candidate"),
        ({"champion": {"metric": "speed"}}, "champion.metric"),
        ({"candidates": {"x": {"model": {"name": "nope"}}}}, "candidates.x"),
    ],
)
def test_bad_pipeline_specs_name_the_key(tmp_path: Path, cli, change: dict, message: str) -> None:
    result = cli("pipeline", "run", write_pipeline(tmp_path / "bad.yaml", **change), "--out", tmp_path / "o")
    assert result.code == 2 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.slow  # starts dagster-webserver and its code server: about 40 s on two cores
def test_ui_serves_the_pipeline_assets_on_loopback(first_run: dict) -> None:
    import json
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "jobs.cli", "pipeline", "ui", str(first_run["out"]), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
        request = urllib.request.Request(f"{url}/graphql", query, {"Content-Type": "application/json"})
        nodes = json.load(urllib.request.urlopen(request, timeout=60))["data"]["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert set(STAGES) | {"source/training_data", "source/new_data"} <= keys
    finally:
        proc.terminate()
        assert proc.wait(timeout=90) == 143  # the webserver is stopped with it
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/server_info", timeout=2)


def test_a_tuned_candidate_is_a_tune_stage(tmp_path: Path, cli) -> None:
    from pipelines.orchestration.assets import build_assets
    from pipelines.orchestration.spec import load_pipeline

    tuned = {
        "model": {"name": "logistic_regression"},
        "tuning": {"enabled": True, "n_trials": 2, "space": {"C": [0.1, 1]}},
    }
    config = write_pipeline(tmp_path / "t.yaml", candidates={"plain": {"model": {"name": "naive_bayes"}}, "lr": tuned})
    keys = {a.key.to_user_string() for a in build_assets(load_pipeline(config), tmp_path)}
    assert {"tune/lr", "train/plain"} <= keys
    result = cli("pipeline", "status", tmp_path)
    assert result.code == 5 and "is not a pipeline directory" in result.err


def test_unlabelled_new_data_are_scored_with_their_ids_and_not_retrained_on(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import pyarrow as pa

    from pipelines.data.synthetic import write_dataset

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_dataset("higgs?shift=2", 1500, tmp_path / "new.parquet", seed=9)
    table = pq.read_table(tmp_path / "new.parquet").drop_columns(["label"])
    table = table.add_column(0, "event_id", pa.array([f"ev{i}" for i in range(table.num_rows)]))
    pq.write_table(table, tmp_path / "new.parquet")
    config = write_pipeline(
        tmp_path / "u.yaml",
        name="unlabelled",
        candidates={"nb": {"model": {"name": "naive_bayes"}}},
        new_data={"source": str(tmp_path / "new.parquet")},
        retrain={"when": "always"},
    )
    result = cli("pipeline", "run", config, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    scores = pq.read_table(tmp_path / "out" / "scores" / "scores.parquet")
    assert scores.column_names == ["row_key", "event_id", "proba_0", "proba_1", "prediction"]
    assert scores.column("event_id").to_pylist()[:2] == ["ev0", "ev1"] and scores.num_rows == 1500
    drift = json.loads((tmp_path / "out" / "assets" / "drift.json").read_text())
    assert drift["verdict"] == "drift" and drift["live"] is None
    retrain = json.loads((tmp_path / "out" / "assets" / "retrain.json").read_text())
    assert retrain == {"action": "none", "reason": "the new data carry no label column 'label' to train on"}


def test_a_champion_that_no_longer_loads_is_replaced(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = write_pipeline(tmp_path / "c.yaml", name="broken", candidates={"lr": {"model": {"name": "naive_bayes"}}})
    args = ["pipeline", "run", config, "--out", tmp_path / "out", "--set", "new_data=null"]
    assert cli(*args).code == 0
    first = json.loads((tmp_path / "out" / "assets" / "register.json").read_text())
    preprocess = Path(first["champion_run_dir"]) / "model" / "preprocess.json"
    preprocess.write_text(preprocess.read_text() + " ")  # no longer matches its sha256
    again = cli(*args, "--set", "candidates.lr.model.params.var_smoothing=0.000001")
    assert again.code == 0, again.err
    duel = json.loads((tmp_path / "out" / "assets" / "register.json").read_text())["duel"]
    assert duel["decision"] == "promoted" and duel["champion_score"] is None
    assert "cannot be loaded" in duel["note"] and "sha256" in duel["note"]
