"""A fit on a LocalCluster listens on loopback only: scheduler, workers, their HTTP servers, xgboost's tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.run import train
from pipelines.spec import build_spec


@pytest.mark.parametrize("model", ["xgboost", "logistic_regression"])
def test_a_local_cluster_fit_binds_loopback_only(model: str, tmp_path: Path, listeners: Any) -> None:
    spec = {
        "name": "loopback",
        "data": {"source": "synthetic:higgs", "rows": 3000, "label": "label"},
        "model": {"name": model, "params": {"n_estimators": 20} if model == "xgboost" else {}},
        "engine": {"name": "dask", "workers": 2},
        "output": {"dir": str(tmp_path), "report": False},
    }
    train(build_spec(spec))
    assert listeners.seen, "the poller saw no listener at all (the LocalCluster must have some)"
    assert listeners.off_loopback == []
