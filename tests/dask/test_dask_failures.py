"""A Dask scheduler that dies in the middle of a run gives one clear line, not a hang."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, base_spec

DASK = Path(sys.executable).parent / "dask"


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_scheduler_killed_mid_run_ends_the_run_with_one_line(tmp_path: Path) -> None:
    # A throwaway scheduler on a random 127.0.0.1 port, so killing it never touches the shared one.
    info = tmp_path / "scheduler.json"
    log = (tmp_path / "scheduler.log").open("w")
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", info],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        assert _wait_for(info.is_file, 60)
        worker = subprocess.Popen(
            [DASK, "worker", "--scheduler-file", info, "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        address = json.loads(info.read_text())["address"]
        spec = base_spec("synthetic:higgs", rows=20000)
        spec["model"]["params"] = {"max_iter": 1_000_000, "tol": 0.0}  # fits until the scheduler is gone
        job = tmp_path / "job.yaml"
        job.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "jobs.cli", "train", job, "--engine", "dask", "--out", tmp_path / "runs"]
        run = subprocess.Popen(
            [*cmd, "--set", f"engine.address={address}", "--set", "engine.options.timeout=5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        # Kill the scheduler as soon as the data is loaded, i.e. while the model is being fitted
        # (a fixed sleep raced with fast fits and once killed it after the last prediction).
        assert run.stderr is not None
        head = []
        for line in run.stderr:
            head.append(line)
            if "loaded and profiled" in line:
                break
        scheduler.send_signal(signal.SIGKILL)
        _, rest = run.communicate(timeout=180)
        err = "".join(head) + rest
        assert run.returncode == 4, err
        # Progress lines (stderr) may precede it; the failure itself is one line, no traceback.
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "stopped answering" in errors[0] and address in errors[0], err
        assert "Traceback" not in err
        assert err.splitlines()[-1] == errors[0]
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    finally:
        for proc in (worker, scheduler):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        log.close()
