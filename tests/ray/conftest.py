"""Ray tests: every test here is marked ``ray``; one loopback cluster serves the whole directory.

The cluster (a head and a worker node, one CPU each) is started once per package with
``infra/ray/local-cluster.sh`` (the script users run) and stopped when this directory finishes,
so it is not kept alive while other engines' tests run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "infra" / "ray" / "local-cluster.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory with ``ray``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="package")
def ray_address() -> Iterator[str]:
    """Return the GCS address of the loopback cluster started by infra/ray/local-cluster.sh."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=120)
    started = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=120)


def job_spec(model: str, out: Path, address: str | None = None, **options: object) -> dict:
    """Return the spec the cluster tests share: 5,000 HIGGS-like rows, two workers, checkpoints."""
    params = {"xgboost": {"n_estimators": 40}, "rff_svm": {"n_components": 200}}.get(model, {})
    return {
        "name": f"ray-{model}",
        "seed": 5,
        "data": {"source": "synthetic:higgs", "label": "label", "rows": 5000},
        "model": {"name": model, "params": params},
        "engine": {
            "name": "ray",
            "address": address,
            "workers": 2,
            "options": {"checkpoint_every": 10, "max_failures": 2, **options},
        },
        "output": {"dir": str(out), "report": False},
    }


@pytest.fixture(scope="package")
def submitted_runs(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Return the run directories of xgboost and rff_svm trained by ``ray job submit`` jobs."""
    import yaml

    out = tmp_path_factory.mktemp("ray-jobs")
    ray_bin = Path(os.environ.get("RAY_BIN", REPO / ".venv" / "bin" / "ray"))
    dashboard = "http://127.0.0.1:" + os.environ.get("RAY_DASHBOARD_PORT", "8266")
    runs = {}
    for model in ("xgboost", "rff_svm"):
        config = out / f"{model}.yaml"
        spec = job_spec(model, out / "runs")
        del spec["engine"]["address"]
        config.write_text(yaml.safe_dump(spec))
        cmd = [
            ray_bin, "job", "submit", "--address", dashboard, "--working-dir", str(REPO),
            "--runtime-env", str(REPO / "infra" / "ray" / "runtime-env.yaml"),
            "--", "python", "-m", "jobs.ray_train", str(config),
        ]  # fmt: skip
        env = {**os.environ, "SCALECLF_CACHE": os.environ["SCALECLF_CACHE"]}
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        lines = [line for line in done.stdout.splitlines() if line.startswith(str(out))]
        assert lines, done.stdout[-3000:]
        runs[model] = Path(lines[-1].strip())
    return runs
