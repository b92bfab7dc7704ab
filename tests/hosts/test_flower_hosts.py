"""Flower deployment across simulated hosts: SuperLink on h1, SuperNodes on h2..h4 (TLS, node auth).

infra/flower/deploy.sh with SCALECLF_FLWR_HOSTS=1; `flwr run` from the root namespace. One
SuperNode's host is killed mid-round: SecAgg+ recovers the round from the survivors' shares and
the run ends inside its budget (or stops with one line); it never exits 0 outside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts.conftest import Hosts

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "infra" / "flower" / "deploy.sh"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def flower(hosts: Hosts) -> Iterator[dict[str, str]]:
    """SuperLink on h1 and 3 SuperNodes on h2, h3, h4; yields the environment of the flwr commands."""
    home = Path(tempfile.mkdtemp(prefix="scaleclf-flwr-hosts-"))
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "SCALECLF_FLWR_HOSTS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    up = subprocess.run(["bash", str(DEPLOY), "up", "3"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield env
    finally:
        subprocess.run(["bash", str(DEPLOY), "down"], env=env, capture_output=True, timeout=120)


def test_flower_listeners_bind_their_hosts(hosts: Hosts, flower: dict[str, str]) -> None:
    state = Path(flower["FLWR_HOME"]) / "scaleclf-deploy"
    link = int((state / "superlink.pid").read_text())
    assert link in hosts.pids("h1")
    for i, host in enumerate(("h2", "h3", "h4")):
        assert int((state / f"node-{i}.pid").read_text()) in hosts.pids(host)
    config = (Path(flower["FLWR_HOME"]) / "config.toml").read_text()
    assert f'address = "{hosts.addr("h1")}:' in config and "insecure" not in config


def test_supernode_host_killed_mid_round_the_round_completes_inside_the_budget(
    hosts: Hosts, flower: dict[str, str], tmp_path: Path
) -> None:
    state = Path(flower["FLWR_HOME"]) / "scaleclf-deploy"
    run_config = f"spec='{REPO / 'conf' / 'federated_deploy.yaml'}' overrides='output.dir={tmp_path / 'runs'}'"
    log = tmp_path / "flwr-run.log"
    with log.open("w") as out:
        run = subprocess.Popen(
            [str(BIN / "flwr"), "run", ".", "scaleclf-deploy", "--stream", "--run-config", run_config],
            cwd=REPO, env=flower, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            # Mid-round 1: h4's SuperNode has received its first SecAgg+ train message.
            deadline = time.monotonic() + 240
            while "Receiving: train message" not in (state / "node-2.log").read_text():
                assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
            hosts.kill("h4")
            code = run.wait(timeout=540)
        finally:
            if run.poll() is None:
                run.kill()
    out = log.read_text()
    runs = list((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else []
    if code != 0:  # stopped: one line, and no run directory claiming a result
        assert runs == [], out[-3000:]
        return
    (run_dir,) = runs
    assert f"run directory: {run_dir}" in out
    privacy = json.loads((run_dir / "privacy.json").read_text())
    assert privacy["within_budget"] is True and privacy["epsilon"] <= privacy["target_epsilon"]
    replies = privacy["replies_per_round"]
    assert len(replies) == privacy["rounds_run"] >= 1 and replies[0] == 2, replies  # round 1 without h4
    assert all(2 <= r <= 3 for r in replies), replies
    history = json.loads((run_dir / "history.json").read_text())["rounds"]
    assert history[1]["failed"] is False and history[1]["failed_train"] == 1, history[1]
