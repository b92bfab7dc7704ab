"""SIGINT and SIGTERM during a local run: one line, exit 130, no run directory and no temporary directory."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.interrupts import interrupt_train

pytestmark = pytest.mark.local


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_local_run_leaves_nothing(sig: int, tmp_path: Path) -> None:
    code, err, left = interrupt_train(tmp_path, "local", sig)
    assert (code, err) == (130, ["error: interrupted"])
    assert left == []
    assert not (tmp_path / "runs").exists()  # the run made the parent, the run removed it
