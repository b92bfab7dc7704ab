"""Spark's multiclass gbt: OneVsRest probabilities and softmax boosting's Newton steps, trees and reload.

Parity of every model with the local engine is the conformance matrix's (test_spark_conformance.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.run import train
from pipelines.spec import build_spec


def test_one_vs_rest_gbt_probabilities_are_the_binary_gbts_normalised(tmp_path: Path) -> None:
    # engine.options.gbt_multiclass: ovr fits multiclass gbt as OneVsRest of binary MLlib GBTs.
    # Each class's probability is its binary GBT's own (MLlib's 1 / (1 + exp(-2m))), normalised
    # over the classes: recomputed here from the saved model's binary GBTs.
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from pipelines.data.schema import make_plan
    from pipelines.data.sources import resolve_source
    from pipelines.data.split import KEY_COLUMN

    raw = {
        "name": "ovr-gbt",
        "seed": 5,
        "data": {"source": "synthetic:multiclass", "label": "label", "rows": 3000},
        "model": {"name": "gbt", "params": {"n_estimators": 5}},
        "engine": {"name": "spark", "workers": 2, "options": {"gbt_multiclass": "ovr"}},
        "output": {"dir": str(tmp_path), "report": False},
    }
    job = build_spec(raw)
    run = train(job)
    saved = pq.read_table(run / "predictions.parquet").to_pandas().set_index("row_key").sort_index()
    proba = [f"proba_{k}" for k in range(5)]
    assert list(saved.columns[saved.columns.str.startswith("proba_")]) == proba

    spark = SparkSession.getActiveSession()
    assert spark is not None
    features, ovr = PipelineModel.load(str(run / "model" / "spark_model")).stages
    source = resolve_source("synthetic:multiclass", rows=3000).paths[0]
    rows = make_plan(job.data, job.seed).attach(pq.read_table(source))
    keys = rows.column(KEY_COLUMN).to_numpy().view(np.int64)  # Spark has no uint64: as the engine keeps it
    rows = rows.set_column(rows.schema.get_field_index(KEY_COLUMN), KEY_COLUMN, pa.array(keys))
    frame = features.transform(spark.createDataFrame(rows.to_pandas())).cache()
    assert len(ovr.models) == 5
    per_class = []
    for binary in ovr.models:
        p1 = binary.transform(frame).select(KEY_COLUMN, vector_to_array(F.col("probability"))[1].alias("p"))
        table = p1.toPandas()
        unsigned = table[KEY_COLUMN].to_numpy().astype(np.int64).view(np.uint64)
        per_class.append(dict(zip(unsigned.tolist(), table["p"].tolist(), strict=True)))
    expected = np.array([[column[key] for column in per_class] for key in saved.index])
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(saved[proba].to_numpy(), expected, atol=1e-9)
    assert np.allclose(saved[proba].sum(axis=1), 1.0)


def _multiclass_frame(spark: Any, n: int = 900, seed: int = 3) -> tuple[Any, np.ndarray, np.ndarray]:
    """Return a small 3-class frame (features vector, __y, __w) and its arrays."""
    from pyspark.ml.linalg import Vectors

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.argmax(x[:, :3] + rng.normal(scale=0.8, size=(n, 3)), axis=1)
    w = np.where(y == 2, 2.0, 1.0)  # a class weight, as the engine's weight column carries it
    rows = [(Vectors.dense(x[i]), int(y[i]), float(w[i])) for i in range(n)]
    return spark.createDataFrame(rows, ["features", "__y", "__w"]).repartition(2).cache(), y, w


def test_softmax_boosting_takes_weighted_newton_steps(spark_session: Any) -> None:
    # One round of depth-0 trees: each class's margin moves from the log prior by learning_rate
    # times sum(w g) / sum(w h), g = y - p, h = p (1 - p): the Newton step scikit-learn's
    # HistGradientBoosting takes. Recomputed here in NumPy.
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from pipelines.engines.spark.boost import SoftmaxBoostingClassifier, softmax

    frame, y, w = _multiclass_frame(spark_session)
    est = SoftmaxBoostingClassifier(
        numClasses=3, maxIter=1, stepSize=0.3, maxDepth=0, labelCol="__y", weightCol="__w", featuresCol="features"
    )
    model = est.fit(frame)
    margins = model.transform(frame).select(vector_to_array(F.col("rawPrediction")).alias("m")).toPandas()
    raw = np.array(margins["m"].tolist())

    totals = np.array([w[y == c].sum() for c in range(3)])
    init = np.log(totals / totals.sum())
    p = softmax(np.tile(init, (len(y), 1)))
    onehot = np.eye(3)[y]
    step = (w[:, None] * (onehot - p)).sum(axis=0) / (w[:, None] * p * (1 - p)).sum(axis=0)
    np.testing.assert_allclose(raw, np.tile(init + 0.3 * step, (len(y), 1)), atol=1e-9)


def test_softmax_boosting_trees_are_mllibs_and_reload(spark_session: Any, tmp_path: Path) -> None:
    # The arrays copied out of the JVM predict what MLlib's own tree predicts, row for row; a
    # saved model reloads and predicts the same probabilities, softmax of its margins.
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.regression import DecisionTreeRegressor
    from pyspark.sql import functions as F

    from pipelines.engines.spark.boost import (
        SoftmaxBoostingClassifier,
        SoftmaxBoostingModel,
        Tree,
        softmax,
        tree_arrays,
    )

    frame, _y, _w = _multiclass_frame(spark_session)
    target = frame.withColumn("t", F.col("__y").cast("double") * F.col("__w"))
    tree = DecisionTreeRegressor(labelCol="t", maxDepth=4, minInstancesPerNode=5, maxBins=64).fit(target)
    scored = tree.transform(target).select(vector_to_array(F.col("features")).alias("x"), "prediction").toPandas()
    ours = Tree(tree_arrays(tree._java_obj.rootNode())).predict(np.array(scored["x"].tolist()))
    assert tree.depth == 4
    np.testing.assert_array_equal(ours, scored["prediction"].to_numpy())

    est = SoftmaxBoostingClassifier(numClasses=3, maxIter=3, maxDepth=3, labelCol="__y", weightCol="__w")
    model = est.fit(frame)
    assert model.num_rounds == 3
    model.write().overwrite().save(str(tmp_path / "boost"))
    again = SoftmaxBoostingModel.load(str(tmp_path / "boost"))

    def outputs(m: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = m.transform(frame).select(
            "__y", vector_to_array(F.col("rawPrediction")).alias("r"), vector_to_array(F.col("probability")).alias("p")
        )
        table = out.toPandas()
        return np.array(table["r"].tolist()), np.array(table["p"].tolist()), table["__y"].to_numpy()

    raw, proba, labels = outputs(model)
    raw2, proba2, labels2 = outputs(again)
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_array_equal(raw, raw2)
    np.testing.assert_array_equal(proba, proba2)
    np.testing.assert_allclose(proba, softmax(raw), atol=1e-12)
    assert (proba.argmax(axis=1) == labels).mean() > 0.6  # it learned: chance is ~1/3
