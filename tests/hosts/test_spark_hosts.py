"""Spark across simulated hosts: a standalone master on h1, workers on h2 and h3, the driver on h4.

Every node and the driver share a cluster configuration (infra/spark/cluster-conf.sh):
spark.authenticate with a secret and encrypted RPC. The job goes through infra/spark/submit.sh
with spark-submit flags passed through and the code shipped with --py-files, as to real machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts.conftest import REPO, Hosts

pytestmark = pytest.mark.spark
BIN = str(Path(sys.executable).parent)
MASTER = "spark://10.77.0.11:7077"


def master_state() -> dict:
    with urllib.request.urlopen("http://10.77.0.11:8080/json/", timeout=3) as r:
        return json.load(r)


class SparkHosts:
    def __init__(self, hosts: Hosts, conf: Path, logs: Path) -> None:
        self.hosts, self.conf, self.logs = hosts, conf, logs

    def env(self, conf: Path | None = None) -> list[str]:
        return [f"PYTHON={BIN}/python", f"SPARK_CONF_DIR={conf or self.conf}", f"SCALECLF_SPARK_DIR={self.logs}/spark"]

    def start_worker(self, host: str) -> None:
        node = [str(REPO / "infra/spark/node.sh"), "worker", MASTER, "--host", self.hosts.addr(host)]
        self.hosts.popen(
            host, "env", *self.env(), *node, "--cores", "1", "--memory", "2g", log=self.logs / f"{host}.log"
        )

    def wait_workers(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if master_state().get("aliveworkers", 0) >= n:
                    return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"{n} Spark workers did not register within {timeout:g}s")

    def submit(self, config: str, *args: str, conf: Path | None = None, timeout: float = 600):
        zipped = REPO / "dist/spark/scaleclf.zip"
        flags = ["--master", MASTER, "--conf", "spark.executor.memory=1g", "--executor-memory", "1g"]
        flags += ["--deploy-mode", "client", "--total-executor-cores", "2", "--py-files", str(zipped)]
        env = [*self.env(conf), f"SPARK_LOCAL_IP={self.hosts.addr('h4')}"]
        return self.hosts.run(
            "h4", "env", *env, str(REPO / "infra/spark/submit.sh"), *flags, config, *args, timeout=timeout, cwd=REPO
        )


@pytest.fixture(scope="module")
def spark_hosts(hosts: Hosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkHosts]:
    logs = tmp_path_factory.mktemp("spark-hosts")
    conf = logs / "conf"
    subprocess.run([str(REPO / "infra/spark/cluster-conf.sh"), str(conf)], check=True, capture_output=True)
    subprocess.run(
        [str(REPO / "infra/spark/package.sh")],
        env={**os.environ, "PYTHON": f"{BIN}/python", "SCALECLF_SKIP_ENV": "1"},
        check=True,
        capture_output=True,
    )
    cluster = SparkHosts(hosts, conf, logs)
    node = [str(REPO / "infra/spark/node.sh"), "master", "--host", hosts.addr("h1")]
    hosts.popen("h1", "env", *cluster.env(), *node, log=logs / "h1.log")
    try:
        hosts.wait_port("h1", 7077, timeout=120)
        for host in ("h2", "h3"):
            cluster.start_worker(host)
        cluster.wait_workers(2)
        yield cluster
    finally:
        for host in ("h1", "h2", "h3", "h4"):
            hosts.kill(host)


UNDISTURBED: dict[str, dict] = {}


def test_spark_across_hosts_with_authentication_matches_local(spark_hosts: SparkHosts, tmp_path: Path) -> None:
    done = spark_hosts.submit("conf/dask_higgs.yaml", "--set", "model.name=logistic_regression", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    run = Path(done.stdout.strip().splitlines()[-1])
    got = json.loads((run / "metrics.json").read_text())
    UNDISTURBED["logistic_regression"] = got
    assert got["engine"] == "spark" and got["engine_info"]["master"] == MASTER
    assert got["rows"]["total"] == 200000
    argv = [f"{BIN}/python", "-m", "jobs.cli", "train", "conf/dask_higgs.yaml", "--engine", "local", "--set"]
    local = subprocess.run(
        [*argv, "model.name=logistic_regression", "--out", str(tmp_path / "local")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    assert local.returncode == 0, local.stderr
    want = json.loads((Path(local.stdout.strip().splitlines()[-1]) / "metrics.json").read_text())
    assert abs(got["test"]["auc"] - want["test"]["auc"]) <= 0.002
    # The driver ran on h4 and the executors on h2 and h3: the master saw one finished application.
    apps = master_state()["completedapps"]
    assert apps and apps[-1]["state"] == "FINISHED"


def test_a_driver_without_the_secret_is_refused(spark_hosts: SparkHosts, tmp_path: Path) -> None:
    # conf/ holds the loopback defaults: no spark.authenticate, no secret.
    started = time.monotonic()
    done = spark_hosts.submit(
        "conf/dask_higgs.yaml",
        "--set",
        "model.name=logistic_regression",
        "--out",
        str(tmp_path),
        conf=REPO / "conf",
        timeout=300,
    )
    assert done.returncode != 0
    assert done.stdout.strip() == ""
    assert time.monotonic() - started < 240
    assert not list(tmp_path.glob("*/metrics.json"))


def test_worker_host_killed_mid_fit_spark_reruns_the_lost_tasks(spark_hosts: SparkHosts, tmp_path: Path) -> None:
    if "logistic_regression" not in UNDISTURBED:
        pytest.skip("needs the undisturbed run of test_spark_across_hosts_with_authentication_matches_local")
    hosts = spark_hosts.hosts
    env = [*spark_hosts.env(), f"SPARK_LOCAL_IP={hosts.addr('h4')}"]
    zipped = REPO / "dist/spark/scaleclf.zip"
    flags = ["--master", MASTER, "--executor-memory", "1g", "--total-executor-cores", "2", "--py-files", str(zipped)]
    argv = [
        str(REPO / "infra/spark/submit.sh"),
        *flags,
        "conf/dask_higgs.yaml",
        "--set",
        "model.name=logistic_regression",
    ]
    proc = subprocess.Popen(
        hosts.cmd("h4", "env", *env, *argv, "--out", str(tmp_path)),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        killed = False
        progress = []
        for line in proc.stderr:  # progress lines: the rows are loaded and cached, the fit starts
            progress.append(line)
            if "loaded and profiled" in line and not killed:
                hosts.kill("h3")
                killed = True
        out = proc.stdout.read()
        assert proc.wait(timeout=900) == 0, "".join(progress)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        spark_hosts.start_worker("h3")
    assert killed
    run = Path(out.strip().splitlines()[-1])
    got, want = json.loads((run / "metrics.json").read_text()), UNDISTURBED["logistic_regression"]
    assert got["test"]["auc"] == pytest.approx(want["test"]["auc"], abs=1e-6)
    assert got["test"]["log_loss"] == pytest.approx(want["test"]["log_loss"], abs=1e-6)
    # The driver saw the executor on h3 go and ran its tasks elsewhere.
    log = (run / "logs" / "spark-driver.log").read_text()
    assert "10.77.0.13" in log and ("Lost executor" in log or "ExecutorLost" in log or "removed" in log.lower())
