"""Spark tests: every test is marked ``spark``; one local[2] session serves the directory.

The session is started by the engine itself (as ``scaleclf train --engine spark`` starts it)
and stopped when this directory's tests finish; engines created meanwhile reuse it. The
standalone cluster is started only for the integration tests, with ``infra/spark``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "spark"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``spark``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.spark)


@pytest.fixture(scope="package", autouse=True)
def spark_session() -> Iterator[object]:
    """Start one local[2] SparkSession through the engine; stop it after the directory."""
    from pipelines.engines.spark.engine import SparkEngine
    from pipelines.spec import EngineSpec

    engine = SparkEngine(EngineSpec(name="spark", workers=2, options={"spark.sql.shuffle.partitions": 4}))
    engine.on_start()
    try:
        yield engine.session
    finally:
        engine.on_shutdown()


@pytest.fixture(scope="package")
def spark_cluster() -> Iterator[dict[str, str]]:
    """Start a standalone master + worker with infra/spark/start-cluster.sh; yield its env."""
    work = tempfile.mkdtemp(prefix="scaleclf-spark-cluster-")
    env = {**os.environ, "SCALECLF_SPARK_DIR": work, "SPARK_WORKER_CORES": "2", "SPARK_WORKER_MEMORY": "3g"}
    started = subprocess.run(
        [str(INFRA / "start-cluster.sh")], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        yield {**env, "SPARK_MASTER": started.stdout.strip().splitlines()[-1]}
    finally:
        subprocess.run([str(INFRA / "stop-cluster.sh")], env=env, capture_output=True, timeout=60, check=False)
