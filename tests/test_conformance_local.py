"""The conformance matrix on the local engine, the reference: every cell trains and predicts every test row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conformance import BAD_INPUT_ERRORS, BAD_INPUTS, CASES, Cell, bad_input_error, cells, metric_of


@pytest.mark.parametrize("cell", cells("local"))
def test_local_trains_every_cell(cell: Cell, local_reference: Any) -> None:
    got = local_reference(cell)  # refused or failed cells raise inside
    multiclass = CASES[cell.case].multiclass
    predictions = pq.read_table(Path(got["_dir"]) / "predictions.parquet")
    assert predictions.num_rows == got["rows"]["test"] > 0
    if cell.case != "tiny":  # 45 test rows: any score is possible there
        chance = 1.0 / len(got["classes"]) + 0.05 if multiclass else 0.55
        assert metric_of(got, multiclass) > chance, f"{cell.id}: no better than chance"


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_local_refuses_bad_input_in_one_line(kind: str, conformance_files: Path, tmp_path: Path) -> None:
    assert bad_input_error(kind, conformance_files, "local", tmp_path / "out").startswith(BAD_INPUT_ERRORS[kind])
