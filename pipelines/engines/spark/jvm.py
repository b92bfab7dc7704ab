"""The Spark engine's only use of pyspark's private API (the JVM handles), fenced here with an upgrade test.

pyspark offers no public call for three things the engine needs: how many executors have
registered (to wait for a standalone cluster's workers), how many tasks the cluster runs at
once (the number of xgboost.spark workers that fit; xgboost.spark makes the same JVM call), and
an MLlib tree's nodes (softmax boosting copies trees out of the JVM). tests/spark/test_spark_jvm.py
fails when a pyspark upgrade moves any of them.
"""

from __future__ import annotations

from typing import Any


def executors(session: Any) -> int:
    """Return the executors registered with the session's cluster (the driver not counted)."""
    return int(session.sparkContext._jsc.sc().getExecutorMemoryStatus().size()) - 1


def task_slots(session: Any) -> int:
    """Return the tasks the cluster runs at once: its cores / spark.task.cpus, under the default profile."""
    jsc = session.sparkContext._jsc.sc()
    return max(1, int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().resourceProfileFromId(0))))


def tree_root(model: Any) -> Any:
    """Return the Java root node of a fitted MLlib tree model (DecisionTreeRegressionModel)."""
    return model._java_obj.rootNode()
