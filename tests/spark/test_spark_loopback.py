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
    wide = [(s, listeners.who.get(s[2], "")) for s in listeners.off_loopback]
    # xgboost's collective opens one peer socket per training task on every interface for the
    # fit's duration (xgboost 3.2 takes no bind address; docs/engines/spark.md says so). The JVM
    # (driver, block manager, UI) and xgboost's tracker are on loopback.
    assert all(s[1] == "0.0.0.0" and "pyspark" in who for s, who in wide), wide
    assert len(wide) <= 2 * spec["engine"]["workers"], wide
