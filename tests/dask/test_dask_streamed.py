"""The Dask engine's streamed layout: no table kept, float32 feature blocks sized from the data.

Each case fits the same spec in both layouts on the shared cluster and compares the metrics:
the streamed layout must give the in-memory layout's model (float32 storage moves logistic
regression's AUC by ~1e-8), and metrics.json must say which layout ran and how many blocks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data.synthetic import iter_rows
from pipelines.progress import Progress
from pipelines.run import train
from pipelines.spec import build_spec
from tests.conftest import base_spec


def _files(tmp: Path) -> tuple[Path, Path]:
    """Write a 6,000-row HIGGS-like train file (6 row groups) and a 1,500-row fixed test file."""
    table = pa.concat_tables(list(iter_rows("higgs", 7500, 3)))
    train_file, test_file = tmp / "train.parquet", tmp / "test.parquet"
    pq.write_table(table.slice(0, 6000), train_file, row_group_size=1000)
    pq.write_table(table.slice(6000), test_file)
    return train_file, test_file


def _fit(tmp: Path, address: str, model: str, streaming: str, **extra: object) -> dict:
    train_file, test_file = (
        _files(tmp) if not (tmp / "train.parquet").exists() else (tmp / "train.parquet", tmp / "test.parquet")
    )
    raw = base_spec(str(train_file), model=model, test_source=str(test_file))
    raw["engine"] = {"name": "dask", "address": address, "options": {"streaming": streaming, **extra}}
    raw["model"]["params"] = (
        {"n_components": 60} if model == "rff_svm" else {"n_estimators": 20} if model == "xgboost" else {}
    )
    raw["output"] = {"dir": str(tmp / f"runs-{model}-{streaming}"), "report": False}
    run_dir = train(build_spec(raw), Progress(quiet=True))
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("model", "tolerance"),
    [("logistic_regression", 1e-6), ("naive_bayes", 1e-6), ("rff_svm", 1e-4), ("xgboost", 0.002)],
)
def test_the_streamed_layout_fits_the_in_memory_layouts_model(
    dask_address: str, tmp_path: Path, model: str, tolerance: float
) -> None:
    kept = _fit(tmp_path, dask_address, model, "never", partitions=4)
    streamed = _fit(tmp_path, dask_address, model, "always", partitions=4)
    assert kept["engine_info"]["memory"]["layout"] == "in_memory"
    assert streamed["engine_info"]["memory"]["layout"] == "streamed"
    # 4 runs of each file (the fixed test file's one row group cut in 4).
    assert streamed["engine_info"]["memory"]["blocks"] == 8
    assert streamed["rows"] == kept["rows"]
    assert abs(streamed["test"]["auc"] - kept["test"]["auc"]) <= tolerance
    assert abs(streamed["valid"]["log_loss"] - kept["valid"]["log_loss"]) <= max(tolerance, 1e-6) * 10


def test_streamed_blocks_are_sized_from_the_rows(
    dask_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.engines.dask.engine as dask_engine

    monkeypatch.setattr(dask_engine, "STREAM_BLOCK_ROWS", 1000)
    metrics = _fit(tmp_path, dask_address, "logistic_regression", "always")
    # 6,000 train-file rows in blocks of about 1,000, and the 1,500-row test file cut likewise.
    assert metrics["engine_info"]["memory"]["blocks"] == 6 + 2


def test_auto_streams_when_the_in_memory_layout_would_pass_half_the_budget(dask_address: str, tmp_path: Path) -> None:
    train_file, test_file = _files(tmp_path)
    raw = base_spec(str(train_file), test_source=str(test_file))
    raw["engine"] = {"name": "dask", "address": dask_address}
    raw["resources"] = {"memory": "400MB"}  # the estimate's 300 MB of libraries alone pass half of it
    raw["output"] = {"dir": str(tmp_path / "runs"), "report": False}
    metrics = json.loads((train(build_spec(raw), Progress(quiet=True)) / "metrics.json").read_text())
    memory = metrics["engine_info"]["memory"]
    assert memory["layout"] == "streamed"
    assert memory["budget_bytes"] == 400 * 10**6
    assert memory["in_memory_bytes"] > 200 * 10**6
    raw["resources"] = {"memory": "8GiB"}
    metrics = json.loads((train(build_spec(raw), Progress(quiet=True)) / "metrics.json").read_text())
    assert metrics["engine_info"]["memory"]["layout"] == "in_memory"
