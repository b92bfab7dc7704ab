"""pyspark's private JVM handles, which pipelines/engines/spark/jvm.py fences: they still answer after an upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.engines.spark import jvm
from pipelines.engines.spark.engine import refuse_pickled_state
from pipelines.errors import ArtifactError


def test_the_executor_count_and_task_slots_come_from_the_jvm(spark_session: Any) -> None:
    assert jvm.executors(spark_session) == 0  # local[2]: the driver runs the tasks
    assert jvm.task_slots(spark_session) == 2


def test_an_mllib_tree_root_is_reachable(spark_session: Any) -> None:
    from pyspark.ml.linalg import Vectors
    from pyspark.ml.regression import DecisionTreeRegressor

    rows = [(float(i % 3), Vectors.dense([float(i), float(i % 5)])) for i in range(60)]
    model = DecisionTreeRegressor(maxDepth=2).fit(spark_session.createDataFrame(rows, ["label", "features"]))
    root = jvm.tree_root(model)
    assert root.getClass().getSimpleName() == "InternalNode"
    assert np.isfinite(float(root.prediction()))


def test_a_stage_with_a_pickled_callback_is_refused_before_pyspark_reads_it(tmp_path: Path) -> None:
    # xgboost.spark would cloudpickle.loads a "serialized_callbacks" metadata entry on load.
    metadata = tmp_path / "spark_model" / "stages" / "1_SparkXGBClassifierModel" / "metadata"
    metadata.mkdir(parents=True)
    (metadata / "part-00000").write_text('{"class": "x", "serialized_callbacks": "gASV..."}\n')
    with pytest.raises(ArtifactError, match="pickled object"):
        refuse_pickled_state(tmp_path / "spark_model")
