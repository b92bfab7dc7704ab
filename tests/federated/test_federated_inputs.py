"""Partitioning and refused federated specs: no simulation needed, one-line errors, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.data.schema import make_plan
from pipelines.engines.local.engine import LocalEngine
from pipelines.spec import build_spec


def federation(scheme: str, clients: int = 10, **partition: object):
    from federated.partition import federate_data

    spec = build_spec(
        {
            "data": {"source": "synthetic:multiclass", "rows": 5000},
            "model": {"name": "logistic_regression"},
            "federated": {"clients": clients, "partition": {"scheme": scheme, **partition}},
        }
    )
    plan = make_plan(spec.data, spec.seed)
    table = LocalEngine(spec.engine).load(plan).table
    return federate_data(table, plan, spec.federated, spec.seed), table


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "pathological", "quantity"])
def test_every_non_test_row_goes_to_exactly_one_client(scheme: str) -> None:
    fed, table = federation(scheme, alpha=0.3, labels_per_client=2)
    keys = np.concatenate([np.asarray(c.table.column("__row_key").to_numpy()) for c in fed.clients])
    split = np.asarray(table.column("__split").to_numpy())
    assert len(keys) == len(set(keys.tolist())) == int((split != 2).sum())
    assert fed.test.num_rows == int((split == 2).sum())
    stats = fed.statistics()
    assert sum(c["train_rows"] for c in stats["clients"]) == stats["train_rows"]["total"]


def test_label_skew_and_quantity_skew_show_in_the_statistics() -> None:
    iid = federation("iid")[0].statistics()["clients"]
    skewed = federation("dirichlet", alpha=0.1)[0].statistics()["clients"]
    patho = federation("pathological", labels_per_client=1)[0].statistics()["clients"]
    sizes = federation("quantity", alpha=0.3)[0].statistics()["clients"]

    def max_share(clients):
        return np.mean([max(c["labels"].values()) / max(c["train_rows"], 1) for c in clients])

    assert max_share(skewed) > max_share(iid) + 0.2
    assert all(sum(1 for v in c["labels"].values() if v) == 1 for c in patho)
    rows = [c["train_rows"] for c in sizes]
    assert max(rows) > 3 * min(rows)


def test_preprocessing_from_client_profiles_equals_the_pooled_fit() -> None:
    from pipelines.data.schema import check_columns, infer_task, profile_batch
    from pipelines.models.preprocess import fit_preprocessor

    fed, table = federation("dirichlet", alpha=0.3)
    plan = make_plan(
        build_spec({"data": {"source": "synthetic:multiclass", "rows": 5000}, "model": {"name": "mlp"}}).data, 42
    )
    pooled = profile_batch(table, plan)
    infer_task(pooled, plan)
    central = fit_preprocessor(pooled, plan, check_columns(pooled, plan))
    for a, b in zip(fed.preprocessor.numeric, central.numeric, strict=True):
        assert a.name == b.name and a.mean == pytest.approx(b.mean) and a.scale == pytest.approx(b.scale)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["model.name=random_forest"], "model.name: random_forest is not trained federatedly"),
        (["federated.strategy=fedxgb_bagging"], "federated.strategy: fedxgb_bagging cannot train logistic_regression"),
        (["model.name=xgboost"], "federated.strategy: fedavg cannot train xgboost"),
        (["federated.clients=1"], "federated.clients"),
        (["federated.partition.scheme=natural"], "federated.partition.column: required"),
        (["federated.fail_clients=[12]"], "fail_clients: client 12 does not exist"),
        (["federated=null"], "federated: the spec has no federated section"),
    ],
)
def test_bad_federated_specs_fail_with_one_line_and_write_nothing(tmp_path: Path, cli, sets, message) -> None:
    from tests.federated.test_federated_simulation import SPEC

    args = ["federate", SPEC, "--out", tmp_path / "runs", "--set", "data.rows=2000"]
    for s in sets:
        args += ["--set", s]
    result = cli(*args)
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_natural_partition_gives_one_client_per_column_value() -> None:
    from federated.partition import federate_data

    spec = build_spec(
        {
            "data": {"source": "synthetic:churn", "rows": 3000, "label": "churned", "positive_label": "yes"},
            "model": {"name": "logistic_regression"},
            "federated": {"clients": 6, "partition": {"scheme": "natural", "column": "region"}},
        }
    )
    plan = make_plan(spec.data, spec.seed)
    fed = federate_data(LocalEngine(spec.engine).load(plan).table, plan, spec.federated, spec.seed)
    values = [set(c.table.column("region").to_pylist()) for c in fed.clients]
    assert all(len(v) == 1 for v in values) and len(set().union(*values)) == 6  # 5 regions + missing


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].glob("conf/federated_*.yaml")), ids=str)
def test_shipped_federated_specs_validate(path: Path) -> None:
    from pipelines.spec import load_spec

    spec = load_spec(path)
    assert spec.federated is not None and spec.model.name in ("logistic_regression", "mlp", "linear_svm", "xgboost")


def test_dirichlet_fallback_keeps_every_row_once_and_gives_each_client_min_rows() -> None:
    from federated.partition import federate_data, partition_dirichlet

    spec = build_spec(
        {
            "data": {"source": "synthetic:higgs", "rows": 5000},
            "model": {"name": "logistic_regression"},
            "federated": {"clients": 20, "partition": {"scheme": "dirichlet", "alpha": 0.1}},
        }
    )
    plan = make_plan(spec.data, spec.seed)
    fed = federate_data(LocalEngine(spec.engine).load(plan).table, plan, spec.federated, spec.seed)
    assert min(c.table.num_rows for c in fed.clients) >= 10

    labels = np.random.default_rng(0).integers(0, 2, 20_000)
    parts = partition_dirichlet(labels, 20, 0.1, 10, seed=42)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))
    assert min(len(p) for p in parts) >= 10
    shares = [np.bincount(labels[p], minlength=2).max() / len(p) for p in parts]
    assert np.mean(shares) > 0.75  # strong label skew


def test_xgboost_bagging_survives_a_client_holding_one_class() -> None:
    from flwr.serverapp.strategy.strategy_utils import aggregate_bagging

    from federated.client_app import train_xgboost
    from federated.models import xgb_outputs
    from pipelines.models.catalog import get_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    meta = {"params": get_model("xgboost").resolve_params({}), "n_classes": 2, "local_epochs": 1}
    meta["strategy"] = "fedxgb_bagging"
    w = np.ones(200, np.float32)
    one_class, _ = train_xgboost(b"", x[:200], np.ones(200, np.int32), w, meta, seed=1)
    mixed, _ = train_xgboost(b"", x[200:], y[200:], w, meta, seed=2)
    model = aggregate_bagging(b"", one_class["0"].numpy().tobytes())
    model = aggregate_bagging(model, mixed["0"].numpy().tobytes())
    p = xgb_outputs(model, x, 2)[:, 1]
    assert np.isfinite(p).all() and p[y == 1].mean() > p[y == 0].mean() + 0.05


def test_fedprox_term_keeps_local_training_near_the_global_model() -> None:
    from federated.models import net_spec, train_local

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
    spec = net_spec("logistic_regression", {"C": 1.0}, 4, 2, 300)
    start = spec.init(0)

    def drift(mu: float) -> float:
        params, _ = train_local(spec, start, x, y, np.ones(300), epochs=5, batch_size=16, lr=0.05, mu=mu, seed=1)
        return float(sum(np.sum((p - s) ** 2) for p, s in zip(params, start, strict=True)))

    assert drift(10.0) < 0.5 * drift(0.0)
