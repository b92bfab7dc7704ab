"""The conformance matrix on the Dask engine: every cell matches the local engine or is refused at validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conformance import BAD_INPUT_ERRORS, BAD_INPUTS, Cell, bad_input_error, cells, check_cell


@pytest.mark.parametrize("cell", cells("dask"))
def test_dask_conforms(
    cell: Cell, conformance_files: Path, local_reference: Any, tmp_path: Path, dask_address: str
) -> None:
    check_cell(cell, conformance_files, tmp_path, local_reference, dask_address)


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_dask_refuses_bad_input_as_the_local_engine_does(
    kind: str, conformance_files: Path, tmp_path: Path, dask_address: str
) -> None:
    local = bad_input_error(kind, conformance_files, "local", tmp_path / "local")
    assert local.startswith(BAD_INPUT_ERRORS[kind]), local
    assert bad_input_error(kind, conformance_files, "dask", tmp_path / "dask", dask_address) == local
