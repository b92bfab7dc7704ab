"""Flower deployment mode (infra/flower/deploy.sh): TLS with a private CA and SuperNode authentication.

The SuperLink and SuperNodes are separate processes on 127.0.0.1; the refusals are judged on what
the processes do (exit status, their log line, the SuperLink's node list), never on mocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "infra" / "flower" / "deploy.sh"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    """A running deployment: its FLWR_HOME, port and the environment its commands need."""

    home: Path
    port: int
    env: dict[str, str]

    @property
    def state(self) -> Path:
        return self.home / "scaleclf-deploy"

    def run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "flwr"), *args, timeout=timeout)

    def nodes(self) -> list[dict[str, object]]:
        """Return the SuperLink's node list (``flwr supernode ls``)."""
        done = self.flwr("supernode", "ls", "scaleclf-deploy", "--format", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        return list(json.loads(done.stdout)["nodes"])

    def supernode(self, key: Path, ca: Path | None, log: Path) -> tuple[int, str]:
        """Start one more SuperNode; return its exit status and log once it exits (60 s at most).

        It runs in its own process group: the SuperExec it starts outlives it for a moment, and
        is ended with the group.
        """
        args = [str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{self.port}", "--max-retries", "2"]
        args += ["--auth-supernode-private-key", str(key), "--node-config", "partition-id=0 num-partitions=3"]
        args += ["--port", str(free_port())] + (["--root-certificates", str(ca)] if ca else [])
        with log.open("w") as out:
            proc = subprocess.Popen(
                args,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=60)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return code, log.read_text()


def deploy(nodes: int) -> Iterator[Deployment]:
    home = Path(tempfile.mkdtemp(prefix="scaleclf-flwr-deploy-"))
    port = free_port()
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "SCALECLF_FLWR_DEPLOY_PORT": str(port),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    dep = Deployment(home, port, env)
    up = dep.run("bash", str(DEPLOY), "up", str(nodes), timeout=180)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield dep
    finally:
        dep.run("bash", str(DEPLOY), "down")


@pytest.fixture(scope="module")
def one_node() -> Iterator[Deployment]:
    """A SuperLink with TLS and SuperNode authentication and one registered, connected SuperNode."""
    yield from deploy(1)


def ssh_key(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f", str(path)], check=True)
    return path


def test_deployment_serves_tls_only_with_its_ca(one_node: Deployment) -> None:
    ca = one_node.state / "certs" / "ca.pem"
    trusting = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", one_node.port), timeout=5) as raw,
        trusting.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with (
        socket.create_connection(("127.0.0.1", one_node.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    config = (one_node.home / "config.toml").read_text()
    assert f'root-certificates = "{ca}"' in config and "insecure" not in config
    assert [n["status"] for n in one_node.nodes()] == ["online"]


def test_unregistered_supernode_is_refused(one_node: Deployment, tmp_path: Path) -> None:
    ca = one_node.state / "certs" / "ca.pem"
    code, out = one_node.supernode(ssh_key(tmp_path / "stranger"), ca, tmp_path / "log")
    assert code != 0
    assert "[code: 2004] Failed to activate SuperNode." in out and "SuperNode ID:" not in out
    assert len(one_node.nodes()) == 1  # the stranger never joined the federation


@pytest.mark.parametrize("ca", ["none", "other"])
def test_supernode_without_the_ca_is_refused(one_node: Deployment, tmp_path: Path, ca: str) -> None:
    other = None
    if ca == "other":
        subprocess.run(["bash", str(REPO / "infra" / "tls" / "make-certs.sh"), str(tmp_path), "x"], check=True)
        other = tmp_path / "ca.pem"
    code, out = one_node.supernode(one_node.state / "keys" / "node-0", other, tmp_path / "log")
    assert code != 0
    assert "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed" in out and "SuperNode ID:" not in out


def test_flwr_run_without_the_ca_is_refused(one_node: Deployment, tmp_path: Path) -> None:
    subprocess.run(["bash", str(REPO / "infra" / "tls" / "make-certs.sh"), str(tmp_path), "x"], check=True)
    config = one_node.home / "config.toml"
    address = f'address = "127.0.0.1:{one_node.port}"'
    other = f'root-certificates = "{tmp_path / "ca.pem"}"'
    entries = f"\n[superlink.no-ca]\n{address}\n\n[superlink.other-ca]\n{address}\n{other}\n"
    config.write_text(config.read_text() + entries)
    for federation in ("no-ca", "other-ca"):
        done = one_node.flwr("run", ".", federation, "--run-config", "spec='conf/federated_deploy.yaml'", timeout=60)
        assert done.returncode == 1
        assert "Connection to the SuperLink is unavailable." in done.stdout + done.stderr
    runs = one_node.flwr("ls", "scaleclf-deploy", "--format", "json")
    assert runs.returncode == 0 and json.loads(runs.stdout)["runs"] == []


@pytest.mark.slow
def test_deployment_run_with_secagg_and_distributed_dp_completes(tmp_path: Path) -> None:
    for dep in deploy(3):
        overrides = f"output.dir={tmp_path / 'runs'};federated.rounds=1"
        run_config = f"spec='{REPO / 'conf' / 'federated_deploy.yaml'}' overrides='{overrides}'"
        done = dep.flwr("run", ".", "scaleclf-deploy", "--stream", "--run-config", run_config, timeout=400)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        (run,) = (tmp_path / "runs").iterdir()
        assert f"run directory: {run}" in done.stdout
        privacy = json.loads((run / "privacy.json").read_text())
        assert privacy["secure_aggregation"] is True and privacy["dp"] == "distributed"
        assert privacy["replies_per_round"] == [3] and privacy["within_budget"] is True
        assert 0 < privacy["epsilon"] <= 8.0
        # Every SuperNode ran the ClientApp on its own partition, each in its own process.
        for i in range(3):
            log = (dep.state / f"node-{i}.log").read_text()
            assert "Start `flwr-clientapp` process" in log, log[-2000:]
