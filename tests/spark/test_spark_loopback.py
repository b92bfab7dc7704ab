"""A fit on a local SparkSession listens on loopback only (driver RPC, block manager; no UI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.run import train
from pipelines.spec import build_spec


def test_a_local_spark_fit_binds_loopback_only(tmp_path: Path, listeners: Any, spark_session: Any) -> None:
    spec = {
        "name": "loopback",
        "data": {"source": "synthetic:higgs", "rows": 3000, "label": "label"},
        "model": {"name": "xgboost", "params": {"n_estimators": 20}},
        "engine": {"name": "spark", "workers": 2},
        "output": {"dir": str(tmp_path), "report": False},
    }
    train(build_spec(spec))
    assert any(s[0] == "java" for s in listeners.seen), listeners.seen
    assert listeners.off_loopback == [], listeners.off_loopback
