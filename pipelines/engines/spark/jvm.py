"""The Spark engine's only use of pyspark's private API (the JVM handles), fenced here with an upgrade test.

pyspark offers no public call for four things the engine needs: how many executors have
registered (to wait for a standalone cluster's workers), how many tasks the cluster runs at
once (the number of xgboost.spark workers that fit; xgboost.spark makes the same JVM call), and
an MLlib tree's nodes (softmax boosting copies trees out of the JVM), and the driver thread's py4j
connection (``drop_thread_connection``, after an interrupt). tests/spark/test_spark_jvm.py
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


def drop_thread_connection(session: Any) -> None:
    """Close this thread's py4j connection to the JVM, so that the next call opens a fresh one.

    pyspark's pinned-thread mode keeps one connection per Python thread. A call interrupted
    (SIGINT/SIGTERM) while it waited leaves its answer unread in that connection, and the next
    call on it reads that answer as its own: stopping the session then failed with
    "Py4JError: org.apache.spark.sql.classic.SparkSession does not exist in the JVM".
    """
    client = session.sparkContext._gateway._gateway_client
    connection = client.get_thread_connection() if hasattr(client, "get_thread_connection") else None
    if connection is not None:
        connection.close()
