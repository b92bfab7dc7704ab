"""Interrupt a real ``scaleclf train`` process once its run has started; shared by the engine tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
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


@dataclass
class Interrupted:
    """What an interrupted fit left: exit code, stderr after the signal, files, processes, seconds to exit."""

    code: int
    err: list[str]  # the stderr lines printed after the signal
    left: list[str]  # what is in the output directory
    stray: list[str]  # the run's processes still alive after it exited (command lines)
    exit_s: float  # from the signal to the process's exit


def interrupt_fit(
    tmp: Path,
    engine: str,
    sig: int,
    *,
    model: str = "xgboost",
    rows: int = 400_000,
    params: dict | None = None,
    settle_s: float = 3.0,
    fitting: str | None = None,
    group: bool = False,
) -> Interrupted:
    """Start ``scaleclf train`` on ``engine`` and send ``sig`` while it fits; return what it left.

    The fit starts once the load stage's line ("loaded and profiled ...") is on stderr; when
    ``fitting`` is given, the signal waits until a process of the run has it in its command line
    too (Ray's ``TrainController``). The signal must land before the fit's line ("fitted ...").
    ``group`` sends it to the run's whole process group, as Ctrl-C in a terminal does.
    """
    spec = base_spec("synthetic:higgs", model=model, rows=rows)
    spec["engine"] = {"name": engine}
    spec["model"]["params"] = params if params is not None else {"n_estimators": 400}
    spec["output"]["dir"] = str(tmp / "runs")
    (tmp / "job.yaml").write_text(yaml.safe_dump(spec))
    env = os.environ | {"PYTHONPATH": str(REPO), "SCALECLF_SIGNING_KEY": "k"}
    child = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "train", str(tmp / "job.yaml")],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )
    lines: list[str] = []

    def read() -> None:
        for line in child.stderr or []:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    run = psutil.Process(child.pid)
    deadline = time.monotonic() + 240
    try:
        while not any("loaded and profiled" in line for line in lines) or (
            fitting and not any(fitting in " ".join(_cmdline(p)) for p in run.children(recursive=True))
        ):
            assert child.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the fit never started"
            time.sleep(0.05)
        time.sleep(settle_s)
        processes = run.children(recursive=True)
        before = len(lines)
        assert child.poll() is None and not any("fitted" in line for line in lines), "the fit ended first: more rows"
        if group:
            os.killpg(child.pid, sig)
        else:
            child.send_signal(sig)
        sent = time.monotonic()
        child.wait(timeout=120)
        exit_s = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
    reader.join(10)
    gone = time.monotonic() + 10
    while (stray := [p for p in processes if _alive(p)]) and time.monotonic() < gone:
        time.sleep(0.2)
    left = sorted(p.name for p in (tmp / "runs").iterdir()) if (tmp / "runs").exists() else []
    err = [line.rstrip() for line in lines[before:] if line.strip()]
    return Interrupted(child.returncode, err, left, [" ".join(_cmdline(p))[:120] for p in stray], exit_s)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


__all__ = ["Interrupted", "interrupt_fit", "interrupt_train", "signal"]
