"""Federated simulation end to end: CLI run directory, parity with the local engine, failures, strategies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import terminal_noise

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "conf" / "federated_logreg.yaml"


def write_spec(tmp_path: Path, **changes: object) -> Path:
    """Return a copy of conf/federated_logreg.yaml shrunk for tests, with dotted-key changes."""
    raw = yaml.safe_load(SPEC.read_text())
    raw["data"]["rows"] = 10_000
    raw["federated"]["rounds"] = 4
    raw["federated"]["centralized_baseline"] = False
    raw["output"] = {"dir": str(tmp_path / "runs"), "report": False}
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_fedavg_iid_matches_the_local_engine_and_writes_the_run_directory(tmp_path: Path, cli) -> None:
    spec = write_spec(tmp_path, **{"output.report": True, "federated.centralized_baseline": True})
    result = cli("federate", spec)
    assert result.code == 0, result.err
    run = Path(result.last_line)
    assert run.is_dir() and run.parent == tmp_path / "runs"
    for name in ("spec.yaml", "metrics.json", "predictions.parquet", "history.json", "partitions.json", "report.html"):
        assert (run / name).is_file(), name
    assert (run / "model" / "manifest.json").is_file()
    assert (run / "plots" / "learning_curve.png").is_file() and (run / "plots" / "partitions.png").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert [r["round"] for r in history["rounds"]] == [0, 1, 2, 3, 4]
    last = history["rounds"][-1]
    assert last["train_clients"] == list(range(10)) and last["bytes_sent"] > 0 and last["bytes_received"] > 0
    assert last["federated_evaluation"]["accuracy"] > 0.5 and last["duration_s"] > 0
    partitions = json.loads((run / "partitions.json").read_text())
    assert len(partitions["clients"]) == 10 and partitions["test_rows"] == metrics["rows"]["test"]
    assert metrics["engine"] == "federated"

    # The same spec on the local engine: same test rows, AUC within 0.01.
    local = cli("train", spec, "--set", "output.report=false")
    assert local.code == 0, local.err
    central = json.loads((Path(local.last_line) / "metrics.json").read_text())
    assert central["rows"] == metrics["rows"]
    fed_keys = set(pq.read_table(run / "predictions.parquet").column("row_key").to_pylist())
    local_keys = set(pq.read_table(Path(local.last_line) / "predictions.parquet").column("row_key").to_pylist())
    assert fed_keys == local_keys
    assert abs(metrics["test"]["auc"] - central["test"]["auc"]) < 0.01
    baseline = metrics["federated"]["centralized_baseline"]["test"]["auc"]
    assert baseline == pytest.approx(central["test"]["auc"], abs=1e-6)
    assert metrics["federated"]["gap"]["auc"] == pytest.approx(metrics["test"]["auc"] - baseline, abs=1e-5)

    # The saved global model scores like any run.
    scored = cli("evaluate", run, "--data", "synthetic:higgs")
    assert scored.code == 0, scored.err


def test_a_client_that_raises_is_dropped_and_the_run_finishes(tmp_path: Path, cli) -> None:
    spec = write_spec(
        tmp_path,
        **{
            "federated.clients": 5,
            "federated.rounds": 3,
            "federated.strategy": "fedprox",
            "federated.proximal_mu": 0.1,
            "federated.fail_clients": [3],
            "federated.fail_rounds": [2],
        },
    )
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    history = json.loads((Path(result.last_line) / "history.json").read_text())["rounds"]
    assert history[2]["train_clients"] == [0, 1, 2, 4] and history[2]["failed_train"] == 1
    assert history[1]["train_clients"] == history[3]["train_clients"] == [0, 1, 2, 3, 4]
    assert history[3]["centralized_evaluation"]["auc"] > 0.6


@pytest.mark.parametrize(
    ("model", "strategy", "extra"),
    [
        ("logistic_regression", "fedadam", {}),
        ("logistic_regression", "fedavgm", {"federated.server_momentum": 0.5}),
        ("logistic_regression", "fedtrimmedavg", {"federated.trim_beta": 0.2}),
        ("logistic_regression", "krum", {"federated.malicious_clients": 1}),
        ("xgboost", "fedxgb_bagging", {"model.params.max_depth": 3}),
        ("xgboost", "fedxgb_cyclic", {"federated.local_epochs": 2, "model.params.max_depth": 3}),
    ],
)
def test_strategies_learn_on_breast_cancer(tmp_path: Path, cli, model: str, strategy: str, extra: dict) -> None:
    spec = write_spec(
        tmp_path,
        **{
            "data.source": "builtin:breast_cancer",
            "data.label": "target",
            "model.name": model,
            "federated.clients": 5,
            "federated.rounds": 3,
            "federated.strategy": strategy,
            "federated.learning_rate": 0.05,
            **extra,
        },
    )
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    metrics = json.loads((Path(result.last_line) / "metrics.json").read_text())
    assert metrics["federated"]["strategy"] == strategy
    assert metrics["test"]["auc"] > 0.9


def test_linear_svm_with_string_labels_class_weights_and_dirichlet_clients(tmp_path: Path, cli) -> None:
    spec = write_spec(
        tmp_path,
        **{
            "data.source": "synthetic:churn",
            "data.rows": 6000,
            "data.label": "churned",
            "data.positive_label": "yes",
            "model.name": "linear_svm",
            "model.class_weight": "balanced",
            "federated.rounds": 3,
            "federated.partition.scheme": "dirichlet",
            "federated.partition.alpha": 0.5,
        },
    )
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    run = Path(result.last_line)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["classes"] == ["no", "yes"] and metrics["test"]["auc"] > 0.7
    assert set(pq.read_table(run / "predictions.parquet").column("prediction").to_pylist()) <= {"no", "yes"}
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    assert manifest["class_weights"][1] > manifest["class_weights"][0]


def test_mlp_multiclass_with_pathological_clients(tmp_path: Path, cli) -> None:
    spec = write_spec(
        tmp_path,
        **{
            "data.source": "builtin:wine",
            "data.label": "target",
            "model.name": "mlp",
            "model.params.hidden_layer_sizes": [16],
            "federated.clients": 4,
            "federated.rounds": 5,
            "federated.local_epochs": 3,
            "federated.batch_size": 16,
            "federated.learning_rate": 0.05,
            "federated.partition.scheme": "pathological",
            "federated.partition.labels_per_client": 2,
        },
    )
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    run = Path(result.last_line)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "multiclass" and metrics["test"]["auc"] > 0.9
    partitions = json.loads((run / "partitions.json").read_text())
    assert all(sum(1 for v in c["labels"].values() if v) <= 2 for c in partitions["clients"])


def test_default_federate_prints_only_progress_on_the_terminal(tmp_path: Path) -> None:
    # Flower's and Ray's warnings and logs (and the simulation's deprecation notice) go to logs/.
    spec = write_spec(tmp_path, **{"data.rows": 3000, "federated.clients": 3, "federated.rounds": 2})
    exe = Path(sys.executable).with_name("scaleclf")
    done = subprocess.run([exe, "federate", spec], cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert terminal_noise(done.stderr) == []
    assert any(line.startswith("✓ round 2/2") for line in done.stderr.splitlines())
    run = Path(done.stdout.strip())
    assert done.stdout.strip().splitlines() == [str(run)]
    assert (run / "logs" / "scaleclf.log").is_file()
