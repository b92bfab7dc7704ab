"""predict and evaluate count unseen categories and missing feature values, and name all-missing columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.scoring import CHECKS_METADATA
from tests.conftest import base_spec

pytestmark = pytest.mark.local


def _table(n: int, colours: list[str], seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(colours, size=n)
    label = ((x + (colour == "red")) > 0.5).astype(np.int64)
    return pa.table({"x": x, "colour": colour, "label": label})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jobs.cli import main

    tmp = tmp_path_factory.mktemp("checks")
    pq.write_table(_table(600, ["red", "green", "blue"], 0), tmp / "train.parquet")
    spec = base_spec(str(tmp / "train.parquet"))
    spec["output"]["dir"] = str(tmp / "runs")
    (tmp / "job.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as done:
        main(["train", str(tmp / "job.yaml"), "--quiet"])
    assert done.value.code == 0
    (found,) = (tmp / "runs").iterdir()
    return found


def _new_data(tmp: Path) -> str:
    table = _table(200, ["red", "green", "purple"], 1)
    colours = table.column("colour").to_pylist()
    purple = sum(c == "purple" for c in colours)
    table = table.set_column(0, "x", pa.array([None] * 200, pa.float64()))
    path = tmp / "new.parquet"
    pq.write_table(table, path)
    return str(path), purple


def test_predict_reports_unseen_categories_and_an_all_missing_column(run_dir: Path, tmp_path: Path, cli) -> None:
    data, purple = _new_data(tmp_path)
    assert purple > 0
    result = cli("predict", run_dir, "--data", data, "--out", tmp_path / "p.parquet", "--quiet")
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: --data")]
    assert warnings == [
        f"warning: --data: values never seen in training, encoded as <other>/no category: 'colour' {purple} (rows)",
        "warning: --data: feature column(s) 'x' have no value in the 200 scored rows (imputed)",
    ]
    footer = json.loads(pq.read_metadata(tmp_path / "p.parquet").metadata[CHECKS_METADATA.encode()])
    assert footer == {
        "rows": 200,
        "unseen_categories": {"colour": purple},
        "missing_values": {"x": 200},
        "all_missing_columns": ["x"],
    }


def test_predict_counts_over_every_batch(run_dir: Path, tmp_path: Path) -> None:
    from pipelines.scoring import write_scores

    data, purple = _new_data(tmp_path)
    summary = write_scores(run_dir, data, tmp_path / "p.parquet", batch_rows=7)
    assert summary.checks.to_dict()["unseen_categories"] == {"colour": purple}
    footer = json.loads(pq.read_metadata(tmp_path / "p.parquet").metadata[CHECKS_METADATA.encode()])
    assert footer["unseen_categories"] == {"colour": purple} and footer["rows"] == 200


def test_evaluate_reports_them_in_its_output(run_dir: Path, tmp_path: Path, cli) -> None:
    data, purple = _new_data(tmp_path)
    result = cli("evaluate", run_dir, "--data", data, "--quiet")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["data_checks"]["unseen_categories"] == {"colour": purple}
    assert report["data_checks"]["all_missing_columns"] == ["x"]
    assert "warning: --data: values never seen in training" in result.err


def test_clean_data_reports_nothing(run_dir: Path, tmp_path: Path, cli) -> None:
    pq.write_table(_table(100, ["red", "blue"], 2), tmp_path / "clean.parquet")
    result = cli("predict", run_dir, "--data", tmp_path / "clean.parquet", "--out", tmp_path / "p.parquet", "--quiet")
    assert result.code == 0 and "warning: --data" not in result.err
