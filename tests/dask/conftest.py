"""Dask tests: every test here is marked ``dask``; one scheduler + 2 workers serve the whole directory.

The cluster is started once per package with ``infra/dask/start.sh`` (the script users run) and
stopped when this directory finishes, so it is not kept alive while other engines' tests run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

INFRA = REPO / "infra" / "dask"
PORT = 8786


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory with ``dask``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.dask)


@pytest.fixture(scope="package")
def dask_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Return the address of a scheduler + 2 one-thread workers started by infra/dask/start.sh."""
    env = {
        **os.environ,
        "DASK_PORT": str(PORT),
        "DASK_WORKERS": "2",
        "DASK_THREADS": "1",
        "DASK_STATE_DIR": str(tmp_path_factory.mktemp("dask-cluster")),
    }
    started = subprocess.run([INFRA / "start.sh"], env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([INFRA / "stop.sh"], env=env, capture_output=True, text=True, timeout=60)
