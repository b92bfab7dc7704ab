"""Batched execution (federated.execution: batched): the Flower path's model, refusals, the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.federated.test_federated_simulation import write_spec


def final_models(monkeypatch: pytest.MonkeyPatch, spec_path: Path, **changes: str) -> dict[str, tuple]:
    """Return, per execution, the final global arrays and the history of the same spec."""
    import federated.outputs as outputs
    from federated.simulation import federate
    from pipelines.spec import load_spec

    seen: dict[str, tuple] = {}
    write = outputs.write_outputs

    def recording(job, arrays, history, tmp, progress):
        seen[job.fed.execution] = (arrays.to_numpy_ndarrays(), history.to_list())
        return write(job, arrays, history, tmp, progress)

    monkeypatch.setattr(outputs, "write_outputs", recording)
    for execution in ("flower", "batched"):
        overrides = [f"federated.execution={execution}", *(f"{k}={v}" for k, v in changes.items())]
        federate(load_spec(spec_path, overrides))
    return seen


def assert_same_run(seen: dict[str, tuple]) -> None:
    (flower, flower_rounds), (batched, batched_rounds) = seen["flower"], seen["batched"]
    assert [a.shape for a in batched] == [a.shape for a in flower]
    for a, b in zip(batched, flower, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    assert len(batched_rounds) == len(flower_rounds)
    for got, want in zip(batched_rounds, flower_rounds, strict=True):
        assert got["train_clients"] == want["train_clients"] and got["train_replies"] == want["train_replies"]
        assert got["bytes_sent"] == want["bytes_sent"] and got["bytes_received"] == want["bytes_received"]
        for key in ("train_metrics", "centralized_evaluation"):
            assert got[key].keys() == want[key].keys()
            for name, value in got[key].items():
                assert value == pytest.approx(want[key][name], abs=1e-9), (got["round"], key, name)


def test_batched_logistic_regression_equals_the_flower_path_on_uneven_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dirichlet label skew gives clients of different sizes: short clients sit out later steps.
    spec = write_spec(
        tmp_path,
        **{
            "federated.rounds": 3,
            "federated.local_epochs": 2,
            "federated.partition.scheme": "dirichlet",
            "federated.partition.alpha": 0.3,
            "federated.fraction_evaluate": 1.0,
        },
    )
    seen = final_models(monkeypatch, spec)
    assert_same_run(seen)
    sizes = {len(r["train_clients"]) for r in seen["batched"][1][1:]}
    assert sizes == {10}
    # Federated evaluation: every client evaluated, the same row-weighted loss and accuracy.
    for got, want in zip(seen["batched"][1][1:], seen["flower"][1][1:], strict=True):
        assert got["evaluate_clients"] == want["evaluate_clients"] == list(range(10))
        for name in ("loss", "accuracy"):
            assert got["federated_evaluation"][name] == pytest.approx(want["federated_evaluation"][name], abs=1e-9)


def test_batched_mlp_fedprox_multiclass_with_class_weights_equals_the_flower_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(
        tmp_path,
        **{
            "data.source": "builtin:wine",
            "data.label": "target",
            "model.name": "mlp",
            "model.params.hidden_layer_sizes": [8],
            "model.class_weight": "balanced",
            "federated.clients": 4,
            "federated.rounds": 2,
            "federated.local_epochs": 2,
            "federated.batch_size": 16,
            "federated.strategy": "fedprox",
            "federated.proximal_mu": 0.1,
            "federated.partition.scheme": "quantity",
            "federated.partition.alpha": 0.5,
        },
    )
    assert_same_run(final_models(monkeypatch, spec))


def test_iid_clients_are_flower_datasets_contiguous_shards() -> None:
    from federated.batched import client_order
    from federated.partition import assign_clients
    from pipelines.spec import FederatedSpec

    pool = pa.table({"label": pa.array(np.arange(103) % 2)})
    fed = FederatedSpec(clients=10)
    order, sizes = client_order(pool, "label", fed, 42)
    expected = assign_clients(pool, "label", fed, 42)
    assert sizes.tolist() == [len(e) for e in expected]
    np.testing.assert_array_equal(order, np.concatenate(expected))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"model.name": "xgboost", "federated.strategy": "fedxgb_bagging"},
            "error: config error: model.name: federated.execution: batched trains logistic_regression, linear_svm,"
            " mlp; use flower for xgboost",
        ),
        (
            {"federated.strategy": "fedadam"},
            "error: config error: federated.strategy: federated.execution: batched runs fedavg, fedprox;"
            " use flower for fedadam",
        ),
        (
            {"federated.privacy.secure_aggregation.enabled": True},
            "error: config error: federated.privacy.secure_aggregation.enabled: federated.execution: batched does"
            " not run secure aggregation; use flower",
        ),
        (
            {"federated.privacy.dp": "central"},
            "error: config error: federated.privacy.dp: federated.execution: batched does not run differential"
            " privacy (central); use flower",
        ),
    ],
)
def test_what_batched_execution_cannot_run_is_refused_in_one_line(
    tmp_path: Path, cli, changes: dict, message: str
) -> None:
    spec = write_spec(tmp_path, **{"federated.execution": "batched", **changes})
    result = cli("federate", spec, "--quiet")
    assert result.code != 0
    assert result.err.strip() == message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_batched_run_writes_the_run_directory_and_drops_failing_clients(tmp_path: Path, cli) -> None:
    spec = write_spec(
        tmp_path,
        **{
            "federated.execution": "batched",
            "federated.clients": 50,
            "federated.rounds": 3,
            "federated.fraction_evaluate": 0.2,
            "federated.fail_clients": [3],
            "federated.fail_rounds": [2],
            "output.report": True,
        },
    )
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    run = Path(result.last_line)
    for name in ("spec.yaml", "metrics.json", "predictions.parquet", "history.json", "partitions.json", "report.html"):
        assert (run / name).is_file(), name
    assert (run / "plots" / "learning_curve.png").is_file() and (run / "model" / "manifest.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["federated"]["execution"] == "batched" and metrics["federated"]["rounds"] == 3
    assert metrics["engine_info"]["simulation"] == "batched NumPy clients in one process"
    assert metrics["test"]["auc"] > 0.6
    rounds = json.loads((run / "history.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert rounds[2]["failed_train"] == 1 and 3 not in rounds[2]["train_clients"]
    assert rounds[1]["train_clients"] == list(range(50))
    assert all(
        len(r["evaluate_clients"]) + r["failed_evaluate"] == 10 and r["federated_evaluation"]["accuracy"] > 0.5
        for r in rounds[1:]
    )
    partitions = json.loads((run / "partitions.json").read_text())
    assert len(partitions["clients"]) == 50
    scored = cli("evaluate", run, "--data", "synthetic:higgs")
    assert scored.code == 0, scored.err
