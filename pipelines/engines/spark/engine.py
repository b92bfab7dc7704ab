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

import json
import os
import pickle
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from pipelines.data.reader import Unit, read_units, sliced_units, source_units
from pipelines.data.schema import DataPlan, DataProfile, profile_batch
from pipelines.data.sources import Source
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, SPLIT_NAMES
from pipelines.engines.base import Engine, EngineModel, FitContext, keys_in, prediction_batch
from pipelines.engines.spark import jvm
from pipelines.errors import ArtifactError, ConfigError, DataError, EngineError
from pipelines.models.catalog import Param
from pipelines.models.kernels import landmark_priority
from pipelines.models.native import MLLIB, XGBOOST

if TYPE_CHECKING:
    from pipelines.spec import ModelSpec

MODEL_DIR = "spark_model"
PRIORITY_COLUMN = "__priority"
SIGN_BIT = np.uint64(1 << 63)  # flipping it maps unsigned order onto signed (Spark long) order
_FEATURE_PARTITION_BYTES = 64 << 20  # cached kernel-feature bytes per train partition
_READ_PIECES_PER_SLOT = 2  # source pieces per task slot when reading: every core busy, little skew


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
    ctx: FitContext
    kind: ClassVar[str] = "spark"

    @property
    def format(self) -> str:
        """Return "Spark ML PipelineModel"."""
        return "Spark ML PipelineModel"

    def save(self, directory: Path) -> list[Path]:
        """Write the PipelineModel into ``directory/spark_model``; return its files."""
        target = directory / MODEL_DIR
        self.pipeline.write().overwrite().save(str(target))
        return sorted(p for p in target.rglob("*") if p.is_file())

    def native_importance(self) -> tuple[np.ndarray, str] | None:
        """Return MLlib's featureImportances (trees), mean |coefficient| (linear models) or xgboost's gain."""
        from pyspark.ml.classification import OneVsRestModel

        stage = self.pipeline.stages[-1]
        if hasattr(stage, "get_booster"):
            from pipelines.models.fitted import BoosterModel

            return BoosterModel.from_booster(stage.get_booster(), self.ctx.task.n_classes).native_importance()
        parts: list[Any] = list(stage.models) if isinstance(stage, OneVsRestModel) else [stage]
        if all(hasattr(p, "featureImportances") for p in parts):
            return np.mean([p.featureImportances.toArray() for p in parts], axis=0), "impurity"
        if hasattr(stage, "coefficientMatrix"):
            return np.abs(stage.coefficientMatrix.toArray()).mean(axis=0), "coefficient"
        if all(hasattr(p, "coefficients") for p in parts):
            return np.mean([np.abs(p.coefficients.toArray()) for p in parts], axis=0), "coefficient"
        return None

    def native_params(self) -> dict[str, Any]:
        """Return the fitted classifier's MLlib parameters (OneVsRest: its binary classifier's), or
        xgboost.spark's booster settings."""
        from pyspark.ml.classification import OneVsRestModel

        stage = self.pipeline.stages[-1]
        if hasattr(stage, "get_booster"):  # xgboost.spark: its saved booster keeps no training parameters
            from pipelines.models.fitted import booster_settings

            params = {param.name: value for param, value in stage.extractParamMap().items() if value is not None}
            extra = params.pop("arbitrary_params_dict", {}) or {}
            return booster_settings(stage.get_booster()) | params | extra
        if isinstance(stage, OneVsRestModel):
            stage = stage.models[0]
        return {param.name: value for param, value in stage.extractParamMap().items()}

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return the classifier stage's outputs for a feature matrix, through the active SparkSession.

        The engine predicts whole splits on the cluster (``SparkEngine.predict``); this is the same
        model on rows already in this process (reports, checks), so it needs a session.
        """
        from pyspark.ml.functions import array_to_vector, vector_to_array
        from pyspark.sql import SparkSession
        from pyspark.sql import functions as F

        from pipelines.engines.spark.features import FEATURES_COL, list_array, output_column, to_outputs

        session = SparkSession.getActiveSession()
        if session is None:
            raise EngineError("engine spark: predicting with a Spark model needs a running SparkSession")
        stage = self.pipeline.stages[-1]
        x = np.asarray(x, dtype=np.float64)
        frame = session.createDataFrame(pa.table({"__i": np.arange(len(x)), FEATURES_COL: list_array(x)}))
        frame = frame.withColumn(FEATURES_COL, array_to_vector(F.col(FEATURES_COL)))
        column = output_column(self.ctx, stage)
        out = stage.transform(frame).select("__i", vector_to_array(F.col(column)).alias("v")).toArrow()
        order = np.argsort(out.column("__i").to_numpy())
        values = np.asarray(out.column("v").flatten().to_numpy(), dtype=np.float64).reshape(len(x), -1)[order]
        return to_outputs(values, self.ctx, stage)


def _read_batches(plan: DataPlan, units: list[Unit], source: Source, is_test_source: bool) -> Any:
    """Return the mapInArrow function that reads the units named by each batch's ``id`` with the shared reader."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for i in batch.column("id").to_pylist():
                table = read_units(plan, [units[i]], source, is_test_source=is_test_source)
                keys = table.column(KEY_COLUMN).to_numpy().view(np.int64)
                table = table.set_column(table.schema.get_field_index(KEY_COLUMN), KEY_COLUMN, pa.array(keys))
                yield from spark_ready(table).to_batches()

    return run


def spark_ready(table: pa.Table) -> pa.Table:
    """Return ``table`` with types Spark's Arrow conversion takes (dictionaries decoded, large strings plain)."""
    fields = []
    for field in table.schema:
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        fields.append(field.with_type(pa.string() if pa.types.is_large_string(kind) else kind))
    schema = pa.schema(fields)
    return table if schema.equals(table.schema) else table.cast(schema)


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

    LIBRARY: ClassVar[dict[str, str]] = {m: XGBOOST if m == "xgboost" else MLLIB for m in MODELS}
    OPTIONS: ClassVar[dict[str, Param]] = {
        "startup_timeout_s": Param(60.0, "float", "seconds to wait for executors on a cluster", low=1e-3),
        "gbt_multiclass": Param(
            "softmax",
            "str",
            "softmax (multinomial boosting on MLlib regression trees) or ovr (OneVsRest of GBTs)",
            choices=("softmax", "ovr"),
        ),
    }
    OPTION_PREFIXES: ClassVar[dict[str, str]] = {"spark.": "any Spark setting"}

    def __init__(self, spec: Any, seed: int = 0) -> None:
        super().__init__(spec, seed)
        self.session: Any = None
        self._owned = False
        self._scratch: str | None = None
        self.last_tune: dict[str, Any] | None = None  # set by tune (how trials were fitted)

    @classmethod
    def refuses(cls, model: ModelSpec) -> str | None:
        """Return why MLlib cannot run the model with these settings (the MLP takes no row weights)."""
        if model.name == "mlp" and model.class_weight is not None:
            return (
                "model.class_weight: MLlib's MultilayerPerceptronClassifier takes no row weights;"
                " remove class_weight or use another model on Spark"
            )
        return None

    def on_start(self) -> None:
        """Use the active SparkSession (spark-submit, tests) or start one on ``engine.address``."""
        from pyspark.sql import SparkSession

        from pipelines.logs import spark_java_options

        conf = {k: str(v) for k, v in self.options.items() if k.startswith("spark.")}
        timeout = float(self.options["startup_timeout_s"])
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
            "spark.driver.extraJavaOptions": spark_java_options(),  # log4j to a file, not the terminal
        }
        if self.spec.workers and master.startswith("spark://"):
            defaults["spark.cores.max"] = str(self.spec.workers)
        from pyspark import SparkContext

        from pipelines.spec import is_secret_key

        # pyspark puts builder settings on the JVM's command line (spark-submit --conf K=V) when it
        # starts the JVM: secret-looking ones go through a private properties file instead.
        hidden = {k: v for k, v in conf.items() if is_secret_key(k)} if SparkContext._gateway is None else {}
        for key, value in {**defaults, **conf}.items():
            if key not in hidden:
                builder = builder.config(key, value)
        try:
            with secret_properties(hidden, Path(self._scratch)):
                self.session = builder.getOrCreate()
        except Exception as exc:  # the JVM failed to start: say why in one line
            raise EngineError(f"engine spark: cannot start Spark on {master}: {str(exc).splitlines()[0]}") from exc
        self._owned = True
        self.session.sparkContext.setLogLevel("ERROR")
        if master.startswith("spark://"):
            self._wait_for_executors(master, timeout)

    def _wait_for_executors(self, master: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while jvm.executors(self.session) < 1:
            if time.monotonic() > deadline:
                self.on_shutdown()
                raise EngineError(
                    f"engine.address: no executor registered with {master} within {timeout:.0f}s"
                    " (no worker with free cores and memory?)"
                )
            time.sleep(0.5)

    def on_interrupt(self) -> None:
        """Cancel the session's jobs over a fresh py4j connection (the interrupted call's is left mid-answer)."""
        if self.session is not None:
            jvm.drop_thread_connection(self.session)
            self.session.sparkContext.cancelAllJobs()

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
        return jvm.task_slots(self.session)

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

    def _read(self, plan: DataPlan, source: Source, is_test_source: bool) -> Any:
        """Return the source's rows read by the shared reader in executors, one task per piece."""
        from pyspark.sql.pandas.types import from_arrow_schema

        units = sliced_units(source_units(source), _READ_PIECES_PER_SLOT * self.task_slots)
        empty = spark_ready(plan.attach(plan.read_schema.empty_table(), is_test_source=is_test_source))
        keys = empty.schema.get_field_index(KEY_COLUMN)
        schema = from_arrow_schema(empty.schema.set(keys, pa.field(KEY_COLUMN, pa.int64(), nullable=False)))
        pieces = self.session.range(0, len(units), 1, numPartitions=max(1, len(units)))
        return pieces.mapInArrow(_read_batches(plan, units, source, is_test_source), schema)

    def load(self, plan: DataPlan) -> SparkData:
        """Return the plan's rows with row keys and the split attached, cached on the executors."""
        from pyspark import StorageLevel

        frame = self._read(plan, plan.source, False)
        if plan.test_source is not None:
            frame = frame.unionByName(self._read(plan, plan.test_source, True))
        return SparkData(frame.persist(StorageLevel.MEMORY_AND_DISK), plan)

    def profile(self, data: SparkData, plan: DataPlan) -> DataProfile:
        """Return the merge of per-partition profiles computed on the executors."""
        from pyspark.sql.types import BinaryType, StructField, StructType

        schema = StructType([StructField("profile", BinaryType())])
        try:
            rows = data.frame.mapInArrow(_profile_batches(plan), schema).collect()
        except Exception as exc:
            raise spark_error(exc, f"data.source: Spark failed reading {plan.source.text}") from None
        merged = DataProfile()
        for row in rows:
            merged = merged.merge(pickle.loads(row["profile"]))
        if not sum(merged.rows.values()):
            raise DataError(f"data.source: {plan.source.text} has no rows")
        return merged

    def sample_rows(self, data: SparkData, split: str, n: int, seed: int) -> pa.Table:
        """Return the ``n`` rows of ``split`` with the smallest landmark priority (as the local engine)."""
        from pyspark.sql.types import LongType, StructField, StructType

        train = data.rows(split)
        schema = StructType([*train.schema.fields, StructField(PRIORITY_COLUMN, LongType(), False)])
        picked = train.mapInArrow(_priority_batches(seed), schema).orderBy(PRIORITY_COLUMN).limit(n)
        return picked.drop(PRIORITY_COLUMN).toArrow()

    def keys_found(self, data: SparkData, keys: np.ndarray, split: str) -> np.ndarray:
        """Return the keys of ``keys`` that rows of ``split`` have (looked up in the executors)."""
        from pyspark.sql.types import LongType, StructField, StructType

        shared = self.session.sparkContext.broadcast(keys)
        code = SPLIT_NAMES.index(split)

        def found(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                hits = keys_in(batch, shared.value, code).view(np.int64)
                yield pa.RecordBatch.from_arrays([pa.array(hits, pa.int64())], names=["key"])

        schema = StructType([StructField("key", LongType(), False)])
        try:
            table = data.frame.mapInArrow(found, schema).toArrow()
        finally:
            shared.unpersist()
        return np.unique(np.asarray(table.column("key").to_numpy()).view(np.uint64))

    def _workers(self) -> int:
        slots = self.task_slots
        wanted = self.spec.workers or slots
        if wanted > slots:
            raise EngineError(
                f"engine.workers: {wanted} workers asked for but the Spark cluster runs {slots} task(s) at once"
                " (cores / spark.task.cpus); add cores or lower engine.workers"
            )
        return wanted

    def train_frame(self, data: SparkData, ctx: FitContext) -> tuple[Any, Any]:
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

    def estimator(self, ctx: FitContext) -> Any:
        """Return the unfitted pyspark.ml estimator of ``ctx``'s model (the model layer's MLlib form)."""
        from pipelines.engines.spark.features import build_estimator

        return build_estimator(ctx, self._workers(), gbt_multiclass=str(self.options["gbt_multiclass"]))

    def fit(self, data: SparkData, ctx: FitContext) -> SparkModel:
        """Return the PipelineModel (shared features + estimator) fitted on the train split."""
        from pyspark.ml import PipelineModel

        features, train = self.train_frame(data, ctx)
        estimator = self.estimator(ctx)
        if hasattr(estimator, "on_round"):  # softmax boosting runs its rounds from the driver
            estimator.on_round = self.on_step
        try:
            fitted = estimator.fit(train)
        except (ConfigError, EngineError):
            raise
        except Exception as exc:
            raise spark_error(exc, f"engine spark: fitting {ctx.model.name} failed") from None
        finally:
            train.unpersist()
        return SparkModel(PipelineModel(stages=[features, fitted]), ctx)

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
        try:
            table = scored.select(KEY_COLUMN, LABEL_COL, vector_to_array(F.col(column)).alias("v")).toArrow()
        except Exception as exc:
            raise spark_error(exc, f"engine spark: predicting the {split} split failed") from None
        for batch in table.to_batches():
            if not batch.num_rows:
                continue
            keys = np.asarray(batch.column(KEY_COLUMN).to_numpy()).view(np.uint64)
            y = np.asarray(batch.column(LABEL_COL).to_numpy(), dtype=np.int32)
            flat = batch.column("v").flatten().to_numpy()
            values = np.asarray(flat, dtype=np.float64).reshape(batch.num_rows, -1)
            yield prediction_batch(keys, y, to_outputs(values, ctx, stage), ctx.output)

    def load_model(self, directory: Path, ctx: FitContext, kind: str) -> EngineModel:
        """Return the PipelineModel saved by ``SparkModel.save`` (after refusing any pickled stage state)."""
        from pyspark.ml import PipelineModel

        target = directory / MODEL_DIR
        if not target.is_dir():
            raise ArtifactError(f"{directory} holds no Spark model ({MODEL_DIR}/ is missing)")
        refuse_pickled_state(target)
        return SparkModel(PipelineModel.load(str(target)), ctx)


@contextmanager
def secret_properties(settings: dict[str, str], directory: Path) -> Iterator[None]:
    """Hand ``settings`` to the JVM pyspark starts meanwhile in a properties file only its owner reads.

    spark-submit reads one properties file: the spark-defaults.conf it would have read is copied
    in first. The file is deleted as soon as the JVM has started (it reads it at startup).
    """
    if not settings:
        yield
        return
    home = os.environ.get("SPARK_HOME")
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (os.path.join(home, "conf") if home else None)
    defaults = Path(conf_dir) / "spark-defaults.conf" if conf_dir else None
    lines = [defaults.read_text()] if defaults is not None and defaults.is_file() else []
    lines += [f"{k} {_property_value(v)}" for k, v in settings.items()]
    path = directory / "secret.properties"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    previous = os.environ.get("PYSPARK_SUBMIT_ARGS")
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--properties-file {shlex.quote(str(path))} {previous or 'pyspark-shell'}"
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        if previous is None:
            os.environ.pop("PYSPARK_SUBMIT_ARGS", None)
        else:
            os.environ["PYSPARK_SUBMIT_ARGS"] = previous


def _property_value(value: str) -> str:
    """Return ``value`` escaped for a Java properties file."""
    out = str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + out if out[:1] in (" ", "\t") else out


def refuse_pickled_state(model_dir: Path) -> None:
    """Raise an ArtifactError when a stage's metadata carries a pickled object.

    xgboost.spark saves an estimator's ``callbacks`` with cloudpickle under the metadata key
    ``serialized_callbacks`` and unpickles it on load; scaleclf never sets callbacks, so such a key
    in a run directory was put there by someone else and must not reach pyspark. Metadata lines
    are read as JSON, as pyspark reads them, so an escaped key (``serialized\\u005f...``) is found too;
    a metadata line that is not JSON is refused as well.
    """
    for path in sorted(model_dir.rglob("*")):
        if not (path.is_file() and "metadata" in path.relative_to(model_dir).parts):
            continue
        if path.name.startswith((".", "_")):  # Hadoop's .crc checksums and the _SUCCESS marker
            continue
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                metadata = json.loads(line)
            except ValueError:
                raise ArtifactError(
                    f"{path} is not Spark metadata (a line is not JSON); scaleclf does not load it"
                ) from None
            if _has_serialized_key(metadata):
                raise ArtifactError(f"{path} holds a pickled object (serialized_*); scaleclf does not load it")


def _has_serialized_key(node: Any) -> bool:
    if isinstance(node, dict):
        return any(str(k).startswith("serialized_") or _has_serialized_key(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_serialized_key(v) for v in node)
    return False


def spark_error(exc: BaseException, what: str) -> Exception:
    """Return a one-line error for a (often Java) Spark exception: a DataError when the shared reader's
    check failed inside an executor, else an EngineError saying ``what`` failed and why."""
    reason = spark_reason(exc)
    marker = "DataError: "
    for line in str(exc).splitlines():
        if marker in line:
            return DataError(line.split(marker, 1)[1].strip())
    return EngineError(f"{what}: {reason}")


def spark_reason(exc: BaseException) -> str:
    """Return the most useful single line of a (often Java) Spark exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Error:" in line or "Exception:" in line:
            return line[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]
