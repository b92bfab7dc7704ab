"""Federated tests: every test is marked ``federated``; Flower's home is a temp dir, never the real one."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``federated``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.federated)


@pytest.fixture(scope="package", autouse=True)
def flower_home() -> Iterator[Path]:
    """Write the local-simulation federation with the infra script into a temporary FLWR_HOME.

    The simulation itself starts (and stops) its own private Ray inside each run, so nothing
    stays alive once this directory's tests finish.
    """
    home = Path(tempfile.mkdtemp(prefix="scaleclf-flwr-home-"))
    old = os.environ.get("FLWR_HOME")
    os.environ["FLWR_HOME"] = str(home)
    subprocess.run(["bash", str(REPO / "infra" / "flower" / "write-federation.sh")], check=True, capture_output=True)
    yield home
    if old is None:
        os.environ.pop("FLWR_HOME", None)
    else:
        os.environ["FLWR_HOME"] = old


@pytest.fixture(scope="package")
def superlink(flower_home: Path) -> Iterator[Path]:
    """Start the simulation SuperLink for ``flwr run .`` once (infra/flower/superlink.sh); stop it after."""
    script = REPO / "infra" / "flower" / "superlink.sh"
    subprocess.run(["bash", str(script), "start"], check=True, capture_output=True, cwd=REPO)
    try:
        yield flower_home
    finally:
        subprocess.run(["bash", str(script), "stop"], check=False, capture_output=True, cwd=REPO)
