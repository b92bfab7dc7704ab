"""infra/spark/submit.sh passes every spark-submit option through and reads $SPARK_CONF_DIR's defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUBMIT = REPO / "infra" / "spark" / "submit.sh"


def dry_run(*args: str, **env: str) -> list[str]:
    done = subprocess.run(
        [str(SUBMIT), *args],
        env={**os.environ, "PYTHON": sys.executable, "SCALECLF_DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_spark_submit_flags_pass_through_after_the_scripts_defaults() -> None:
    argv = dry_run(
        "--master",
        "spark://10.77.0.11:7077",
        "--conf",
        "spark.executor.memory=2g",
        "--deploy-mode",
        "client",
        "--executor-memory",
        "3g",
        "--py-files",
        "dist/spark/scaleclf.zip",
        "--archives",
        "env.tar.gz#env",
        "--conf=spark.authenticate=true",
        "--verbose",
        "conf/quickstart.yaml",
        "--set",
        "seed=1",
    )
    assert argv[0].endswith("/bin/spark-submit")
    assert argv[1:3] == ["--master", "spark://10.77.0.11:7077"]
    job = argv.index(str(REPO / "jobs" / "spark_train.py"))
    assert argv[job - 12 : job] == [
        "--conf",
        "spark.executor.memory=2g",
        "--deploy-mode",
        "client",
        "--executor-memory",
        "3g",
        "--py-files",
        "dist/spark/scaleclf.zip",
        "--archives",
        "env.tar.gz#env",
        "--conf=spark.authenticate=true",
        "--verbose",
    ]
    assert argv[job + 1 :] == ["conf/quickstart.yaml", "--set", "seed=1"]
    # No forced properties file or deploy mode: spark-submit reads $SPARK_CONF_DIR/spark-defaults.conf.
    assert "--properties-file" not in argv and argv.count("--deploy-mode") == 1


def test_master_defaults_to_spark_master_and_the_conf_dir_is_the_clusters() -> None:
    argv = dry_run("conf/quickstart.yaml", SPARK_MASTER="spark://10.0.0.5:7077")
    assert argv[1:3] == ["--master", "spark://10.0.0.5:7077"]
    assert argv[-1] == "conf/quickstart.yaml"


def test_an_option_without_its_value_is_one_error_line() -> None:
    done = subprocess.run(
        [str(SUBMIT), "--executor-memory"],
        env={**os.environ, "PYTHON": sys.executable, "SCALECLF_DRY_RUN": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: spark-submit option --executor-memory needs a value"


def test_spark_defaults_name_no_address() -> None:
    conf = (REPO / "conf" / "spark-defaults.conf").read_text()
    keys = [line.split()[0] for line in conf.splitlines() if line.strip() and not line.startswith("#")]
    assert "spark.driver.host" not in keys and "spark.driver.bindAddress" not in keys
    assert "127.0.0.1" not in "\n".join(line for line in conf.splitlines() if not line.startswith("#"))
