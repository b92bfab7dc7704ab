"""The Spark side of the catalog: the shared features as a pyspark.ml stage, and the MLlib estimators.

``SharedFeatures`` is a pyspark.ml Transformer that applies the driver-fitted ``Preprocessor``
(and kernel ``FeatureMap``) in Arrow batches with ``mapInArrow``, so Spark sees exactly the
feature matrix the local engine sees. It saves and reloads inside a ``PipelineModel`` with
the fitted classifier, which makes ``model/spark_model`` self-contained.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

from pipelines.data.schema import Task
from pipelines.engines.base import FitContext
from pipelines.models.kernels import FeatureMap
from pipelines.models.native import mllib_params, xgboost_params
from pipelines.models.preprocess import Preprocessor

LABEL_COL = "__y"  # class index (int, -1 when the label is unknown)
WEIGHT_COL = "__w"  # class weight of the row (1.0 when unweighted)
FEATURES_COL = "features"


def _encode_array(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _decode_array(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def list_array(matrix: np.ndarray) -> pa.Array:
    """Return the rows of a 2-D float matrix as an Arrow list<double> array (array<double> in Spark)."""
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32) if n else np.zeros(1, np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix).ravel(), pa.float64()))


def feature_state(ctx: FitContext, label: str) -> str:
    """Return the JSON that ``SharedFeatures`` needs: preprocessing, feature map, task, weights."""
    fmap = ctx.feature_map
    return json.dumps(
        {
            "label": label,
            "preprocess": ctx.preprocessor.to_dict(),
            "task": ctx.task.to_dict(),
            "class_weights": ctx.class_weights.tolist() if ctx.class_weights is not None else None,
            "feature_map": None
            if fmap is None
            else {
                "kind": fmap.kind,
                "gamma": fmap.gamma,
                "arrays": {k: _encode_array(v) for k, v in fmap.arrays.items()},
            },
        }
    )


def _feature_batches(state: dict[str, Any], keep: list[str]) -> Any:
    """Return the mapInArrow function that turns source batches into feature batches."""
    prep = Preprocessor.from_dict(state["preprocess"])
    task = Task.from_dict(state["task"])
    weights = np.asarray(state["class_weights"]) if state["class_weights"] is not None else None
    fm = state["feature_map"]
    fmap = None
    if fm is not None:
        fmap = FeatureMap(fm["kind"], float(fm["gamma"]), {k: _decode_array(v) for k, v in fm["arrays"].items()})
    label = state["label"]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            x = prep.transform(batch)
            if fmap is not None:
                x = fmap.transform(x)
            n = x.shape[0]
            known = label in batch.schema.names  # scoring data may lack the label
            y = task.encode(batch.column(label)) if known else np.full(n, -1, dtype=np.int32)
            w = weights[np.maximum(y, 0)] if weights is not None else np.ones(n)
            arrays = [batch.column(c) for c in keep] + [pa.array(y, pa.int32()), pa.array(w), list_array(x)]
            yield pa.RecordBatch.from_arrays(arrays, names=[*keep, LABEL_COL, WEIGHT_COL, FEATURES_COL])

    return run


class SharedFeatures(Transformer, DefaultParamsReadable["SharedFeatures"], DefaultParamsWritable):
    """Appends ``features`` (vector), ``__y`` and ``__w``; drops the source feature columns."""

    state: Param[str] = Param(
        Params._dummy(), "state", "JSON of the fitted preprocessing, feature map, task", TypeConverters.toString
    )

    def __init__(self, state: str = "{}") -> None:
        super().__init__()
        self._setDefault(state="{}")
        self._set(state=state)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        state = json.loads(self.getOrDefault(self.state))
        prep = state["preprocess"]
        consumed = {f["name"] for f in prep["numeric"]} | {c["name"] for c in prep["categorical"]}
        consumed |= set(prep["dropped"]) | {state["label"]}
        keep = [c for c in dataset.columns if c not in consumed]
        schema = StructType(
            [dataset.schema[c] for c in keep]
            + [
                StructField(LABEL_COL, IntegerType(), False),
                StructField(WEIGHT_COL, DoubleType(), False),
                StructField(FEATURES_COL, ArrayType(DoubleType(), False), False),
            ]
        )
        out = dataset.mapInArrow(_feature_batches(state, keep), schema)
        return out.withColumn(FEATURES_COL, array_to_vector(F.col(FEATURES_COL)))


def build_estimator(ctx: FitContext, workers: int, gbt_multiclass: str = "softmax") -> Any:
    """Return the unfitted pyspark.ml estimator for the catalog model in ``ctx``.

    The parameters are the model layer's MLlib (or xgboost) form of the model
    (``pipelines.models.native``); this adds only the columns and Spark's multiclass wrappers:
    OneVsRest for LinearSVC, and for gbt softmax boosting on MLlib regression trees (``boost``)
    or OneVsRest of binary GBTs when ``gbt_multiclass`` is "ovr".
    """
    from pyspark.ml import classification as mc

    name, k = ctx.model.name, ctx.task.n_classes
    weighted: dict[str, Any] = {"weightCol": WEIGHT_COL} if ctx.class_weights is not None else {}
    common: dict[str, Any] = {"featuresCol": FEATURES_COL, "labelCol": LABEL_COL, **weighted}
    features_only: dict[str, Any] = {"featuresCol": FEATURES_COL}  # OneVsRest sets label and weight
    if name == "xgboost":
        return _xgboost_estimator(ctx, workers)
    kind, params = mllib_params(name, ctx.params, ctx.problem)
    if kind == "MultilayerPerceptronClassifier":  # takes no weight column (refused at validation)
        return mc.MultilayerPerceptronClassifier(**params, featuresCol=FEATURES_COL, labelCol=LABEL_COL)
    if k == 2 or kind not in ("LinearSVC", "GBTClassifier"):
        return getattr(mc, kind)(**params, **common)
    if kind == "GBTClassifier" and gbt_multiclass == "softmax":
        from pipelines.engines.spark.boost import SoftmaxBoostingClassifier

        return SoftmaxBoostingClassifier(numClasses=k, parallelism=workers, **params, **common)
    return mc.OneVsRest(classifier=getattr(mc, kind)(**params, **features_only), parallelism=workers, **common)


def _xgboost_estimator(ctx: FitContext, workers: int) -> Any:
    import logging

    from xgboost.spark import SparkXGBClassifier

    logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)
    params, rounds = xgboost_params("xgboost", ctx.params, ctx.problem)
    params = {k: v for k, v in params.items() if k not in ("objective", "num_class")}  # set by the classifier
    # Only set when weighted: a saved weight_col of None does not reload.
    weight_col: dict[str, Any] = {"weight_col": WEIGHT_COL} if ctx.class_weights is not None else {}
    return SparkXGBClassifier(
        features_col=FEATURES_COL,
        label_col=LABEL_COL,
        **weight_col,
        num_workers=workers,
        # A barrier stage cannot run on a union of inputs (a fixed test file is unioned with the
        # source): repartitioning gives xgboost one plain shuffle stage whatever the lineage.
        force_repartition=True,
        n_estimators=rounds,
        **params,
        verbose=False,
    )


def _ovr_gbt(ctx: FitContext, stage: Any) -> bool:
    """Return True for multiclass gbt fitted as OneVsRest (``engine.options.gbt_multiclass: ovr``)."""
    from pyspark.ml.classification import OneVsRestModel

    return ctx.model.name == "gbt" and isinstance(stage, OneVsRestModel)


def output_column(ctx: FitContext, stage: Any) -> str:
    """Return the column the fitted ``stage``'s predictions are read from: probabilities, or raw scores."""
    if ctx.output == "scores" or _ovr_gbt(ctx, stage):
        return "rawPrediction"
    return "probability"


def to_outputs(values: np.ndarray, ctx: FitContext, stage: Any) -> np.ndarray:
    """Return the engine outputs (probabilities or scores) from the column ``output_column`` gave."""
    k = ctx.task.n_classes
    if ctx.output == "scores":
        # Binary LinearSVC gives [-margin, margin]; OneVsRest gives one margin per class.
        return values[:, 1] if k == 2 else values
    if _ovr_gbt(ctx, stage):
        # OneVsRest of GBTs: each binary GBT's margin m has P(class) = 1 / (1 + exp(-2m)).
        p = 1.0 / (1.0 + np.exp(-2.0 * values))
        return p / p.sum(axis=1, keepdims=True)
    return values
