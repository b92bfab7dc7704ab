"""The local engine: the reference implementation of every catalog model (scikit-learn, xgboost).

Data is read with pyarrow into one in-process table; the shared preprocessing and kernel
feature maps turn it into a float64 matrix for scikit-learn or xgboost.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.schema import DataPlan, DataProfile, profile_batch
from pipelines.data.sources import read_table
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, SPLIT_NAMES
from pipelines.engines.base import Engine, EngineModel, FitContext, prediction_batch
from pipelines.errors import ArtifactError, DataError
from pipelines.models.kernels import landmark_priority

PREDICT_BATCH_ROWS = 65_536
# Types inside scikit-learn models that skops does not trust by default but we do: they are
# parts of the estimators this engine builds, nothing else may appear in a model file.
TRUSTED_SKOPS_TYPES = {
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
}


def build_estimator(name: str, params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    """Return the unfitted scikit-learn / xgboost estimator for a catalog model."""
    p = params
    if name == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(
            C=p["C"], max_iter=p["max_iter"], tol=p["tol"], fit_intercept=p["fit_intercept"], random_state=seed
        )
    if name in ("linear_svm", "rff_svm", "nystroem_svm"):
        from sklearn.svm import LinearSVC

        return LinearSVC(C=p["C"], max_iter=p["max_iter"], tol=p["tol"], random_state=seed)
    if name == "naive_bayes":
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB(var_smoothing=p["var_smoothing"])
    if name == "decision_tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(
            max_depth=p["max_depth"], min_samples_leaf=p["min_samples_leaf"], random_state=seed
        )
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            max_features=None if p["max_features"] == "all" else p["max_features"],
            n_jobs=n_jobs,
            random_state=seed,
        )
    if name == "gbt":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=p["n_estimators"],
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            max_leaf_nodes=None,
            early_stopping=False,
            random_state=seed,
        )
    if name == "xgboost":
        import xgboost

        return xgboost.XGBClassifier(
            n_estimators=p["n_estimators"],
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            subsample=p["subsample"],
            colsample_bytree=p["colsample_bytree"],
            reg_lambda=p["reg_lambda"],
            min_child_weight=p["min_child_weight"],
            max_bin=p["max_bin"],
            tree_method="hist",
            n_jobs=n_jobs,
            random_state=seed,
        )
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            hidden_layer_sizes=tuple(p["hidden_layer_sizes"]),
            alpha=p["alpha"],
            learning_rate_init=p["learning_rate_init"],
            max_iter=p["max_iter"],
            batch_size=p["batch_size"],
            random_state=seed,
        )
    raise AssertionError(f"no local estimator for {name}")


@dataclass
class LocalModel(EngineModel):
    """A fitted scikit-learn or xgboost estimator on the preprocessed features."""

    estimator: Any
    model_name: str

    @property
    def format(self) -> str:
        """Return "xgboost JSON" or "scikit-learn estimator (skops)"."""
        return "xgboost JSON" if self.model_name == "xgboost" else "scikit-learn estimator (skops)"

    def save(self, directory: Path) -> list[Path]:
        """Write ``xgboost.json`` (xgboost) or ``estimator.skops`` (scikit-learn)."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.model_name == "xgboost":
            path = directory / "xgboost.json"
            self.estimator.save_model(path)
        else:
            import skops.io as sio

            path = directory / "estimator.skops"
            sio.dump(self.estimator, path)
        return [path]

    def outputs(self, x: np.ndarray, output: str) -> np.ndarray:
        """Return class probabilities (rows x k) or decision scores for ``x``."""
        if output == "scores":
            return np.asarray(self.estimator.decision_function(x), dtype=np.float64)
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)


@dataclass
class LocalData:
    """All rows in one Arrow table with ``__row_key`` and ``__split`` columns."""

    table: pa.Table

    def rows(self, split: str) -> pa.Table:
        """Return the rows of one split."""
        code = SPLIT_NAMES.index(split)
        return self.table.filter(pc.equal(self.table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))


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

    @property
    def n_jobs(self) -> int:
        """Return the threads estimators may use: ``engine.workers`` or every core."""
        return self.spec.workers or os.cpu_count() or 1

    def preload(self, model: str) -> None:
        """Import scikit-learn's or xgboost's estimator module, skops and Parquet writing."""
        import pyarrow.parquet  # noqa: F401
        import skops.io  # noqa: F401

        from pipelines.models.catalog import get_model

        build_estimator(model, get_model(model).resolve_params({}), 0, 1)

    def describe(self) -> dict[str, Any]:
        """Return the engine name and thread count."""
        return {"engine": self.name, "threads": self.n_jobs}

    def load(self, plan: DataPlan) -> LocalData:
        """Return every row of the plan's source (and fixed test source) in one table."""
        columns = plan.columns
        table = plan.attach(read_table(plan.source, columns))
        if plan.test_source is not None:
            test = plan.attach(read_table(plan.test_source, columns, "data.test_source"), is_test_source=True)
            try:
                table = pa.concat_tables([table, test], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise DataError(f"data.test_source: its column types do not match data.source: {exc}") from exc
        return LocalData(table)

    def profile(self, data: LocalData, plan: DataPlan) -> DataProfile:
        """Return the profile of the whole table."""
        return profile_batch(data.table, plan)

    def landmark_rows(self, data: LocalData, n: int, seed: int) -> pa.Table:
        """Return the ``n`` train rows with the smallest landmark priority."""
        train = data.rows("train")
        priority = landmark_priority(np.asarray(train.column(KEY_COLUMN).to_numpy()), seed)
        return train.take(pa.array(np.argsort(priority, kind="stable")[:n]))

    def _matrix(self, table: pa.Table, ctx: FitContext) -> np.ndarray:
        x = ctx.preprocessor.transform(table)
        return ctx.feature_map.transform(x) if ctx.feature_map is not None else x

    def fit(self, data: LocalData, ctx: FitContext) -> LocalModel:
        """Return the estimator fitted on the train split with class weights as sample weights."""
        train = data.rows("train")
        x = self._matrix(train, ctx)
        y = ctx.task.encode(train.column(ctx.task.label))
        estimator = build_estimator(ctx.model.name, ctx.params, ctx.seed, self.n_jobs)
        weights = ctx.class_weights[y] if ctx.class_weights is not None else None
        estimator.fit(x, y, sample_weight=weights)
        return LocalModel(estimator, ctx.model.name)

    def predict(self, model: EngineModel, data: LocalData, ctx: FitContext, split: str) -> Iterator[pa.RecordBatch]:
        """Yield prediction batches for the rows of ``split``."""
        assert isinstance(model, LocalModel)
        rows = data.rows(split)
        for start in range(0, rows.num_rows, PREDICT_BATCH_ROWS):
            batch = rows.slice(start, PREDICT_BATCH_ROWS)
            values = model.outputs(self._matrix(batch, ctx), ctx.output)
            y = (
                ctx.task.encode(batch.column(ctx.task.label))
                if ctx.task.label in batch.schema.names
                else np.full(batch.num_rows, -1, dtype=np.int32)
            )
            keys = np.asarray(batch.column(KEY_COLUMN).to_numpy())
            yield prediction_batch(keys, y, values, ctx.output)

    def load_model(self, directory: Path, ctx: FitContext) -> LocalModel:
        """Return the estimator saved by ``LocalModel.save`` (skops with an allow-list of types)."""
        if ctx.model.name == "xgboost":
            import xgboost

            estimator = xgboost.XGBClassifier()
            estimator.load_model(directory / "xgboost.json")
            return LocalModel(estimator, ctx.model.name)
        import skops.io as sio

        path = directory / "estimator.skops"
        untrusted = set(sio.get_untrusted_types(file=path))
        unexpected = sorted(untrusted - TRUSTED_SKOPS_TYPES)
        if unexpected:
            raise ArtifactError(f"{path} contains types scaleclf does not load: {', '.join(unexpected)}")
        return LocalModel(sio.load(path, trusted=sorted(untrusted)), ctx.model.name)
