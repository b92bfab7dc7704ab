"""Batch scoring: identifier columns kept, no label column for unlabelled input, rows counted, bounded batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data.synthetic import write_dataset
from pipelines.progress import Progress
from pipelines.run import train
from pipelines.scoring import load_run, predict_table, write_scores
from pipelines.spec import build_spec
from tests.conftest import base_spec


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Return a gbt run on churn and a Parquet file of new customers with ids and no label."""
    tmp = tmp_path_factory.mktemp("scoring")
    data = tmp / "churn.parquet"
    write_dataset("churn", 3000, data, seed=4)
    spec = base_spec(str(data), label="churned", model="gbt", positive_label="yes")
    spec["model"]["params"] = {"n_estimators": 20}
    spec["output"]["dir"] = str(tmp / "runs")
    run_dir = train(build_spec(spec))
    new = pq.read_table(data).slice(0, 2500).drop_columns(["churned"])
    ids = pa.array([f"cust-{i:05d}" for i in range(new.num_rows)])
    new = new.add_column(0, "customer_id", ids).append_column("region_code", pa.array(["eu"] * new.num_rows))
    unlabelled = tmp / "new.parquet"
    pq.write_table(new, unlabelled, row_group_size=700)
    return run_dir, unlabelled


def test_predict_keeps_identifiers_and_writes_no_label(churn_run: tuple[Path, Path], tmp_path: Path, cli) -> None:
    run_dir, unlabelled = churn_run
    out = tmp_path / "scores.parquet"
    result = cli("predict", run_dir, "--data", unlabelled, "--out", out)
    assert result.code == 0, result.err
    assert result.last_line == str(out)
    assert "scored 2500 rows" in result.err and "no label column" in result.err
    scored = pq.read_table(out)
    assert scored.column_names == ["row_key", "customer_id", "region_code", "proba_no", "proba_yes", "prediction"]
    assert scored.column("customer_id").to_pylist() == [f"cust-{i:05d}" for i in range(2500)]
    # The probabilities are the model's, row for row: the same as scoring the whole table at once.
    whole = predict_table(load_run(run_dir), pq.read_table(unlabelled))
    np.testing.assert_allclose(scored.column("proba_yes").to_numpy(), whole[:, 1], rtol=0, atol=1e-12)


def test_keep_chooses_the_columns_and_rejects_unknown_ones(churn_run: tuple[Path, Path], tmp_path: Path, cli) -> None:
    run_dir, unlabelled = churn_run
    out = tmp_path / "scores.parquet"
    assert cli("predict", run_dir, "--data", unlabelled, "--out", out, "--keep", "customer_id", "-q").code == 0
    assert pq.read_table(out).column_names[:2] == ["row_key", "customer_id"]
    assert "region_code" not in pq.read_table(out).column_names
    bad = cli("predict", run_dir, "--data", unlabelled, "--out", tmp_path / "x.parquet", "--keep", "nope")
    assert bad.code == 2 and "--keep: column 'nope' is not in the data" in bad.err
    assert not (tmp_path / "x.parquet").exists()


def test_scoring_streams_in_batches(churn_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, unlabelled = churn_run
    out = tmp_path / "scores.parquet"
    summary = write_scores(run_dir, str(unlabelled), out, batch_rows=300, progress=Progress(quiet=True))
    assert summary.rows == 2500 and summary.kept == ["customer_id", "region_code"] and not summary.has_label
    meta = pq.read_metadata(out)
    # One row group per input batch: at most 300 rows were held at once.
    assert meta.num_row_groups >= 9 and max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 300


def test_labelled_input_keeps_the_label_refuses_unseen_ones(churn_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, unlabelled = churn_run
    labelled = pq.read_table(unlabelled).append_column("churned", pa.array(["no", "yes"] * 1250))
    path = tmp_path / "labelled.parquet"
    pq.write_table(labelled, path)
    summary = write_scores(run_dir, str(path), tmp_path / "s.parquet")
    assert summary.has_label and pq.read_table(tmp_path / "s.parquet").column("label").to_pylist()[:2] == ["no", "yes"]
    pq.write_table(labelled.set_column(labelled.num_columns - 1, "churned", pa.array(["maybe"] * 2500)), path)
    from pipelines.errors import DataError

    with pytest.raises(DataError, match="label value"):
        write_scores(run_dir, str(path), tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists() and not list(tmp_path.glob(".t.parquet.tmp-*"))
