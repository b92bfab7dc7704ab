"""Dask across simulated hosts with TLS: scheduler on h1, workers on h2 and h3, the job's driver on h4.

Every node runs infra/dask/node.sh with its own certificate (infra/tls/make-certs.sh); the job
connects with engine.address=tls://10.77.0.11:8786 and engine.options.tls_*. The fits match the
local engine on the same 200k synthetic rows; killing a worker host mid-fit leaves block-wise
logistic regression to finish on the survivor with the same metrics, and xgboost.dask retries
once on the survivor (or stops with one line) within a bounded time; a client without a
certificate the cluster's CA signed is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts.conftest import MAKE_CERTS, REPO, Hosts, run_lines

pytestmark = pytest.mark.dask
PORT = 8786
BIN = str(Path(sys.executable).parent)
SCHEDULER = "tls://10.77.0.11:8786"
WORKERS = {"h2": "10.77.0.12", "h3": "10.77.0.13"}
BOUNDS = {"logistic_regression": 0.002, "xgboost": 0.01}
ENV = {"DASK_BIN": BIN, "PYTHONUNBUFFERED": "1"}


class DaskHosts:
    """The cluster's processes and how to reach it."""

    def __init__(self, hosts: Hosts, certs: Path, logs: Path) -> None:
        self.hosts, self.certs, self.logs = hosts, certs, logs

    def start_worker(self, host: str) -> None:
        node = [str(REPO / "infra/dask/node.sh"), "worker", SCHEDULER, "--host", WORKERS[host]]
        self.hosts.popen(host, "env", *_env(), *node, "--tls", str(self.certs), host, log=self.logs / f"{host}.log")

    def client(self, name: str = "client", certs: Path | None = None, timeout: float = 20):
        from distributed import Client
        from distributed.security import Security

        d = certs or self.certs
        security = Security(
            tls_ca_file=str(d / "ca.pem"),
            tls_client_cert=str(d / f"{name}.pem"),
            tls_client_key=str(d / f"{name}.key"),
            require_encryption=True,
        )
        return Client(SCHEDULER, security=security, timeout=timeout)

    def wait_workers(self, n: int, timeout: float = 90) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=timeout)

    def tls_options(self, name: str = "h4") -> list[str]:
        c = self.certs
        return [
            "--set",
            f"engine.options.tls_ca_file={c / 'ca.pem'}",
            "--set",
            f"engine.options.tls_cert={c / f'{name}.pem'}",
            "--set",
            f"engine.options.tls_key={c / f'{name}.key'}",
        ]


def _env() -> list[str]:
    return [f"{k}={v}" for k, v in ENV.items()]


@pytest.fixture(scope="module")
def dask_hosts(hosts: Hosts, certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskHosts]:
    """Scheduler on h1, one single-threaded worker on each of h2 and h3, all with TLS."""
    logs = tmp_path_factory.mktemp("dask-logs")
    cluster = DaskHosts(hosts, certs, logs)
    node = [str(REPO / "infra/dask/node.sh"), "scheduler", "--host", hosts.addr("h1"), "--port", str(PORT)]
    hosts.popen("h1", "env", *_env(), *node, "--tls", str(certs), "h1", log=logs / "h1.log")
    try:
        hosts.wait_port("h1", PORT)
        for host in WORKERS:
            cluster.start_worker(host)
        cluster.wait_workers(2)
        yield cluster
    finally:
        for host in ("h1", "h2", "h3", "h4"):
            hosts.kill(host)


def train(hosts: Hosts, model: str, *args: str, on_line=None, timeout: float = 600) -> tuple[int, list[str], Path]:
    """Run ``scaleclf train`` for the 200k-row HIGGS-like task in h4; return code, output lines, run dir."""
    argv = [BIN + "/python", "-m", "jobs.cli", "train", "conf/dask_higgs.yaml", "--set", f"model.name={model}", *args]
    return run_lines(hosts.cmd("h4", "env", f"PYTHONPATH={REPO}", "PYTHONUNBUFFERED=1", *argv), timeout, on_line)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


_LOCAL: dict[str, dict] = {}


def local_metrics(model: str, out: Path) -> dict:
    """The local engine's metrics on the same rows (computed once per model)."""
    if model not in _LOCAL:
        argv = [BIN + "/python", "-m", "jobs.cli", "train", "conf/dask_higgs.yaml", "--engine", "local"]
        done = subprocess.run(
            [*argv, "--set", f"model.name={model}", "--out", str(out)],
            cwd=REPO,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
            env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        _LOCAL[model] = metrics(Path(done.stdout.strip().splitlines()[-1]))
    return _LOCAL[model]


@pytest.mark.parametrize("model", ["logistic_regression", "xgboost"])
def test_dask_across_hosts_with_tls_matches_local(dask_hosts: DaskHosts, tmp_path: Path, model: str) -> None:
    code, lines, run_dir = train(
        dask_hosts.hosts,
        model,
        "--set",
        f"engine.address={SCHEDULER}",
        *dask_hosts.tls_options(),
        "--out",
        str(tmp_path),
    )
    assert code == 0, "\n".join(lines)
    got = metrics(run_dir)
    assert got["engine_info"]["scheduler"] == SCHEDULER
    assert got["engine_info"]["workers"] == 2
    assert got["rows"]["total"] == 200000
    local = local_metrics(model, tmp_path / "local")
    assert abs(got["test"]["auc"] - local["test"]["auc"]) <= BOUNDS[model], (got["test"], local["test"])


def test_every_listener_binds_its_host_address(dask_hosts: DaskHosts) -> None:
    for host in ("h1", *WORKERS):
        listening = dask_hosts.hosts.run(host, "ss", "-Hltn").stdout.split("\n")
        local = [line.split()[3] for line in listening if line.strip()]
        assert local, host
        assert all(a.rsplit(":", 1)[0] == dask_hosts.hosts.addr(host) for a in local), (host, local)


def connect(hosts: Hosts, address: str, certs: Path | None = None) -> str:
    """Try a Dask client from h4 in a fresh process; return "connected" or the refusal's type."""
    security = "None"
    if certs is not None:
        security = (
            f"Security(tls_ca_file='{certs}/ca.pem', tls_client_cert='{certs}/client.pem',"
            f" tls_client_key='{certs}/client.key', require_encryption=True)"
        )
    code = (
        "from distributed import Client\nfrom distributed.security import Security\n"
        f"try:\n    Client('{address}', timeout=5, security={security}).close(); print('connected')\n"
        "except Exception as exc:\n    print(type(exc).__name__)\n"
    )
    return hosts.run("h4", BIN + "/python", "-c", code, timeout=60).stdout.strip().splitlines()[-1]


def test_a_client_without_the_certificate_is_refused(dask_hosts: DaskHosts, tmp_path: Path) -> None:
    hosts = dask_hosts.hosts
    assert connect(hosts, SCHEDULER, dask_hosts.certs) == "connected"  # the cluster's own client certificate
    # No certificate: a plain client cannot open tls://, and tcp:// to the TLS port gets no answer.
    assert connect(hosts, SCHEDULER) != "connected"
    assert connect(hosts, "tcp://10.77.0.11:8786") != "connected"
    # A certificate from another CA: the scheduler refuses the handshake.
    rogue = tmp_path / "rogue"
    subprocess.run([str(MAKE_CERTS), str(rogue), "client"], check=True, capture_output=True)
    assert connect(hosts, SCHEDULER, rogue) != "connected"
    # The job: one line naming what is missing, or the refusal.
    code, lines, _ = train(dask_hosts.hosts, "logistic_regression", "--set", f"engine.address={SCHEDULER}")
    assert code != 0
    assert lines == [
        f"error: engine.address: {SCHEDULER} needs TLS settings: set engine.options.tls_ca_file, tls_cert and tls_key"
    ]
    options = [
        "--set",
        f"engine.options.tls_ca_file={rogue / 'ca.pem'}",
        "--set",
        f"engine.options.tls_cert={rogue / 'client.pem'}",
        "--set",
        f"engine.options.tls_key={rogue / 'client.key'}",
        "--set",
        "engine.options.timeout=5",
    ]
    code, lines, _ = train(dask_hosts.hosts, "logistic_regression", "--set", f"engine.address={SCHEDULER}", *options)
    assert code != 0 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: engine.address: cannot reach the Dask scheduler at {SCHEDULER} within 5s")


def kill_when_running(
    dask_hosts: DaskHosts, task_prefix: str, host: str, killed: dict, after: float = 0.0
) -> threading.Thread:
    """Kill ``host`` as soon as a task named ``task_prefix*`` runs on the cluster (the fit is under way)."""

    def running(dask_scheduler) -> list[str]:  # runs in the scheduler
        return [str(ts.key) for ts in dask_scheduler.tasks.values() if ts.state == "processing"]

    def watch() -> None:
        deadline = time.monotonic() + 300
        with dask_hosts.client() as c:
            while time.monotonic() < deadline:
                try:
                    keys = c.run_on_scheduler(running)
                except Exception:  # a busy scheduler: ask again
                    keys = []
                if any(k.startswith(task_prefix) or f"'{task_prefix}" in k for k in keys):
                    time.sleep(after)
                    dask_hosts.hosts.kill(host)
                    killed["at"] = time.monotonic()
                    return
                time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_worker_host_killed_mid_fit_blockwise_lr_completes_with_the_same_metrics(
    dask_hosts: DaskHosts, tmp_path: Path
) -> None:
    args = ["--set", f"engine.address={SCHEDULER}", *dask_hosts.tls_options(), "--out", str(tmp_path)]
    code, lines, undisturbed = train(dask_hosts.hosts, "logistic_regression", *args)
    assert code == 0, lines
    killed: dict = {}
    watcher = kill_when_running(dask_hosts, "network_totals", "h3", killed)
    try:
        code, lines, run_dir = train(dask_hosts.hosts, "logistic_regression", *args)
        watcher.join(timeout=5)
        assert "at" in killed, "the fit ended before a worker host could be killed"
        assert code == 0, "\n".join(lines)
        assert dask_hosts.hosts.pids("h3") == []
        got, want = metrics(run_dir), metrics(undisturbed)
        assert got["engine_info"]["workers"] == 1  # the survivor on h2 finished the fit
        assert got["test"]["auc"] == pytest.approx(want["test"]["auc"], abs=1e-9)
        assert got["test"]["log_loss"] == pytest.approx(want["test"]["log_loss"], abs=1e-9)
    finally:
        dask_hosts.start_worker("h3")
        dask_hosts.wait_workers(2)


def test_worker_host_killed_mid_xgboost_retries_once_on_the_survivor(dask_hosts: DaskHosts, tmp_path: Path) -> None:
    args = ["--set", f"engine.address={SCHEDULER}", *dask_hosts.tls_options(), "--out", str(tmp_path)]
    bound = 20
    killed: dict = {}
    # xgboost.dask's per-worker training task (map_worker_partitions) is named after its wrapper "fn".
    watcher = kill_when_running(dask_hosts, "fn-", "h3", killed, after=2.0)
    try:
        started = time.monotonic()
        code, lines, run_dir = train(
            dask_hosts.hosts, "xgboost", *args, "--set", f"engine.options.collective_timeout={bound}", timeout=300
        )
        watcher.join(timeout=5)
        assert "at" in killed, "xgboost finished before a worker host could be killed"
        took = time.monotonic() - started
        assert code == 0, "\n".join(lines)  # retried on h2 alone
        log = (run_dir / "logs" / "scaleclf.log").read_text()
        assert "xgboost training lost worker(s) tls://10.77.0.13:" in log
        assert "retrying once on the 1 surviving worker(s)" in log
        got = metrics(run_dir)
        assert got["engine_info"]["workers"] == 1
        local = local_metrics("xgboost", tmp_path / "local")
        assert abs(got["test"]["auc"] - local["test"]["auc"]) <= BOUNDS["xgboost"]
        assert took < 240, took
    finally:
        dask_hosts.start_worker("h3")
        dask_hosts.wait_workers(2)
