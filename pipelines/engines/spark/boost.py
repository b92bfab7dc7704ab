"""Multiclass gradient boosting on Spark: multinomial (softmax) Newton boosting on MLlib regression trees.

MLlib's ``GBTClassifier`` is binary only. One-vs-rest of binary GBTs is the textbook way round
that, but it trains K independent first-order models whose probabilities are normalised after the
fact; on the multiclass parity data it trailed scikit-learn's multinomial
``HistGradientBoostingClassifier`` by 0.005-0.022 test accuracy over the seeds and round counts
tried (-0.0145 on the 20k-row parity case, where this estimator is +0.0055). This estimator
boosts the multinomial loss itself, as scikit-learn and xgboost do, with MLlib's own
``DecisionTreeRegressor`` fitting each tree on the cluster:

- margins F (one per class) start at the log of the (weighted) class priors;
- each round, p = softmax(F), g_k = y_k - p_k and h_k = p_k (1 - p_k) for every row;
- one regression tree per class is fitted to the working response g_k / h_k with row weights
  w h_k (w the class weight). Weighted least squares on that response is exactly the Newton step:
  a leaf's weighted mean is sum(w g) / sum(w h), scikit-learn's leaf value with no L2, and the
  weighted variance reduction of a split is the second-order gain G_L^2/H_L + G_R^2/H_R - G^2/H;
- F_k += learning_rate * tree_k(x).

h is floored at 1e-6 so that a confidently wrong row's response stays finite (its weighted share
of every sum is unchanged). The fitted trees are copied out of the JVM into arrays, kept as JSON
in the model's params (saved and reloaded inside the ``PipelineModel``), and evaluated with NumPy
in Arrow batches both while training (to update F) and when predicting, so the margins a saved
model predicts are the ones it was trained with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from multiprocessing.pool import ThreadPool
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.ml import Estimator, Model
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol, HasLabelCol, HasMaxIter, HasSeed, HasStepSize, HasWeightCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

from pipelines.engines.spark.features import list_array
from pipelines.engines.spark.jvm import tree_root
from pipelines.models.links import softmax

HESSIAN_FLOOR = 1e-6
_X = "__boost_x"  # features as array<double>, for the Arrow-batch tree evaluation
_MARGIN = "__boost_margin"  # array<double>: one margin per class


def tree_arrays(java_node: Any) -> dict[str, list[float] | list[int]]:
    """Return an MLlib regression tree (its Java root node) as flat arrays, root at index 0.

    ``feature`` is -1 at a leaf; a row goes left when ``x[feature] <= threshold``, as in MLlib.
    """
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    value: list[float] = []
    # Depth-first; a child's index is written into its parent's slot when the child is numbered.
    index = 0
    queue: list[tuple[Any, int | None, str]] = [(java_node, None, "")]
    while queue:
        node, parent, side = queue.pop()
        me = index
        index += 1
        if parent is not None:
            (left if side == "left" else right)[parent] = me
        value.append(float(node.prediction()))
        left.append(-1)
        right.append(-1)
        if node.getClass().getSimpleName() == "InternalNode":
            split = node.split()
            if split.getClass().getSimpleName() != "ContinuousSplit":
                raise ValueError("softmax boosting expects continuous splits only (the features carry no categories)")
            feature.append(int(split.featureIndex()))
            threshold.append(float(split.threshold()))
            queue.append((node.rightChild(), me, "right"))
            queue.append((node.leftChild(), me, "left"))
        else:
            feature.append(-1)
            threshold.append(0.0)
    return {"feature": feature, "threshold": threshold, "left": left, "right": right, "value": value}


class Tree:
    """A tree from ``tree_arrays`` as NumPy arrays, evaluated on a whole batch at once."""

    def __init__(self, arrays: dict[str, Any]) -> None:
        self.feature = np.asarray(arrays["feature"], dtype=np.int64)
        self.threshold = np.asarray(arrays["threshold"], dtype=np.float64)
        self.left = np.asarray(arrays["left"], dtype=np.int64)
        self.right = np.asarray(arrays["right"], dtype=np.int64)
        self.value = np.asarray(arrays["value"], dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        node = np.zeros(x.shape[0], dtype=np.int64)
        rows = np.arange(x.shape[0])
        while True:
            feat = self.feature[node]
            inner = feat >= 0
            if not inner.any():
                return self.value[node]
            go_left = x[rows, np.maximum(feat, 0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)


class _Ensemble:
    """Initial margins plus learning_rate times the sum of each class's trees."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.init = np.asarray(state["init"], dtype=np.float64)
        self.rate = float(state["learning_rate"])
        self.rounds = [[Tree(t) for t in per_class] for per_class in state["trees"]]

    def margins(self, x: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        out = np.tile(self.init, (x.shape[0], 1)) if start is None else start.copy()
        for per_class in self.rounds:
            for k, tree in enumerate(per_class):
                out[:, k] += self.rate * tree.predict(x)
        return out


def _batch_matrix(batch: pa.RecordBatch, column: str) -> np.ndarray:
    values = batch.column(column)
    n = batch.num_rows
    flat = np.asarray(values.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    return flat.reshape(n, -1) if n else np.zeros((0, 0))


class _BoostParams(HasFeaturesCol, HasLabelCol, HasWeightCol, HasMaxIter, HasStepSize, HasSeed):
    numClasses: Param[int] = Param(Params._dummy(), "numClasses", "number of classes", TypeConverters.toInt)
    maxDepth: Param[int] = Param(Params._dummy(), "maxDepth", "maximum tree depth", TypeConverters.toInt)
    minInstancesPerNode: Param[int] = Param(
        Params._dummy(), "minInstancesPerNode", "minimum rows in each child", TypeConverters.toInt
    )
    maxBins: Param[int] = Param(Params._dummy(), "maxBins", "bins per feature for split finding", TypeConverters.toInt)
    parallelism: Param[int] = Param(
        Params._dummy(), "parallelism", "classes whose trees are fitted at once", TypeConverters.toInt
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            featuresCol="features",
            labelCol="label",
            maxIter=100,
            stepSize=0.1,
            maxDepth=5,
            minInstancesPerNode=1,
            maxBins=256,
            parallelism=1,
            seed=0,
        )


class SoftmaxBoostingClassifier(_BoostParams, Estimator["SoftmaxBoostingModel"]):
    """Multinomial Newton gradient boosting whose trees are MLlib ``DecisionTreeRegressor`` fits."""

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._set(**params)
        # Called with the rounds done after each one (the engine's progress bar); not a Spark Param.
        self.on_round: Any = lambda _: None

    def _fit(self, dataset: DataFrame) -> SoftmaxBoostingModel:
        from pyspark.ml.regression import DecisionTreeRegressor

        k = self.getOrDefault(self.numClasses)
        label = self.getOrDefault(self.labelCol)
        features = self.getOrDefault(self.featuresCol)
        weight = F.col(self.getOrDefault(self.weightCol)) if self.isSet(self.weightCol) else F.lit(1.0)
        rate = self.getOrDefault(self.stepSize)
        seed = self.getOrDefault(self.seed)

        base = dataset.select(
            vector_to_array(F.col(features)).alias(_X),
            F.col(label).cast("int").alias("__boost_y"),
            weight.cast("double").alias("__boost_w"),
        )
        counts = {int(r[0]): float(r[1]) for r in base.groupBy("__boost_y").agg(F.sum("__boost_w")).collect()}
        totals = np.asarray([counts.get(c, 0.0) for c in range(k)])
        prior = np.maximum(totals, 1e-12) / max(totals.sum(), 1e-12)
        init = np.log(prior)
        state = base.withColumn(_MARGIN, F.array(*[F.lit(float(v)) for v in init]))
        state = state.persist(StorageLevel.MEMORY_AND_DISK)

        schema = StructType(
            [
                StructField(_X, ArrayType(DoubleType(), False), False),
                StructField("__boost_y", base.schema["__boost_y"].dataType, True),
                StructField("__boost_w", DoubleType(), True),
                StructField(_MARGIN, ArrayType(DoubleType(), False), False),
            ]
        )
        rounds: list[list[dict[str, Any]]] = []
        trees = [
            DecisionTreeRegressor(
                featuresCol="__boost_v",
                labelCol=f"__boost_r{c}",
                weightCol=f"__boost_h{c}",
                maxDepth=self.getOrDefault(self.maxDepth),
                minInstancesPerNode=self.getOrDefault(self.minInstancesPerNode),
                maxBins=self.getOrDefault(self.maxBins),
                seed=seed,
            )
            for c in range(k)
        ]
        parallel = max(1, min(k, self.getOrDefault(self.parallelism)))
        try:
            for _ in range(self.getOrDefault(self.maxIter)):
                work = _newton_frame(state, k).persist(StorageLevel.MEMORY_AND_DISK)
                try:
                    with ThreadPool(parallel) as pool:
                        fitted = pool.map(partial(_fit_tree, trees, work), range(k))
                finally:
                    work.unpersist()
                this_round = [tree_arrays(tree_root(m)) for m in fitted]
                rounds.append(this_round)
                self.on_round(len(rounds))
                step = _Ensemble({"init": np.zeros(k), "learning_rate": rate, "trees": [this_round]})
                # A local checkpoint cuts the lineage: each round would otherwise nest one more
                # mapInArrow over the last, and the plan and task closures grow with every round.
                updated = state.mapInArrow(_update_batches(step), schema).localCheckpoint(eager=True)
                state.unpersist()
                state = updated
        finally:
            state.unpersist()
        payload = {"init": init.tolist(), "learning_rate": rate, "trees": rounds}
        model = SoftmaxBoostingModel(trees=json.dumps(payload))
        model._set(featuresCol=features, numClasses=k)
        return model


def _fit_tree(trees: list[Any], frame: DataFrame, c: int) -> Any:
    return trees[c].fit(frame)


def _newton_frame(state: DataFrame, k: int) -> DataFrame:
    """Return the features vector and, per class, the Newton response and weight of every row."""
    m = [F.col(_MARGIN)[c] for c in range(k)]
    top = F.greatest(*m) if k > 1 else m[0]
    exps = [F.exp(mc - top) for mc in m]
    total = exps[0]
    for e in exps[1:]:
        total = total + e
    cols = [array_to_vector(F.col(_X)).alias("__boost_v")]
    for c in range(k):
        p = exps[c] / total
        g = F.when(F.col("__boost_y") == c, 1.0).otherwise(0.0) - p
        h = F.greatest(p * (1.0 - p), F.lit(HESSIAN_FLOOR))
        cols.append((g / h).alias(f"__boost_r{c}"))
        cols.append((F.col("__boost_w") * h).alias(f"__boost_h{c}"))
    return state.select(*cols)


def _update_batches(step: _Ensemble) -> Any:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if not batch.num_rows:
                continue
            x = _batch_matrix(batch, _X)
            margins = step.margins(x, start=_batch_matrix(batch, _MARGIN))
            yield pa.RecordBatch.from_arrays(
                [batch.column(_X), batch.column("__boost_y"), batch.column("__boost_w"), list_array(margins)],
                names=[_X, "__boost_y", "__boost_w", _MARGIN],
            )

    return run


class SoftmaxBoostingModel(_BoostParams, Model, DefaultParamsReadable["SoftmaxBoostingModel"], DefaultParamsWritable):
    """Appends ``rawPrediction`` (margins), ``probability`` (their softmax) and ``prediction``."""

    trees: Param[str] = Param(
        Params._dummy(), "trees", "JSON: initial margins, learning rate, each round's trees", TypeConverters.toString
    )

    def __init__(self, trees: str = "{}") -> None:
        super().__init__()
        self._setDefault(trees="{}")
        self._set(trees=trees)

    @property
    def num_rounds(self) -> int:
        """Return the number of boosting rounds fitted."""
        return len(json.loads(self.getOrDefault(self.trees))["trees"])

    def _transform(self, dataset: DataFrame) -> DataFrame:
        state = json.loads(self.getOrDefault(self.trees))
        features = self.getOrDefault(self.featuresCol)
        x_col = "__boost_x_in"
        keep = list(dataset.columns)
        frame = dataset.withColumn(x_col, vector_to_array(F.col(features)))
        schema = StructType(
            [dataset.schema[c] for c in keep]
            + [
                StructField("__raw", ArrayType(DoubleType(), False), False),
                StructField("__proba", ArrayType(DoubleType(), False), False),
                StructField("prediction", DoubleType(), False),
            ]
        )

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            ensemble = _Ensemble(state)
            for batch in batches:
                if not batch.num_rows:
                    continue
                x = _batch_matrix(batch, x_col)
                margins = ensemble.margins(x)
                proba = softmax(margins)
                arrays = [batch.column(c) for c in keep]
                arrays += [list_array(margins), list_array(proba), pa.array(proba.argmax(axis=1).astype(np.float64))]
                yield pa.RecordBatch.from_arrays(arrays, names=[*keep, "__raw", "__proba", "prediction"])

        out = frame.mapInArrow(run, schema)
        return (
            out.withColumn("rawPrediction", array_to_vector(F.col("__raw")))
            .withColumn("probability", array_to_vector(F.col("__proba")))
            .drop("__raw", "__proba")
        )
