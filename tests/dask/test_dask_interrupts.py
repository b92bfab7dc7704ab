"""SIGINT and SIGTERM during a Dask fit (the CLI's own LocalCluster): one line, exit 130, nothing left."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.interrupts import interrupt_fit


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["Ctrl-C", "SIGTERM"])
def test_an_interrupted_dask_fit_stops_at_once_and_leaves_nothing(sig: int, group: bool, tmp_path: Path) -> None:
    done = interrupt_fit(tmp_path, "dask", sig, group=group)  # xgboost.dask, 400 rounds on 400,000 rows
    assert (done.code, done.err) == (130, ["error: interrupted"])
    assert done.left == []
    assert done.stray == []  # the LocalCluster's nannies and workers
    assert done.exit_s < 30, done.exit_s
