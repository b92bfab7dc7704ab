"""Ray across simulated hosts with TLS and token authentication: head on h1, worker nodes on h2 and h3.

Every node runs infra/ray/node.sh with its own certificate (infra/tls/make-certs.sh) and the
cluster's token; the head has no CPUs, so training runs on the worker hosts. A driver runs on a
node of the cluster (Ray's drivers do): the job on h1 connects with engine.address=10.77.0.11:6379
and h1's certificate; `ray job submit` from h4 reaches the Jobs API with the token only. Checkpoints
go to a directory every host sees (one file system here). The fits match the local engine on the
same 200k synthetic rows; a worker host killed mid-fit is replaced by h4 and Ray Train resumes from
its last checkpoint; without a replacement the run stops with one line in bounded time; clients
without the certificate or the token are refused.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts.conftest import MAKE_CERTS, REPO, Hosts, run_lines

pytestmark = pytest.mark.ray
BIN = str(Path(sys.executable).parent)
NODE = str(REPO / "infra/ray/node.sh")
HEAD = "10.77.0.11:6379"
JOBS_API = "http://10.77.0.11:8265"
WORKERS = ("h2", "h3")
BOUNDS = {"logistic_regression": 0.002, "xgboost": 0.01}  # as tests/hosts/test_dask_hosts.py
CONFIG = ["conf/ray_higgs.yaml", "--set", "data.rows=200000", "--set", "engine.workers=2"]


class RayHosts:
    """The cluster's nodes, its credentials and the shared checkpoint directory."""

    def __init__(self, hosts: Hosts, certs: Path, token: Path, work: Path) -> None:
        self.hosts, self.certs, self.token, self.work = hosts, certs, token, work
        self.storage = work / "checkpoints"  # every host sees it: one file system
        self.storage.mkdir(exist_ok=True)

    def settings(self, name: str | None, token: Path | None = None, certs: Path | None = None) -> list[str]:
        """Return the KEY=VALUE settings `node.sh env` prints for certificate ``name`` and the token."""
        args = []
        if name:
            args += ["--tls", str(certs or self.certs), name]
        if token:
            args += ["--token", str(token)]
        out = subprocess.run([NODE, "env", *args], capture_output=True, text=True, check=True).stdout
        return [shlex.split(line)[1] for line in out.splitlines()]

    def start(self, host: str, role: str) -> None:
        node = [NODE, "head", "--host", self.hosts.addr(host)] if role == "head" else [NODE, "worker", HEAD]
        if role == "worker":
            node += ["--host", self.hosts.addr(host), "--cpus", "1"]
        node += ["--tls", str(self.certs), host, "--token", str(self.token), "--object-store-mb", "512"]
        self.hosts.popen(host, "env", f"RAY_BIN_DIR={BIN}", *node, log=self.work / f"{host}.log")

    def alive_nodes(self) -> set[str]:
        """Return the addresses of the cluster's alive nodes (a killed one turns dead within seconds)."""
        got = self.hosts.run(
            "h1",
            "env",
            *self.settings("h1", self.token),
            f"{BIN}/ray",
            "list",
            "nodes",
            f"--address={HEAD}",
            "--filter",
            "state=ALIVE",
            "--format",
            "json",
            timeout=60,
        )
        try:
            return {node["node_ip"] for node in json.loads(got.stdout)}
        except (ValueError, KeyError, TypeError):
            return set()

    def wait_nodes(self, *hosts: str, timeout: float = 120) -> None:
        """Wait until exactly ``hosts`` are the alive nodes."""
        want = {self.hosts.addr(h) for h in hosts}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_nodes() == want:
                return
            time.sleep(1)
        raise TimeoutError(f"Ray nodes {sorted(want)} were not the alive ones within {timeout:g}s")

    def train(
        self, model: str, *args: str, settings: list[str] | None = None, on_line=None, timeout: float = 400
    ) -> tuple[int, list[str], Path]:
        """Run ``scaleclf train`` on h1 against the cluster; return code, output lines and run dir."""
        env = self.settings("h1", self.token) if settings is None else settings
        argv = [f"{BIN}/python", "-m", "jobs.cli", "train", *CONFIG, "--set", f"model.name={model}"]
        argv += ["--set", f"engine.address={HEAD}", "--set", f"engine.options.storage_path={self.storage}"]
        return run_lines(
            self.hosts.cmd("h1", "env", f"PYTHONPATH={REPO}", "PYTHONUNBUFFERED=1", *env, *argv, *args),
            timeout,
            on_line,
        )


@pytest.fixture(scope="module")
def ray_hosts(hosts: Hosts, certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHosts]:
    """Head on h1 (no CPUs), a one-CPU worker node on each of h2 and h3; TLS and a token on every node."""
    work = tmp_path_factory.mktemp("ray-hosts")
    made = subprocess.run([NODE, "token", str(work / "token")], capture_output=True, text=True, check=True)
    token = Path(made.stdout.strip())
    cluster = RayHosts(hosts, certs, token, work)
    try:
        cluster.start("h1", "head")
        hosts.wait_port("h1", 6379, timeout=90)
        for host in WORKERS:
            cluster.start(host, "worker")
        cluster.wait_nodes("h1", *WORKERS)
        yield cluster
    finally:
        for host in ("h1", "h2", "h3", "h4"):
            hosts.kill(host)
        for host in ("h1", "h2", "h3", "h4"):
            shutil.rmtree(f"/tmp/scaleclf-ray-{hosts.addr(host)}", ignore_errors=True)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


_LOCAL: dict[str, dict] = {}
_RAY: dict[str, dict] = {}


def local_metrics(model: str, out: Path) -> dict:
    """The local engine's metrics on the same rows (computed once per model)."""
    if model not in _LOCAL:
        # The same 200k rows and seed as conf/ray_higgs.yaml with data.rows=200000.
        argv = [f"{BIN}/python", "-m", "jobs.cli", "train", "conf/dask_higgs.yaml", "--engine", "local"]
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


def test_xgboost_by_engine_address_with_tls_and_token_matches_local(ray_hosts: RayHosts, tmp_path: Path) -> None:
    code, lines, run_dir = ray_hosts.train("xgboost", "--out", str(tmp_path))
    assert code == 0, "\n".join(lines)
    got = metrics(run_dir)
    _RAY["xgboost"] = got
    assert got["engine_info"]["address"] == HEAD
    assert got["engine_info"]["cpus"] == 2  # the two worker hosts; the head has none
    assert got["rows"]["total"] == 200000
    assert any(ray_hosts.storage.glob("scaleclf-xgboost-*/checkpoint_*"))  # on the shared path
    local = local_metrics("xgboost", tmp_path / "local")
    assert abs(got["test"]["auc"] - local["test"]["auc"]) <= BOUNDS["xgboost"], (got["test"], local["test"])


def test_logistic_regression_by_ray_job_submit_from_another_host_matches_local(
    ray_hosts: RayHosts, tmp_path: Path
) -> None:
    # The job's code is uploaded (--working-dir); the nodes' Python already has the locked dependencies.
    out = tmp_path / "runs"
    entry = ["python", "-m", "jobs.ray_train", *CONFIG, "--set", "model.name=logistic_regression"]
    entry += ["--set", f"engine.options.storage_path={ray_hosts.storage}", "--set", f"output.dir={out}"]
    submit = [f"{BIN}/ray", "job", "submit", "--address", JOBS_API, "--working-dir", str(REPO)]
    submit += ["--runtime-env", str(REPO / "infra/ray/runtime-env.yaml"), "--", *entry]
    env = ray_hosts.settings(None, ray_hosts.token)
    done = ray_hosts.hosts.run("h4", "env", *env, *submit, timeout=400, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    (run_dir,) = out.iterdir()
    got = metrics(run_dir)
    assert got["engine_info"]["address"] == "auto"
    assert got["engine_info"]["cpus"] == 2
    local = local_metrics("logistic_regression", tmp_path / "local")
    bound = BOUNDS["logistic_regression"]
    assert abs(got["test"]["auc"] - local["test"]["auc"]) <= bound, (got["test"], local["test"])


def listeners(hosts: Hosts, host: str) -> list[tuple[str, int, str]]:
    """Return (address, port, process name) of every TCP listener in ``host``."""
    got = []
    for line in hosts.run(host, "ss", "-Hltnp").stdout.splitlines():
        fields = line.split()
        address, _, port = fields[3].rpartition(":")
        name = fields[-1].split('"')[1] if '"' in fields[-1] else ""
        got.append((address.strip("[]").removeprefix("::ffff:"), int(port), name))
    return got


def test_listeners_bind_the_host_address_or_speak_tls(ray_hosts: RayHosts) -> None:
    from pipelines.engines.ray.address import speaks_tls

    hosts = ray_hosts.hosts
    for host in ("h1", *WORKERS):
        own = hosts.addr(host)
        found = listeners(hosts, host)
        assert found, host
        # Ray 2.55's C++ gRPC servers (GCS, raylet, object manager, workers), the dashboard agent's
        # gRPC port and the Prometheus endpoints listen on every interface, with no setting to bind
        # them (docs/deploy.md); all but the metrics endpoints (every node's 44230, the head's
        # autoscaler 44217 and dashboard 44227) speak TLS only. Every other listener binds the
        # host's address or loopback.
        wide = [(port, name) for address, port, name in found if address in ("0.0.0.0", "*", "::")]
        assert all(address in (own, "127.0.0.1", "0.0.0.0", "*", "::") for address, _, _ in found), (host, found)
        assert all(name.startswith(("gcs_server", "raylet", "ray::", "python")) for _, name in wide), (host, wide)
        plain = sorted(port for port, _ in wide if not speaks_tls(own, port, 5))
        assert plain == ([44217, 44227, 44230] if host == "h1" else [44230]), (host, wide)
    # The dashboard / Jobs API and Ray Client bind the head's address.
    assert {(a, p) for a, p, _ in listeners(hosts, "h1") if p in (8265, 10001)} >= {
        ("10.77.0.11", 8265),
        ("10.77.0.11", 10001),
    }


def test_clients_without_the_certificate_or_token_are_refused(ray_hosts: RayHosts, tmp_path: Path) -> None:
    # No TLS settings: one line naming them, at once (ray.init would retry for minutes).
    code, lines, _ = ray_hosts.train("logistic_regression", settings=ray_hosts.settings(None, ray_hosts.token))
    assert code != 0
    assert lines[-1:] == [
        f"error: engine.address: the Ray cluster at {HEAD} uses TLS: set RAY_USE_TLS=1, RAY_TLS_SERVER_CERT,"
        " RAY_TLS_SERVER_KEY, RAY_TLS_CA_CERT (infra/ray/node.sh env --tls CERTDIR NAME prints them)"
    ]
    # A certificate from another CA, trusted or not.
    rogue = tmp_path / "rogue"
    subprocess.run([str(MAKE_CERTS), str(rogue), "h1"], check=True, capture_output=True)
    code, lines, _ = ray_hosts.train(
        "logistic_regression", settings=ray_hosts.settings("h1", ray_hosts.token, certs=rogue)
    )
    assert code != 0
    assert lines[-1].startswith(f"error: engine.address: TLS with the Ray cluster at {HEAD} failed: "), lines
    # Another CA's certificate with the cluster's CA: the GCS refuses it.
    mixed = [s for s in ray_hosts.settings("h1", certs=rogue) if not s.startswith("RAY_TLS_CA_CERT=")]
    mixed += [f"RAY_TLS_CA_CERT={ray_hosts.certs}/ca.pem", *ray_hosts.settings(None, ray_hosts.token)]
    code, lines, _ = ray_hosts.train("logistic_regression", settings=mixed)
    assert code != 0
    assert (
        lines[-1]
        == f"error: engine.address: the Ray cluster at {HEAD} refused this client's certificate (RAY_TLS_SERVER_CERT)"
    )
    # The certificate but no token: Ray refuses it (within its ~20 s of retries).
    started = time.monotonic()
    code, lines, _ = ray_hosts.train("logistic_regression", settings=ray_hosts.settings("h1"))
    assert code != 0
    assert lines[-1].startswith(f"error: engine.address: cannot join the Ray cluster at {HEAD}"), lines
    assert time.monotonic() - started < 60
    # The Jobs API without the token, or with another one.
    wrong = tmp_path / "wrong-token"
    subprocess.run([NODE, "token", str(wrong)], check=True, capture_output=True)
    for env in ([], ray_hosts.settings(None, wrong)):
        done = ray_hosts.hosts.run("h4", "env", *env, f"{BIN}/ray", "job", "list", "--address", JOBS_API, timeout=60)
        assert done.returncode != 0
        assert "token" in (done.stdout + done.stderr).lower()


def kill_at_checkpoint(ray_hosts: RayHosts, model: str, host: str, killed: dict, nth: int = 1) -> threading.Thread:
    """Kill ``host`` once the run of ``model`` wrote its ``nth`` checkpoint to the shared path.

    A checkpoint's directory appears before Ray Train registers it, so the run resumes from the
    one before the last written (docs/engines/ray.md).
    """
    before = set(ray_hosts.storage.glob(f"scaleclf-{model}-*"))

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            runs = set(ray_hosts.storage.glob(f"scaleclf-{model}-*")) - before
            if any(len(list(run.glob("checkpoint_*"))) >= nth for run in runs):
                ray_hosts.hosts.kill(host)
                killed["at"] = time.monotonic()
                return
            time.sleep(0.1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_worker_host_killed_mid_fit_resumes_from_its_checkpoint_on_a_replacement_host(
    ray_hosts: RayHosts, tmp_path: Path
) -> None:
    killed: dict = {}
    watcher = kill_at_checkpoint(ray_hosts, "xgboost", "h3", killed, nth=2)
    replaced = threading.Thread(
        target=lambda: (watcher.join(), killed and ray_hosts.start("h4", "worker")), daemon=True
    )
    replaced.start()
    try:
        started = time.monotonic()
        # resources_timeout also bounds a restarted worker's wait for the blocks lost with h3: their
        # load tasks need a CPU the new group holds, so the first restart fails and frees them.
        options = ["--set", "engine.options.checkpoint_every=10", "--set", "engine.options.resources_timeout=20"]
        options += ["--set", "engine.options.max_failures=3"]
        code, lines, run_dir = ray_hosts.train("xgboost", *options, "--out", str(tmp_path))
        took = time.monotonic() - started
        assert "at" in killed, "the fit ended before a worker host could be killed"
        assert code == 0, "\n".join(lines)
        assert ray_hosts.hosts.pids("h3") == []
        fit = metrics(run_dir)["engine_info"]["last_fit"]
        assert fit["round"] == 200
        assert fit["resumed_from"] >= 10  # from a checkpoint, not from scratch
        undisturbed = _RAY.get("xgboost") or local_metrics("xgboost", tmp_path / "local")
        assert abs(metrics(run_dir)["test"]["auc"] - undisturbed["test"]["auc"]) <= 0.005
        assert took < 300, took
    finally:
        replaced.join(timeout=30)
        ray_hosts.hosts.kill("h4")
        ray_hosts.start("h3", "worker")
        ray_hosts.wait_nodes("h1", *WORKERS)


def test_worker_host_lost_without_replacement_stops_with_one_line(ray_hosts: RayHosts, tmp_path: Path) -> None:
    killed: dict = {}
    watcher = kill_at_checkpoint(ray_hosts, "xgboost", "h3", killed)
    options = ["--set", "engine.options.checkpoint_every=10", "--set", "engine.options.resources_timeout=5"]
    options += ["--set", "engine.options.max_failures=1"]
    try:
        code, lines, _ = ray_hosts.train("xgboost", *options, "--out", str(tmp_path))
        watcher.join(timeout=5)
        assert "at" in killed, "the fit ended before a worker host could be killed"
        stopped = time.monotonic() - killed["at"]
        assert code != 0
        assert lines[-1].startswith("error: ray: training xgboost failed: "), lines[-3:]
        assert stopped < 90, stopped
    finally:  # the module's last test: its teardown stops every host
        watcher.join(timeout=5)
