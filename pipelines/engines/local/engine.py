"""The local engine: the reference implementation of every catalog model (scikit-learn, xgboost).

Data is read with the shared reader into one in-process table; the shared preprocessing and
kernel feature maps turn it into a float64 matrix for the model layer's scikit-learn or xgboost
estimator (``pipelines.models.native.sklearn_estimator``). When that table would not fit in
``resources.memory`` (``memory``), the models that can stream read the source unit by unit
instead (``stream``); the ones that need every row at once refuse with the estimate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.reader import read_units, source_units
from pipelines.data.schema import DataPlan, DataProfile, profile_batch
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, SPLIT_NAMES
from pipelines.engines.base import Engine, EngineModel, FitContext, keys_in, predict_batch
from pipelines.engines.local.memory import check_in_memory, in_memory_bytes, should_stream
from pipelines.engines.local.stream import StreamedData, fit_streamed
from pipelines.errors import DataError
from pipelines.models.catalog import Param
from pipelines.models.fitted import BoosterModel, SklearnModel
from pipelines.models.kernels import landmark_priority
from pipelines.models.native import SKLEARN, XGBOOST, sklearn_estimator

PREDICT_BATCH_ROWS = 65_536


def round_counter(on_step: Callable[..., None]) -> Any:
    """Return an xgboost callback that reports every finished boosting round to ``on_step``."""
    import xgboost

    class Rounds(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            on_step(epoch + 1)
            return False

    return Rounds()


@dataclass
class LocalData:
    """All rows in one Arrow table with ``__row_key`` and ``__split`` columns."""

    table: pa.Table

    def rows(self, split: str) -> pa.Table:
        """Return the rows of one split."""
        code = SPLIT_NAMES.index(split)
        return self.table.filter(pc.equal(self.table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))


def fit_estimator(
    x: np.ndarray, y: np.ndarray, ctx: FitContext, n_jobs: int, on_step: Callable[..., None] | None = None
) -> EngineModel:
    """Return the model layer's scikit-learn / xgboost estimator for ``ctx`` fitted on ``(x, y)``."""
    estimator = sklearn_estimator(ctx.model.name, ctx.params, ctx.seed, n_jobs)
    if on_step is not None and ctx.model.name == "xgboost":
        estimator.set_params(callbacks=[round_counter(on_step)])
    weights = ctx.class_weights[y] if ctx.class_weights is not None else None
    estimator.fit(x, y, sample_weight=weights)
    if ctx.model.name == "xgboost":
        return BoosterModel.from_booster(estimator.get_booster(), ctx.task.n_classes)
    return SklearnModel(estimator, ctx.output)


class LocalEngine(Engine):
    """Runs every catalog model in this process with scikit-learn and xgboost."""

    name = "local"
    MODELS: ClassVar[dict[str, str]] = {
        "logistic_regression": "sklearn LogisticRegression (lbfgs)",
        "linear_svm": "sklearn LinearSVC + shared Platt scaling",
        "naive_bayes": "sklearn GaussianNB",
        "decision_tree": "sklearn DecisionTreeClassifier",
        "random_forest": "sklearn RandomForestClassifier",
        "gbt": "sklearn HistGradientBoostingClassifier",
        "xgboost": "xgboost XGBClassifier (hist)",
        "mlp": "sklearn MLPClassifier (adam)",
        "rff_svm": "shared random Fourier features + sklearn LinearSVC",
        "nystroem_svm": "shared Nystroem features + sklearn LinearSVC",
    }
    LIBRARY: ClassVar[dict[str, str]] = {m: XGBOOST if m == "xgboost" else SKLEARN for m in MODELS}
    OPTIONS: ClassVar[dict[str, Param]] = {
        "streaming": Param(
            "auto",
            "str",
            "read the source unit by unit and spill the train features to disk: auto (when the in-memory"
            " table is estimated above half of resources.memory), always, never",
            choices=("auto", "always", "never"),
        ),
        "spill_dir": Param(
            None, "str", "directory of the streamed fit's spill files (default: the system temp)", nullable=True
        ),
    }

    def __init__(self, spec: Any, seed: int = 0) -> None:
        super().__init__(spec, seed)
        self.model_name: str | None = None
        self.memory: int | None = None
        self.kernel_width = 0
        self.estimate: dict[str, Any] = {}
        self._data: LocalData | StreamedData | None = None

    def plan(self, model: str, params: dict[str, Any], memory: int) -> None:
        """Remember the job's model and memory budget: ``load`` chooses in-memory or streamed from them."""
        self.model_name, self.memory = model, memory
        self.kernel_width = int(params.get("n_components", 0)) if model in ("rff_svm", "nystroem_svm") else 0

    @property
    def n_jobs(self) -> int:
        """Return the threads estimators may use: ``engine.workers`` or every core."""
        return self.spec.workers or os.cpu_count() or 1

    def preload(self, model: str) -> None:
        """Import scikit-learn's or xgboost's estimator module, skops and Parquet writing."""
        import pyarrow.parquet  # noqa: F401
        import skops.io  # noqa: F401

        from pipelines.models.catalog import get_model

        sklearn_estimator(model, get_model(model).resolve_params({}), 0, 1)

    def describe(self) -> dict[str, Any]:
        """Return the engine name, thread count and, once loaded, the memory estimate and layout."""
        return {"engine": self.name, "threads": self.n_jobs, **({"memory": self.estimate} if self.estimate else {})}

    def on_shutdown(self) -> None:
        """Delete the spill files of a streamed fit."""
        if isinstance(self._data, StreamedData):
            self._data.close()

    def load(self, plan: DataPlan) -> LocalData | StreamedData:
        """Return every row of the plan's source (and fixed test source) in one table, or a streamed handle.

        Streamed when ``engine.options.streaming`` says so (auto: the table would take more than
        half of ``resources.memory``) and the model can stream; a model that needs every row
        refuses up front when the table would not fit.
        """
        needed = in_memory_bytes(plan, self.model_name, self.kernel_width)
        self.estimate = {"in_memory_bytes": needed, "budget_bytes": self.memory}
        if should_stream(self.options["streaming"], self.model_name, needed, self.memory):
            self.estimate["layout"] = "streamed"
            self._data = StreamedData.open(plan, self.options["spill_dir"])
            return self._data
        check_in_memory(self.model_name, needed, self.memory)
        self.estimate["layout"] = "in_memory"
        table = read_units(plan, source_units(plan.source))
        if plan.test_source is not None:
            test = read_units(plan, source_units(plan.test_source), plan.test_source, is_test_source=True)
            table = pa.concat_tables([table, test])
        return LocalData(table)

    def profile(self, data: LocalData | StreamedData, plan: DataPlan) -> DataProfile:
        """Return the profile of the whole table."""
        if isinstance(data, StreamedData):
            return data.profile()
        if data.table.num_rows == 0:
            raise DataError(f"data.source: {plan.source.text} has no rows")
        return profile_batch(data.table, plan)

    def sample_rows(self, data: LocalData | StreamedData, split: str, n: int, seed: int) -> pa.Table:
        """Return the ``n`` rows of ``split`` with the smallest landmark priority."""
        if isinstance(data, StreamedData):
            return data.sample_rows(split, n, seed)
        train = data.rows(split)
        priority = landmark_priority(np.asarray(train.column(KEY_COLUMN).to_numpy()), seed)
        return train.take(pa.array(np.argsort(priority, kind="stable")[:n]))

    def keys_found(self, data: LocalData | StreamedData, keys: np.ndarray, split: str) -> np.ndarray:
        """Return the keys of ``keys`` that rows of ``split`` have."""
        if isinstance(data, StreamedData):
            return data.keys_found(keys, split)
        return keys_in(data.table, keys, SPLIT_NAMES.index(split))

    def fit(self, data: LocalData | StreamedData, ctx: FitContext) -> EngineModel:
        """Return the estimator fitted on the train split with class weights as sample weights."""
        if isinstance(data, StreamedData):
            return fit_streamed(data, ctx, self.n_jobs, self.on_step)
        train = data.rows("train")
        return fit_estimator(ctx.features(train), ctx.labels(train), ctx, self.n_jobs, self.on_step)

    def predict(
        self, model: EngineModel, data: LocalData | StreamedData, ctx: FitContext, split: str
    ) -> Iterator[pa.RecordBatch]:
        """Yield prediction batches for the rows of ``split``."""
        if isinstance(data, StreamedData):
            for table in data.tables(split):
                for start in range(0, table.num_rows, PREDICT_BATCH_ROWS):
                    yield predict_batch(model, table.slice(start, PREDICT_BATCH_ROWS), ctx, KEY_COLUMN)
            return
        rows = data.rows(split)
        for start in range(0, rows.num_rows, PREDICT_BATCH_ROWS):
            yield predict_batch(model, rows.slice(start, PREDICT_BATCH_ROWS), ctx, KEY_COLUMN)
