"""The local engine: the reference implementation of every catalog model (scikit-learn, xgboost).

Data is read with the shared reader into one in-process table; the shared preprocessing and
kernel feature maps turn it into a float64 matrix for the model layer's scikit-learn or xgboost
estimator (``pipelines.models.native.sklearn_estimator``).
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
from pipelines.errors import DataError
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
        """Return the engine name and thread count."""
        return {"engine": self.name, "threads": self.n_jobs}

    def load(self, plan: DataPlan) -> LocalData:
        """Return every row of the plan's source (and fixed test source) in one table."""
        table = read_units(plan, source_units(plan.source))
        if plan.test_source is not None:
            test = read_units(plan, source_units(plan.test_source), plan.test_source, is_test_source=True)
            table = pa.concat_tables([table, test])
        return LocalData(table)

    def profile(self, data: LocalData, plan: DataPlan) -> DataProfile:
        """Return the profile of the whole table."""
        if data.table.num_rows == 0:
            raise DataError(f"data.source: {plan.source.text} has no rows")
        return profile_batch(data.table, plan)

    def sample_rows(self, data: LocalData, split: str, n: int, seed: int) -> pa.Table:
        """Return the ``n`` rows of ``split`` with the smallest landmark priority."""
        train = data.rows(split)
        priority = landmark_priority(np.asarray(train.column(KEY_COLUMN).to_numpy()), seed)
        return train.take(pa.array(np.argsort(priority, kind="stable")[:n]))

    def keys_found(self, data: LocalData, keys: np.ndarray, split: str) -> np.ndarray:
        """Return the keys of ``keys`` that rows of ``split`` have."""
        return keys_in(data.table, keys, SPLIT_NAMES.index(split))

    def fit(self, data: LocalData, ctx: FitContext) -> EngineModel:
        """Return the estimator fitted on the train split with class weights as sample weights."""
        train = data.rows("train")
        return fit_estimator(ctx.features(train), ctx.labels(train), ctx, self.n_jobs, self.on_step)

    def predict(self, model: EngineModel, data: LocalData, ctx: FitContext, split: str) -> Iterator[pa.RecordBatch]:
        """Yield prediction batches for the rows of ``split``."""
        rows = data.rows(split)
        for start in range(0, rows.num_rows, PREDICT_BATCH_ROWS):
            yield predict_batch(model, rows.slice(start, PREDICT_BATCH_ROWS), ctx, KEY_COLUMN)
