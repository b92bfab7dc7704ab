"""SIGINT and SIGTERM during a Ray fit: one line, exit 130, no run directory (Ray once exited 1 silently)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.interrupts import interrupt_train


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_ray_run_leaves_nothing(sig: int, tmp_path: Path) -> None:
    # 12 s after the run starts: Ray is up (it replaced the SIGTERM handler) and the fit is running.
    code, err, left = interrupt_train(tmp_path, "ray", sig, settle_s=12.0, rows=400_000)
    assert (code, err) == (130, ["error: interrupted"])
    assert left == []
