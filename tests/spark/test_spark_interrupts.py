"""SIGINT and SIGTERM during a Spark fit (the CLI's own local[*] session): one line, exit 130, nothing left.

The interrupted py4j call left its answer unread on the driver thread's connection, and stopping
the session then read it: exit 1 with "Py4JError: ... SparkSession does not exist in the JVM".
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.interrupts import interrupt_fit


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["Ctrl-C", "SIGTERM"])
def test_an_interrupted_spark_fit_stops_at_once_and_leaves_nothing(sig: int, group: bool, tmp_path: Path) -> None:
    done = interrupt_fit(tmp_path, "spark", sig, group=group)  # xgboost.spark, 400 rounds on 400,000 rows
    assert (done.code, done.err) == (130, ["error: interrupted"])
    assert done.left == []
    assert done.stray == []  # the JVM and its Python workers
    assert done.exit_s < 30, done.exit_s
