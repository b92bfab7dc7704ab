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
    wide = [(s, listeners.who.get(s[2], "")) for s in listeners.off_loopback]
    if model == "xgboost":
        # xgboost's collective opens one peer socket per worker on every interface for the
        # fit's duration (xgboost 3.2 takes no bind address for it; docs/engines/dask.md says so).
        # Everything else, scheduler, nannies, HTTP servers and the tracker, is on loopback.
        assert all(s[1] == "0.0.0.0" and "multiprocessing" in who for s, who in wide), wide
        assert len(wide) <= 2 * spec["engine"]["workers"], wide
    else:
        assert wide == []
