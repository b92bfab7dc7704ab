"""The shipped pipeline conf/pipelines/champion.yaml end to end, its Dask candidate on the shared cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("dagster")


def test_shipped_champion_pipeline_runs_then_is_up_to_date(
    dask_address: str, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = REPO / "conf" / "pipelines" / "champion.yaml"
    args = ["pipeline", "run", config, "--out", tmp_path / "p"]
    first = cli(*args, "--set", f"candidates.naive_bayes_dask.engine.address={dask_address}")
    assert first.code == 0, first.err
    assert "train/naive_bayes_dask: naive_bayes on dask" in first.err
    drift = json.loads((tmp_path / "p" / "assets" / "drift.json").read_text())
    retrain = json.loads((tmp_path / "p" / "assets" / "retrain.json").read_text())
    assert drift["verdict"] == "drift" and retrain["action"] in ("promoted", "kept")
    # The Dask model scores in this process (model layer), so identifier columns are kept.
    import pyarrow as pa
    import pyarrow.parquet as pq

    dask_run = json.loads((tmp_path / "p" / "assets" / "train__naive_bayes_dask.json").read_text())["run_dir"]
    frame = pq.read_table(tmp_path / "p" / "data" / "reference.parquet").drop_columns(["label"]).slice(0, 500)
    frame = frame.add_column(0, "event_id", pa.array([f"e{i}" for i in range(500)]))
    pq.write_table(frame, tmp_path / "events.parquet")
    scored = cli("predict", dask_run, "--data", tmp_path / "events.parquet", "--out", tmp_path / "s.parquet")
    assert scored.code == 0, scored.err
    columns = pq.read_table(tmp_path / "s.parquet").column_names
    assert columns == ["row_key", "event_id", "proba_0", "proba_1", "prediction"]
    # engine.address is not part of a stage's code version: another address is still up to date.
    second = cli(*args, "--set", "candidates.naive_bayes_dask.engine.address=tcp://127.0.0.1:1")
    assert second.code == 0, second.err
    assert "every stage is up to date" in second.err
    assert second.err.count(": up to date") == 10
