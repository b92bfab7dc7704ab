"""Commands write generated files under paths git ignores, so a checkout stays clean after using it."""

from __future__ import annotations

import shutil
import subprocess

import click
import pytest

from tests.conftest import REPO

pytestmark = [
    pytest.mark.local,
    pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout"),
]


def _default(path: tuple[str, ...], option: str) -> str:
    from typer.main import get_command

    from jobs.cli import app

    command: click.Command = get_command(app)
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return str(next(p for p in command.params if p.name == option).default)


def _ignored(relative: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", relative], cwd=REPO, timeout=30)
    return done.returncode == 0


def test_default_outputs_of_every_command_are_ignored() -> None:
    from pipelines.spec import OutputSpec

    outputs = {
        "train/federate run": f"{OutputSpec().dir}/job-xgboost-local-20260101-000000/metrics.json",
        "bench": f"{_default(('bench',), 'out')}/bench.json",
        "compare": f"{_default(('compare',), 'out')}/compare.json",
        "data generate": "out/data/churn-1000.parquet",
    }
    assert _default(("bench",), "out").startswith("out") and _default(("compare",), "out").startswith("out")
    assert [name for name, path in outputs.items() if not _ignored(path)] == []


@pytest.mark.parametrize(
    "path",
    [
        "mlruns/0/meta.yaml",
        "mlflow.db",
        "mlartifacts/1/model.pkl",
        "dist/spark/scaleclf.zip",
        "spark-warehouse/t/part-0.parquet",
        "metastore_db/db.lck",
        "derby.log",
        "dagster_home/storage/x",
        "logs/scaleclf.log",
        ".scaleclf-cache/synthetic/x.parquet",
    ],
)
def test_files_engines_and_tools_leave_behind_are_ignored(path: str) -> None:
    assert _ignored(path)


def test_no_tracked_file_is_a_generated_output() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--ignored", "--exclude-standard"], cwd=REPO, capture_output=True, text=True
    )
    assert tracked.stdout.split() == []
