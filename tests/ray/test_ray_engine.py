"""The Ray engine against the local reference: same rows, same metrics, reloadable models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data.schema import make_plan
from pipelines.engines.ray.engine import RayEngine
from pipelines.errors import ConfigError
from pipelines.run import train
from pipelines.spec import build_spec
from tests.scenarios import FAST

ROWS = 6000


def spec(source: str, model: str, engine: str, out: Path, rows: int = ROWS, **engine_extra: Any) -> dict[str, Any]:
    """Return a small spec for ``model`` on ``engine``, the shared scenario's fast parameters."""
    return {
        "name": "ray-parity",
        "seed": 11,
        "data": {"source": source, "label": "label", "rows": rows},
        "model": {"name": model, "params": FAST.get(model, {})},
        "engine": {"name": engine, **engine_extra},
        "output": {"dir": str(out), "report": False},
    }


def metrics(run_dir: Path) -> dict[str, Any]:
    """Return a run's metrics.json."""
    return json.loads((run_dir / "metrics.json").read_text())


def test_row_keys_and_split_match_local(ray_address: str) -> None:
    from pipelines.engines.local.engine import LocalEngine
    from pipelines.engines.ray.engine import RayEngine

    job = build_spec(spec("synthetic:higgs", "xgboost", "ray", Path("runs"), address=ray_address))
    plan = make_plan(job.data, job.seed)
    local = LocalEngine(job.engine, job.seed).load(plan).table
    with RayEngine(job.engine, job.seed) as engine:
        import ray

        table = pa.concat_tables(ray.get(engine.load(plan).dataset.to_arrow_refs()))
    ours = dict(zip(table["__row_key"].to_pylist(), table["__split"].to_pylist(), strict=True))
    theirs = dict(zip(local["__row_key"].to_pylist(), local["__split"].to_pylist(), strict=True))
    assert ours == theirs


# Every model the Ray engine supports, binary and multiclass (issue #5: within 0.01 AUC, logistic
# regression within 0.005). The forest is compared on 20,000 rows: two forests (of either kind)
# differ by up to 0.02 AUC from seed to seed on a few thousand rows.
PARITY_ROWS = {"random_forest": 20000}
TOLERANCE = {"logistic_regression": 0.005, "decision_tree": 1e-9}  # CART in one task: the very same tree


# The costliest multiclass cases (20-60 s each here) run in the slow tier (`make test-all`,
# `pytest -m slow`); `make test` keeps every binary case and the multiclass booster (gbt), MLP,
# linear and naive Bayes paths.
SLOW = {"random_forest", "xgboost", "rff_svm", "nystroem_svm"}
CASES = [
    pytest.param(
        source,
        model,
        marks=[pytest.mark.slow] if source.endswith("multiclass") and model in SLOW else [],
        id=f"{model}-{source}",
    )
    for source in ("synthetic:higgs", "synthetic:multiclass")
    for model in RayEngine.MODELS
]


@pytest.mark.parametrize(("source", "model"), CASES)
def test_metrics_match_local(ray_address: str, tmp_path: Path, source: str, model: str, cli: Any) -> None:
    tolerance = TOLERANCE.get(model, 0.01)
    # Two training workers, one on each node: the data-parallel path with its all-reduce.
    rows = PARITY_ROWS.get(model, ROWS)
    ray_run = train(build_spec(spec(source, model, "ray", tmp_path, rows, address=ray_address, workers=2)))
    local_run = train(build_spec(spec(source, model, "local", tmp_path, rows)))
    ours, reference = metrics(ray_run), metrics(local_run)
    assert ours["engine"] == "ray" and ours["rows"] == reference["rows"]
    assert abs(ours["test"]["auc"] - reference["test"]["auc"]) <= tolerance
    keys = pq.read_table(ray_run / "predictions.parquet")["row_key"].to_numpy()
    assert np.array_equal(
        np.sort(keys), np.sort(pq.read_table(local_run / "predictions.parquet")["row_key"].to_numpy())
    )
    manifest = json.loads((ray_run / "model" / "manifest.json").read_text())
    assert manifest["engine"] == "ray" and manifest["native_files"]
    if model in ("xgboost", "gbt", "random_forest"):  # where a Ray Train fit's time went
        last_fit = ours["engine_info"]["last_fit"]
        phases = ("read_s", "matrix_s", "train_s", "train_startup_s", "train_teardown_s")
        assert all(last_fit[k] >= 0 for k in phases), last_fit
        assert sum(last_fit[k] for k in phases) <= ours["timing"]["fit_s"] + 0.5
    if model == "decision_tree":  # the tree reloads (skops, types checked) and scores the same rows alike
        from pipelines.data.sources import resolve_source

        out = tmp_path / "scored.parquet"
        data = resolve_source(source, rows=rows).paths[0]
        result = cli("predict", ray_run, "--data", data, "--out", out)
        assert result.code == 0, result.err
        saved = pq.read_table(ray_run / "predictions.parquet").to_pandas().set_index("row_key")
        again = pq.read_table(out).to_pandas().set_index("row_key").loc[saved.index]
        probas = [c for c in saved.columns if c.startswith("proba_")]
        assert probas and np.allclose(again[probas], saved[probas], atol=1e-9)


def test_unknown_option_is_a_config_error() -> None:
    from pipelines.engines.ray.engine import RayEngine

    job = build_spec(spec("synthetic:higgs", "xgboost", "ray", Path("runs"), options={"nthreads": 2}))
    with pytest.raises(ConfigError, match=r"engine.options.nthreads"):
        RayEngine(job.engine, job.seed)


def test_local_ray_trains_without_an_address(tmp_path: Path) -> None:
    # No engine.address: a fresh local Ray instance, never the running cluster.
    job = spec("builtin:breast_cancer", "naive_bayes", "ray", tmp_path)
    job["data"] = {"source": "builtin:breast_cancer", "label": "target"}
    run_dir = train(build_spec(job))
    facts = metrics(run_dir)["engine_info"]
    assert facts["address"] == "local"
    assert metrics(run_dir)["test"]["auc"] > 0.95


def test_unreachable_address_is_one_line_and_no_run_directory(tmp_path: Path, cli: Any) -> None:
    config = tmp_path / "spec.yaml"
    config.write_text("name: x\ndata: {source: 'builtin:breast_cancer', label: target}\nmodel: {name: xgboost}\n")
    result = cli("train", config, "--engine", "ray", "--set", "engine.address=127.0.0.1:6391", "--out", tmp_path / "r")
    assert result.code == 4
    assert "engine.address" in result.err and "127.0.0.1:6391" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
