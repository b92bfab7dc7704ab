"""``flwr run . local-simulation`` with [tool.flwr.app]: the same ServerApp writes the run directory."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def flwr_run(flower_home: Path, out: Path, overrides: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    """Run conf/federated_logreg.yaml with ``flwr run .`` on 10 supernodes; return the process and run dir."""
    joined = ";".join([f"output.dir={out}", *overrides])
    run_config = f"spec='{REPO / 'conf' / 'federated_logreg.yaml'}' overrides='{joined}'"
    done = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "flwr"),
            "run",
            ".",
            "local-simulation",
            "--stream",
            "--run-config",
            run_config,
            "--federation-config",
            "num-supernodes=10",
        ],
        cwd=REPO,
        env={**os.environ, "FLWR_HOME": str(flower_home)},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = list(out.iterdir()) if out.exists() else []
    assert len(runs) == 1, done.stdout[-3000:]
    return done, runs[0]


def test_flwr_run_trains_ten_client_fedavg_logistic_regression(superlink: Path, tmp_path: Path) -> None:
    done, run = flwr_run(superlink, tmp_path / "runs", ["data.rows=5000", "federated.rounds=3", "output.report=false"])
    assert f"run directory: {run}" in done.stdout
    history = json.loads((run / "history.json").read_text())
    assert history["clients"] == 10 and len(history["rounds"]) == 4
    assert history["rounds"][-1]["train_clients"] == list(range(10))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["engine"] == "federated" and metrics["test"]["auc"] > 0.65
    assert (run / "model" / "manifest.json").is_file() and (run / "predictions.parquet").is_file()


def test_flwr_run_aggregates_with_secagg_plus_and_distributed_dp(superlink: Path, tmp_path: Path) -> None:
    overrides = [
        "data.rows=5000",
        "federated.rounds=2",
        "output.report=false",
        "federated.centralized_baseline=false",
        "federated.privacy.secure_aggregation.enabled=true",
        "federated.privacy.dp=distributed",
        "federated.privacy.noise_multiplier=0.5",
    ]
    _, run = flwr_run(superlink, tmp_path / "runs", overrides)
    privacy = json.loads((run / "privacy.json").read_text())
    assert privacy["secure_aggregation"] is True and privacy["dp"] == "distributed"
    assert privacy["replies_per_round"] == [10, 10] and privacy["epsilon"] > 0
    # The rounds ran through SecAgg+ (federated/secagg.py): the server saw how many replied, not who.
    rounds = json.loads((run / "history.json").read_text())["rounds"][1:]
    assert [r["train_replies"] for r in rounds] == [10, 10]
    assert all(r["train_clients"] == [] for r in rounds), rounds
