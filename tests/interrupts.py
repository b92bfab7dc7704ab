"""Interrupt a real ``scaleclf train`` process once its run has started; shared by the engine tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import REPO, base_spec


def interrupt_train(tmp: Path, engine: str, sig: int, *, settle_s: float = 0.5, rows: int = 200_000) -> tuple:
    """Start a long train on ``engine``, send ``sig`` once its temporary run directory exists (plus ``settle_s``),
    and return (exit code, stderr lines, what is left in the output directory)."""
    spec = base_spec("synthetic:higgs", model="random_forest", rows=rows)
    spec["engine"] = {"name": engine}
    spec["model"]["params"] = {"n_estimators": 400}
    spec["output"]["dir"] = str(tmp / "runs")
    (tmp / "job.yaml").write_text(yaml.safe_dump(spec))
    env = os.environ | {"PYTHONPATH": str(REPO), "SCALECLF_SIGNING_KEY": "k"}
    child = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "train", str(tmp / "job.yaml"), "--quiet"],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not list((tmp / "runs").glob(".*.tmp-*")):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    time.sleep(settle_s)
    assert child.poll() is None, "the run ended before it could be interrupted; give it more rows"
    child.send_signal(sig)
    _, err = child.communicate(timeout=120)
    left = sorted(p.name for p in (tmp / "runs").iterdir()) if (tmp / "runs").exists() else []
    return child.returncode, [line for line in err.splitlines() if line.strip()], left


__all__ = ["interrupt_train", "signal"]
