"""The Dask engine: same rows as the local engine, reload, class weights, refusals, errors.

Parity of every model with the local engine is the conformance matrix's (test_dask_conformance.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.data.schema import make_plan
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN
from pipelines.engines import create_engine
from pipelines.progress import Progress
from pipelines.run import train
from pipelines.spec import build_spec
from tests.conftest import base_spec
from tests.scenarios import Scenario

# Smaller than the shared FAST settings: the same models, a 2-core machine, a 5-minute budget.
PARAMS = {
    "random_forest": {"n_estimators": 50, "max_depth": 10},
    "gbt": {"n_estimators": 20},
    "xgboost": {"n_estimators": 25},
    "decision_tree": {"max_depth": 6},
    "rff_svm": {"n_components": 100},
    "nystroem_svm": {"n_components": 100},
}


def _train(raw: dict, tmp: Path) -> tuple[Path, dict]:
    raw = json.loads(json.dumps(raw))
    if raw["engine"]["name"] == "local":
        # One thread: the same model, and no OpenMP threads waiting on each other on a busy machine.
        raw["engine"]["workers"] = 1
    raw["output"] = {**raw.get("output", {}), "dir": str(tmp / "runs"), "report": False}
    run_dir = train(build_spec(raw), Progress(quiet=True))
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def _on_dask(raw: dict, address: str) -> dict:
    raw = json.loads(json.dumps(raw))
    raw["engine"] = {"name": "dask", "address": address}
    return raw


def _keys(engine_name: str, raw: dict, address: str | None = None) -> pa.Table:
    spec = build_spec({**raw, "engine": {"name": engine_name, "address": address}})
    plan = make_plan(spec.data, spec.seed)
    with create_engine(spec.engine, spec.seed) as engine:
        data = engine.load(plan)
        table = data.table if engine_name == "local" else pa.concat_tables(engine.client.gather(data.tables))
    return table.select([KEY_COLUMN, SPLIT_COLUMN]).sort_by(KEY_COLUMN)


def test_row_keys_and_split_equal_the_local_engine_on_parquet_and_csv(dask_address: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 3000
    table = pa.table(
        {
            "a": pa.array(rng.normal(size=n)),
            "b": pa.array(rng.integers(0, 5, n), mask=rng.random(n) < 0.1),
            "colour": pa.array(rng.choice(["red", "green", "blue"], n), mask=rng.random(n) < 0.1),
            "label": pa.array(rng.integers(0, 2, n)),
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    pacsv.write_csv(table, tmp_path / "rows.csv")
    for name in ("rows.parquet", "rows.csv"):
        raw = base_spec(str(tmp_path / name))
        local, dask = _keys("local", raw), _keys("dask", raw, dask_address)
        assert local.equals(dask), name


def test_predict_reloads_the_saved_model_and_reproduces_the_test_predictions(
    dask_address: str, tmp_path: Path, cli
) -> None:
    for model in ("xgboost", "rff_svm", "decision_tree"):
        raw = _on_dask(
            Scenario("synthetic:multiclass", 2000, model, 0.0, params=PARAMS.get(model, {})).spec(), dask_address
        )
        run_dir, _ = _train(raw, tmp_path / model)
        out = tmp_path / f"{model}.parquet"
        result = cli("predict", run_dir, "--data", "synthetic:multiclass", "--out", out)
        assert result.code == 0, result.err
        saved = pq.read_table(run_dir / "predictions.parquet").sort_by("row_key")
        again = pq.read_table(out).sort_by("row_key")
        assert saved.column("row_key").equals(again.column("row_key"))
        for col in [c for c in saved.column_names if c.startswith("proba_")]:
            np.testing.assert_allclose(saved.column(col).to_numpy(), again.column(col).to_numpy(), atol=1e-9)


def test_class_weights_change_the_model_as_on_the_local_engine(dask_address: str, tmp_path: Path) -> None:
    for model in ("logistic_regression", "linear_svm"):
        raw = Scenario("synthetic:higgs", 4000, model, 0.0).spec()
        raw["model"]["class_weight"] = {"0": 1.0, "1": 3.0}
        _, local = _train(raw, tmp_path / "local")
        _, dask = _train(_on_dask(raw, dask_address), tmp_path / "dask")
        assert abs(dask["test"]["auc"] - local["test"]["auc"]) <= 0.002
        assert abs(dask["test"]["recall"] - local["test"]["recall"]) <= 0.01


def test_mlp_is_refused_at_validation_with_the_reason(cli, tmp_path: Path) -> None:
    spec = tmp_path / "mlp.yaml"
    spec.write_text(json.dumps({**base_spec("builtin:breast_cancer", label="target", model="mlp")}))
    result = cli("train", spec, "--engine", "dask", "--out", tmp_path / "runs")
    assert result.code == 2
    assert "mlp is not supported on engine dask" in result.err and "sequential" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_an_unreachable_scheduler_gives_one_line_and_no_run_directory(cli, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps(base_spec("builtin:breast_cancer", label="target")))
    result = cli(
        "train",
        spec,
        "--engine",
        "dask",
        "--set",
        "engine.address=tcp://127.0.0.1:8799",
        "--set",
        "engine.options.timeout=2",
        "--out",
        tmp_path / "runs",
    )
    assert result.code == 4, result.err
    assert result.err.count("\n") == 1 and "engine.address" in result.err and "127.0.0.1:8799" in result.err
    assert not any((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else True


def test_unknown_engine_option_names_the_key(cli, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps(base_spec("builtin:breast_cancer", label="target")))
    result = cli("train", spec, "--engine", "dask", "--set", "engine.options.thread=2", "--out", tmp_path / "runs")
    assert result.code == 2 and "engine.options.thread" in result.err


def test_tuning_reports_every_trial_with_the_local_engines_scores(dask_address: str, tmp_path: Path) -> None:
    raw = Scenario("synthetic:higgs", 4000, "logistic_regression", 0.0).spec()
    raw["tuning"] = {"enabled": True, "method": "grid", "metric": "auc", "space": {"C": [0.01, 1.0]}}
    local_dir, _ = _train(raw, tmp_path / "local")
    dask_dir, _ = _train(_on_dask(raw, dask_address), tmp_path / "dask")
    local = json.loads((local_dir / "tuning.json").read_text())["trials"]
    dask = json.loads((dask_dir / "tuning.json").read_text())["trials"]
    assert [t["params"] for t in dask] == [t["params"] for t in local] == [{"C": 0.01}, {"C": 1.0}]
    for a, b in zip(dask, local, strict=True):
        assert a["status"] == "ok" and abs(a["score"] - b["score"]) <= 0.002


def test_a_bad_engine_option_value_names_the_key(cli, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps(base_spec("builtin:breast_cancer", label="target")))
    result = cli("train", spec, "--engine", "dask", "--set", "engine.options.timeout=-1", "--out", tmp_path / "runs")
    assert result.code == 2 and "engine.options.timeout" in result.err
