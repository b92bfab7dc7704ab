"""Ray tests: every test here is marked ``ray``; one loopback cluster serves the whole directory.

The cluster (a head and a worker node, one CPU each) is started once per package with
``infra/ray/local-cluster.sh`` (the script users run) and stopped when this directory finishes,
so it is not kept alive while other engines' tests run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "infra" / "ray" / "local-cluster.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory with ``ray``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="package")
def ray_address() -> Iterator[str]:
    """Return the GCS address of the loopback cluster started by infra/ray/local-cluster.sh."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=120)
    started = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=120)
