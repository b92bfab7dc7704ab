"""A secret Spark option reaches the JVM without appearing on any command line or in any file of the run."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from pipelines.engines.spark.engine import secret_properties
from tests.conftest import REPO, base_spec

SECRET_KEY = "spark.hadoop.fs.s3a.secret.key"


class CommandLines:
    """Every process's command line (``ps -eo args``), polled every 50 ms while a block runs."""

    def __init__(self, needle: str) -> None:
        self.needle, self.hits, self.polls = needle, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
            self.polls += 1
            self.hits += [line[:200] for line in out.splitlines() if self.needle in line and "ps -eo" not in line]
            self._stop.wait(0.05)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYSPARK_SUBMIT_ARGS"}
    return env | {"PYTHONPATH": str(REPO), "SCALECLF_SIGNING_KEY": "k", "SCALECLF_SPARK_LOG": str(tmp / "driver.log")}


@pytest.mark.slow
def test_a_secret_option_reaches_spark_and_no_command_line(tmp_path: Path) -> None:
    secret = f"S3CR3T-{uuid.uuid4().hex}"
    script = (
        "from pipelines.engines import create_engine\n"
        "from pipelines.spec import EngineSpec\n"
        f"spec = EngineSpec(name='spark', workers=1, options={{'{SECRET_KEY}': '{secret}'}})\n"
        "with create_engine(spec, 0) as engine:\n"
        f"    print(engine.session.sparkContext.getConf().get('{SECRET_KEY}') == '{secret}')\n"
    )
    with CommandLines(secret) as seen:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "True"  # the JVM holds the secret
    assert seen.polls > 10 and seen.hits == []
    assert not list(tmp_path.rglob("secret.properties"))


@pytest.mark.slow
def test_a_spark_run_with_a_secret_writes_it_nowhere(tmp_path: Path) -> None:
    secret = f"S3CR3T-{uuid.uuid4().hex}"
    spec = base_spec("synthetic:imbalanced", rows=2000)
    spec["engine"] = {"name": "spark", "workers": 1, "options": {SECRET_KEY: secret}}
    spec["output"] |= {"dir": str(tmp_path / "runs"), "report": True}
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(spec))
    with CommandLines(secret) as seen:
        done = subprocess.run(
            [sys.executable, "-m", "jobs.cli", "train", str(config)],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr
    assert seen.polls > 10 and seen.hits == []
    assert secret not in done.stdout + done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"spec.yaml", "report.html", "logs/scaleclf.log"} <= {p.relative_to(run_dir).as_posix() for p in files}
    assert [p for p in files if secret.encode() in p.read_bytes()] == []
    assert yaml.safe_load((run_dir / "spec.yaml").read_text())["engine"]["options"][SECRET_KEY] == "***"


def test_the_secret_properties_file_is_private_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    monkeypatch.delenv("SPARK_HOME", raising=False)
    with secret_properties({SECRET_KEY: "a b\\c\n"}, tmp_path):
        path = tmp_path / "secret.properties"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == f"{SECRET_KEY} a b\\\\c\\n\n"
        assert os.environ["PYSPARK_SUBMIT_ARGS"] == f"--properties-file {path} pyspark-shell"
    assert not path.exists() and "PYSPARK_SUBMIT_ARGS" not in os.environ
