"""The Spark engine: Spark reads the data, MLlib / xgboost.spark fit, predictions come back as Arrow.

Row keys and the split are attached with the shared ``attach_key_and_split`` inside
``mapInArrow``, profiles are computed per partition and merged on the driver, and the
shared preprocessing (plus kernel feature map) is a pyspark.ml stage (``SharedFeatures``)
saved with the fitted classifier as one ``PipelineModel``. Whatever MLlib lacks is filled
in: multiclass linear SVMs through OneVsRest, multiclass gbt as softmax boosting on MLlib
regression trees (``boost``; OneVsRest with ``engine.options.gbt_multiclass: ovr``), SVM
probabilities through the shared Platt scaling, class weights through a weight column.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from pipelines.data.schema import DataPlan, DataProfile, profile_batch
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, SPLIT_NAMES
from pipelines.engines.base import Engine, EngineModel, FitContext, prediction_batch
from pipelines.errors import ArtifactError, ConfigError, DataError, EngineError
from pipelines.models.kernels import landmark_priority

MODEL_DIR = "spark_model"
PRIORITY_COLUMN = "__priority"
SIGN_BIT = np.uint64(1 << 63)  # flipping it maps unsigned order onto signed (Spark long) order
OPTIONS = {
    "startup_timeout_s": "seconds to wait for executors on a cluster (default 60)",
    "gbt_multiclass": "softmax (multinomial boosting on MLlib regression trees, default) or ovr (OneVsRest of GBTs)",
}
GBT_MULTICLASS = ("softmax", "ovr")
_FEATURE_PARTITION_BYTES = 64 << 20  # cached kernel-feature bytes per train partition


@dataclass
class SparkData:
    """The plan's rows as a cached Spark DataFrame with ``__row_key`` (long) and ``__split``."""

    frame: Any  # pyspark.sql.DataFrame
    plan: DataPlan

    def rows(self, split: str) -> Any:
        """Return the rows of one split."""
        from pyspark.sql import functions as F

        return self.frame.filter(F.col(SPLIT_COLUMN) == SPLIT_NAMES.index(split))


@dataclass
class SparkModel(EngineModel):
    """A fitted ``PipelineModel``: the shared features stage, then the MLlib / xgboost model."""

    pipeline: Any  # pyspark.ml.PipelineModel

    @property
    def format(self) -> str:
        """Return "Spark ML PipelineModel"."""
        return "Spark ML PipelineModel"

    def save(self, directory: Path) -> list[Path]:
        """Write the PipelineModel into ``directory/spark_model``; return its files."""
        target = directory / MODEL_DIR
        self.pipeline.write().overwrite().save(str(target))
        return sorted(p for p in target.rglob("*") if p.is_file())


def _attach_batches(plan: DataPlan, is_test_source: bool) -> Any:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            out = plan.attach(batch, is_test_source=is_test_source)
            keys = out.column(KEY_COLUMN).to_numpy().view(np.int64)
            yield out.set_column(out.schema.get_field_index(KEY_COLUMN), KEY_COLUMN, pa.array(keys))

    return run


def _profile_batches(plan: DataPlan) -> Any:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        prof = DataProfile()
        for batch in batches:
            if batch.num_rows:
                prof = prof.merge(profile_batch(batch, plan))
        yield pa.RecordBatch.from_arrays([pa.array([pickle.dumps(prof)], pa.binary())], names=["profile"])

    return run


def _priority_batches(seed: int) -> Any:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            keys = batch.column(KEY_COLUMN).to_numpy().view(np.uint64)
            prio = (landmark_priority(keys, seed) ^ SIGN_BIT).view(np.int64)
            yield batch.append_column(PRIORITY_COLUMN, pa.array(prio))

    return run


def _check_java() -> None:
    home = os.environ.get("JAVA_HOME")
    if (home and Path(home, "bin", "java").exists()) or shutil.which("java"):
        return
    raise EngineError(
        "engine spark: Java was not found (install Java 17 or 21, or set JAVA_HOME); Spark runs on the JVM"
    )


def _check_master(address: str) -> None:
    if not address.startswith("spark://"):
        return
    reason = "no host:port"
    for hostport in address.removeprefix("spark://").split(","):
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                return
        except ValueError:
            reason = f"{hostport!r} is not host:port"
        except OSError as exc:
            reason = exc.strerror or str(exc)
    raise EngineError(f"engine.address: cannot reach the Spark master {address} ({reason}); is it running?")


class SparkEngine(Engine):
    """Runs the catalog on Spark MLlib and xgboost.spark, locally or against a cluster."""

    name = "spark"
    MODELS: ClassVar[dict[str, str]] = {
        "logistic_regression": "MLlib LogisticRegression (L-BFGS, regParam = 1 / (C n))",
        "linear_svm": "MLlib LinearSVC (OneVsRest for multiclass) + shared Platt scaling",
        "naive_bayes": "MLlib NaiveBayes (gaussian)",
        "decision_tree": "MLlib DecisionTreeClassifier",
        "random_forest": "MLlib RandomForestClassifier",
        "gbt": "MLlib GBTClassifier; multiclass: softmax boosting on MLlib DecisionTreeRegressor (or OneVsRest)",
        "xgboost": "xgboost.spark SparkXGBClassifier (hist, one worker per task slot)",
        "mlp": "MLlib MultilayerPerceptronClassifier (sigmoid hidden layers, L-BFGS)",
        "rff_svm": "shared random Fourier features in mapInArrow + MLlib LinearSVC",
        "nystroem_svm": "shared Nystroem features in mapInArrow + MLlib LinearSVC",
    }

    def __init__(self, spec: Any, seed: int = 0) -> None:
        super().__init__(spec, seed)
        self.session: Any = None
        self._owned = False
        self._scratch: str | None = None
        self.last_tune: dict[str, Any] | None = None  # set by tune (how trials were fitted)

    def _options(self) -> tuple[dict[str, str], float]:
        conf, timeout = {}, 60.0
        for key, value in self.spec.options.items():
            if key.startswith("spark."):
                conf[key] = str(value)
            elif key == "startup_timeout_s":
                timeout = float(value)
            elif key == "gbt_multiclass":
                if value not in GBT_MULTICLASS:
                    raise ConfigError(
                        f"config error: engine.options.gbt_multiclass: {value!r} is not one of"
                        f" {', '.join(GBT_MULTICLASS)}"
                    )
            else:
                allowed = ", ".join(["spark.* (any Spark setting)", *OPTIONS])
                raise ConfigError(f"config error: engine.options.{key}: unknown option for spark (allowed: {allowed})")
        return conf, timeout

    def on_start(self) -> None:
        """Use the active SparkSession (spark-submit, tests) or start one on ``engine.address``."""
        from pyspark.sql import SparkSession

        conf, timeout = self._options()
        active = SparkSession.getActiveSession()
        if active is not None:
            self.session = active
            return
        _check_java()
        master = self.spec.address or f"local[{self.spec.workers or '*'}]"
        _check_master(master)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        self._scratch = tempfile.mkdtemp(prefix="scaleclf-spark-")
        builder = SparkSession.builder.master(master).appName("scaleclf")
        defaults = {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.local.dir": self._scratch,
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.shuffle.partitions": str(2 * (self.spec.workers or os.cpu_count() or 2)),
            "spark.driver.memory": "2g",
            "spark.pyspark.python": os.environ["PYSPARK_PYTHON"],
        }
        if self.spec.workers and master.startswith("spark://"):
            defaults["spark.cores.max"] = str(self.spec.workers)
        for key, value in {**defaults, **conf}.items():
            builder = builder.config(key, value)
        try:
            self.session = builder.getOrCreate()
        except Exception as exc:  # the JVM failed to start: say why in one line
            raise EngineError(f"engine spark: cannot start Spark on {master}: {str(exc).splitlines()[0]}") from exc
        self._owned = True
        self.session.sparkContext.setLogLevel("ERROR")
        if master.startswith("spark://"):
            self._wait_for_executors(master, timeout)

    def _wait_for_executors(self, master: str, timeout: float) -> None:
        sc = self.session.sparkContext
        deadline = time.monotonic() + timeout
        while sc._jsc.sc().getExecutorMemoryStatus().size() < 2:  # the driver counts as one
            if time.monotonic() > deadline:
                self.on_shutdown()
                raise EngineError(
                    f"engine.address: no executor registered with {master} within {timeout:.0f}s"
                    " (no worker with free cores and memory?)"
                )
            time.sleep(0.5)

    def on_shutdown(self) -> None:
        """Stop the session if this engine started it and remove its scratch directory."""
        if self._owned and self.session is not None:
            self.session.stop()
            self.session = None
            self._owned = False
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    @property
    def task_slots(self) -> int:
        """Return the tasks the cluster runs at once (its cores / spark.task.cpus)."""
        jsc = self.session.sparkContext._jsc.sc()  # the same JVM call xgboost.spark makes
        return max(1, int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().resourceProfileFromId(0))))

    def describe(self) -> dict[str, Any]:
        """Return the master, Spark version, task slots and task cpus."""
        sc = self.session.sparkContext
        return {
            "engine": self.name,
            "master": sc.master,
            "spark": sc.version,
            "task_slots": self.task_slots,
            "task_cpus": int(sc.getConf().get("spark.task.cpus", "1")),
        } | ({"tune": self.last_tune} if self.last_tune else {})

    def preload(self, model: str) -> None:
        """Import pyspark.ml (and xgboost.spark) before the bench timer starts."""
        import pyspark.ml.classification  # noqa: F401

        if model == "xgboost":
            import xgboost.spark  # noqa: F401

    def _read(self, source: Any, columns: list[str], field_name: str) -> Any:
        reader = self.session.read
        paths = source.uris()
        try:
            if source.format == "csv":
                frame = reader.csv(paths, header=True, inferSchema=True)
            else:
                frame = reader.parquet(*paths)
            return frame.select(*columns)
        except Exception as exc:
            raise DataError(f"{field_name}: Spark cannot read {source.text}: {str(exc).splitlines()[0]}") from exc

    def load(self, plan: DataPlan) -> SparkData:
        """Return the plan's rows with row keys and the split attached, cached on the executors."""
        from pyspark import StorageLevel
        from pyspark.sql.types import ByteType, LongType, StructField, StructType

        def keyed(frame: Any, is_test: bool) -> Any:
            schema = StructType(
                [
                    *frame.schema.fields,
                    StructField(KEY_COLUMN, LongType(), False),
                    StructField(SPLIT_COLUMN, ByteType()),
                ]
            )
            return frame.mapInArrow(_attach_batches(plan, is_test), schema)

        frame = keyed(self._read(plan.source, plan.columns, "data.source"), False)
        if plan.test_source is not None:
            test = self._read(plan.test_source, plan.columns, "data.test_source")
            frame = frame.unionByName(keyed(test, True), allowMissingColumns=False)
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        return SparkData(frame, plan)

    def profile(self, data: SparkData, plan: DataPlan) -> DataProfile:
        """Return the merge of per-partition profiles computed on the executors."""
        from pyspark.sql.types import BinaryType, StructField, StructType

        schema = StructType([StructField("profile", BinaryType())])
        try:
            rows = data.frame.mapInArrow(_profile_batches(plan), schema).collect()
        except Exception as exc:
            raise DataError(f"data.source: Spark failed reading {plan.source.text}: {_spark_reason(exc)}") from exc
        merged = DataProfile()
        for row in rows:
            merged = merged.merge(pickle.loads(row["profile"]))
        if not sum(merged.rows.values()):
            raise DataError(f"data.source: {plan.source.text} has no rows")
        return merged

    def landmark_rows(self, data: SparkData, n: int, seed: int) -> pa.Table:
        """Return the ``n`` train rows with the smallest landmark priority (as the local engine)."""
        from pyspark.sql.types import LongType, StructField, StructType

        train = data.rows("train")
        schema = StructType([*train.schema.fields, StructField(PRIORITY_COLUMN, LongType(), False)])
        picked = train.mapInArrow(_priority_batches(seed), schema).orderBy(PRIORITY_COLUMN).limit(n)
        return picked.drop(PRIORITY_COLUMN).toArrow()

    def _workers(self) -> int:
        slots = self.task_slots
        wanted = self.spec.workers or slots
        if wanted > slots:
            raise EngineError(
                f"engine.workers: {wanted} workers asked for but the Spark cluster runs {slots} task(s) at once"
                " (cores / spark.task.cpus); add cores or lower engine.workers"
            )
        return wanted

    def _train_frame(self, data: SparkData, ctx: FitContext) -> tuple[Any, Any]:
        """Return (the SharedFeatures stage, the train rows' feature frame, persisted unless kernel-wide)."""
        from pyspark import StorageLevel

        from pipelines.engines.spark.features import SharedFeatures, feature_state

        features = SharedFeatures(state=feature_state(ctx, data.plan.label))
        rows = data.rows("train")
        cache = True
        if ctx.feature_map is not None:
            # A kernel map widens each row to n_components doubles (1M rows x 500 = 4 GB). The
            # DataFrame cache builds those columns on the heap and overran 3 GB executors (OOM)
            # at 1M rows, so the wide frame is not cached: MLlib's linear models cache their own
            # instance blocks. The (narrow) source rows are split so a partition's features
            # stay near 64 MB.
            width = ctx.feature_map.n_components * 8
            wanted = int(np.ceil(float(sum(ctx.task.class_counts)) * width / _FEATURE_PARTITION_BYTES))
            if wanted > rows.rdd.getNumPartitions():
                rows = rows.repartition(wanted)
            cache = False
        train = features.transform(rows)
        if cache:
            train = train.persist(StorageLevel.MEMORY_AND_DISK)
        return features, train

    def _estimator(self, ctx: FitContext) -> Any:
        from pipelines.engines.spark.features import build_estimator

        counts = np.asarray(ctx.task.class_counts, dtype=np.float64)
        weights = ctx.class_weights if ctx.class_weights is not None else np.ones(len(counts))
        multiclass = str(self.spec.options.get("gbt_multiclass", "softmax"))
        return build_estimator(ctx, float(counts @ weights), self._workers(), gbt_multiclass=multiclass)

    def fit(self, data: SparkData, ctx: FitContext) -> SparkModel:
        """Return the PipelineModel (shared features + estimator) fitted on the train split."""
        from pyspark.ml import PipelineModel

        features, train = self._train_frame(data, ctx)
        try:
            fitted = self._estimator(ctx).fit(train)
        except (ConfigError, EngineError):
            raise
        except Exception as exc:
            raise EngineError(f"engine spark: fitting {ctx.model.name} failed: {_spark_reason(exc)}") from exc
        finally:
            train.unpersist()
        return SparkModel(PipelineModel(stages=[features, fitted]))

    def tune(
        self,
        data: Any,
        ctx: FitContext,
        tuning: Any,
        score: Callable[[EngineModel, FitContext], dict[str, Any]],
        on_trial: Callable[[Any], None] | None = None,
    ) -> tuple[EngineModel, FitContext, list[Any]] | None:
        """Fit the shared trials with ``Estimator.fitMultiple`` on ``tuning.parallelism`` threads.

        See ``pipelines.engines.spark.tune``: TrainValidationSplit's parallel fitting over param
        maps, scored on the fixed valid split with the shared metrics.
        """
        from pipelines.engines.spark.tune import tune_on_spark

        return tune_on_spark(self, data, ctx, tuning, score, on_trial)

    def predict(self, model: EngineModel, data: SparkData, ctx: FitContext, split: str) -> Iterator[pa.RecordBatch]:
        """Yield prediction batches for ``split``, collected from Spark as Arrow (``toArrow``)."""
        from pyspark.ml.functions import vector_to_array
        from pyspark.sql import functions as F

        from pipelines.engines.spark.features import LABEL_COL, output_column, to_outputs

        assert isinstance(model, SparkModel)
        scored = model.pipeline.transform(data.rows(split))
        stage = model.pipeline.stages[-1]
        column = output_column(ctx, stage)
        table = scored.select(KEY_COLUMN, LABEL_COL, vector_to_array(F.col(column)).alias("v")).toArrow()
        for batch in table.to_batches():
            if not batch.num_rows:
                continue
            keys = np.asarray(batch.column(KEY_COLUMN).to_numpy()).view(np.uint64)
            y = np.asarray(batch.column(LABEL_COL).to_numpy(), dtype=np.int32)
            flat = batch.column("v").flatten().to_numpy()
            values = np.asarray(flat, dtype=np.float64).reshape(batch.num_rows, -1)
            yield prediction_batch(keys, y, to_outputs(values, ctx, stage), ctx.output)

    def load_model(self, directory: Path, ctx: FitContext) -> SparkModel:
        """Return the PipelineModel saved by ``SparkModel.save``."""
        from pyspark.ml import PipelineModel

        target = directory / MODEL_DIR
        if not target.is_dir():
            raise ArtifactError(f"{directory} holds no Spark model ({MODEL_DIR}/ is missing)")
        return SparkModel(PipelineModel.load(str(target)))


def _spark_reason(exc: BaseException) -> str:
    """Return the most useful single line of a (often Java) Spark exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Error:" in line or "Exception:" in line:
            return line[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]
