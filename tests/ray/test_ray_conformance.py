"""The conformance matrix on the Ray engine: every cell matches the local engine or is refused at validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conformance import BAD_INPUT_ERRORS, BAD_INPUTS, Cell, bad_input_error, cells, check_cell


@pytest.mark.parametrize("cell", cells("ray"))
def test_ray_conforms(
    cell: Cell, conformance_files: Path, local_reference: Any, tmp_path: Path, ray_address: str
) -> None:
    check_cell(cell, conformance_files, tmp_path, local_reference, ray_address)


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_ray_refuses_bad_input_as_the_local_engine_does(
    kind: str, conformance_files: Path, tmp_path: Path, ray_address: str
) -> None:
    local = bad_input_error(kind, conformance_files, "local", tmp_path / "local")
    assert local.startswith(BAD_INPUT_ERRORS[kind]), local
    assert bad_input_error(kind, conformance_files, "ray", tmp_path / "ray", ray_address) == local
