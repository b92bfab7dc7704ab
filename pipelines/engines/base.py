"""The engine protocol: what every engine implements, declares and returns.

An engine reads the plan's data with the shared reader (row key and split attached), profiles
it with the shared mergeable profile, fits a catalog model through the model layer's translation
(``pipelines.models.native``) and streams predictions back as Arrow batches. It never computes a
metric: ``pipelines.evaluation`` does, the same for all. It declares the models it runs (and the
library each runs on), the ones it refuses and why, and its ``engine.options``; the base class
checks those options once, for every engine, at spec validation.

Prediction batches have ``row_key`` (uint64), ``y`` (int32 class index, -1 if unknown) and
either probabilities ``p_0..p_{k-1}`` or, for models whose probabilities come from the
shared Platt scaling (``ModelInfo.probabilities == "calibrated"``), decision scores
``s_0..s_{k-1}`` (binary: a single ``s_0`` for the positive class).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from pipelines.data.schema import DataPlan, DataProfile, Task
from pipelines.errors import ConfigError
from pipelines.models.catalog import ModelInfo, Param
from pipelines.models.fitted import EngineModel, load_fitted
from pipelines.models.kernels import FeatureMap
from pipelines.models.native import Problem
from pipelines.models.preprocess import Preprocessor

if TYPE_CHECKING:
    from pipelines.spec import EngineSpec, ModelSpec

__all__ = ["Engine", "EngineModel", "FitContext", "prediction_batch"]

# Called by fits that iterate (boosting round, epoch, L-BFGS iteration) with the step reached and
# optional values of that step (e.g. train loss); a no-op unless progress is shown.
StepCallback = Callable[..., None]


def _no_progress(*_: Any, **__: Any) -> None:
    return None


@dataclass(frozen=True)
class FitContext:
    """Everything an engine needs to fit (or reload) one model, engine-independent."""

    task: Task
    preprocessor: Preprocessor
    model: ModelInfo
    params: dict[str, Any]
    class_weights: np.ndarray | None  # weight per class index; None = unweighted
    feature_map: FeatureMap | None
    seed: int

    @property
    def output(self) -> str:
        """Return "proba" when the model gives probabilities, "scores" for decision values."""
        return "scores" if self.model.probabilities == "calibrated" else "proba"

    @property
    def n_inputs(self) -> int:
        """Return the width of the model's input: kernel components, or the preprocessed features."""
        return self.feature_map.n_components if self.feature_map is not None else self.preprocessor.n_features

    @property
    def problem(self) -> Problem:
        """Return the data facts the model layer's translations need."""
        counts = np.asarray(self.task.class_counts, dtype=np.float64)
        weights = self.class_weights if self.class_weights is not None else np.ones(len(counts))
        return Problem(self.n_inputs, self.task.n_classes, tuple(counts.tolist()), float(counts @ weights), self.seed)

    def features(self, batch: pa.Table | pa.RecordBatch, dtype: Any = np.float64) -> np.ndarray:
        """Return the model's input matrix for a batch: preprocessing, then the kernel map if any."""
        x = self.preprocessor.transform(batch, dtype=dtype)
        return self.feature_map.transform(x, dtype=dtype) if self.feature_map is not None else x

    def model_input(self, x: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
        """Return the model's input from stored preprocessed features (float32): cast, then the kernel map if any.

        The bounded-memory layouts store preprocessed features as float32 and apply the kernel map
        per batch, so its output is never materialised for every row.
        """
        x = x.astype(dtype, copy=False)
        return self.feature_map.transform(x, dtype=dtype) if self.feature_map is not None else x

    def labels(self, batch: pa.Table | pa.RecordBatch) -> np.ndarray:
        """Return the class index of every row (-1 when the batch has no label column)."""
        if self.task.label in batch.schema.names:
            return self.task.encode(batch.column(self.task.label))
        return np.full(batch.num_rows, -1, dtype=np.int32)


class Engine(ABC):
    """One execution engine. Heavy engine libraries are imported only inside its package."""

    name: ClassVar[str]
    MODELS: ClassVar[dict[str, str]]  # catalog model -> native implementation, in words
    LIBRARY: ClassVar[dict[str, str]]  # catalog model -> the library of its native form (models.native)
    REFUSED: ClassVar[dict[str, str]] = {}  # catalog model -> why this engine refuses it
    OPTIONS: ClassVar[dict[str, Param]] = {}  # engine.options this engine takes
    OPTION_PREFIXES: ClassVar[dict[str, str]] = {}  # option-name prefixes passed through, e.g. "spark."

    def __init__(self, spec: EngineSpec, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed
        self.options = self.resolve_options(spec.options)
        # Fits that iterate call this once per boosting round / epoch / L-BFGS iteration (progress).
        self.on_step: StepCallback = _no_progress

    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Return the engine's options with defaults filled in, or raise a ConfigError naming the key."""
        out = {key: p.default for key, p in cls.OPTIONS.items()}
        for key, value in options.items():
            if key in cls.OPTIONS:
                out[key] = cls.OPTIONS[key].check(f"engine.options.{key}", value)
            elif any(key.startswith(prefix) for prefix in cls.OPTION_PREFIXES):
                out[key] = value
            else:
                allowed = [f"{p}* ({doc})" for p, doc in cls.OPTION_PREFIXES.items()] + list(cls.OPTIONS)
                raise ConfigError(
                    f"config error: engine.options.{key}: unknown option for {cls.name}"
                    f" (allowed: {', '.join(allowed) or 'none'})"
                )
        return out

    @classmethod
    def refuses(cls, model: ModelSpec) -> str | None:
        """Return why this engine cannot run the model with these settings (None when it can).

        Checked at spec validation, so an unsupported combination never fails at fit time.
        """
        return None

    def plan(self, model: str, params: dict[str, Any], memory: int) -> None:  # noqa: B027 - optional hook
        """Learn the job's model, its resolved params and memory budget (``resources.memory``) before ``load``."""

    def on_start(self) -> None:  # noqa: B027 - optional hook
        """Start or connect to the engine's runtime (session, cluster client)."""

    def on_shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release what ``on_start`` acquired."""

    def on_interrupt(self) -> None:  # noqa: B027 - optional hook
        """Stop what runs on the engine's side after SIGINT/SIGTERM ended a call midway (before ``on_shutdown``)."""

    def preload(self, model: str) -> None:  # noqa: B027 - optional hook
        """Import the libraries fitting ``model`` needs (bench calls this before its timer starts,
        as the raw baselines import theirs at module level)."""

    def tune(
        self,
        data: Any,
        ctx: FitContext,
        tuning: Any,
        score: Callable[[EngineModel, FitContext], dict[str, Any]],
        on_trial: Callable[[Any], None] | None = None,
    ) -> tuple[EngineModel, FitContext, list[Any]] | None:
        """Return (best model, its context, trials) when the engine schedules the trials itself.

        The default, None, makes ``pipelines.tuning.run_tuning`` fit the trials one after
        another with ``fit``; an engine with its own scheduler (Ray Tune) overrides this and
        must try the same parameter sets (``pipelines.tuning.make_trials``) and score each
        with ``score``, so every engine is judged alike.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """Return facts about the runtime worth recording (address, workers, versions)."""
        return {"engine": self.name}

    def __enter__(self) -> Engine:
        from pipelines.interrupts import restore

        self.on_start()
        restore()  # a runtime may have installed its own SIGINT/SIGTERM handlers (Ray's driver does)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        from pipelines.interrupts import Interrupted

        if kind is not None and issubclass(kind, (Interrupted, KeyboardInterrupt)):
            with contextlib.suppress(Exception):  # best effort: the interrupt is what the user sees
                self.on_interrupt()
        self.on_shutdown()

    @abstractmethod
    def load(self, plan: DataPlan) -> Any:
        """Return the engine's handle on the plan's rows with row key and split attached."""

    @abstractmethod
    def profile(self, data: Any, plan: DataPlan) -> DataProfile:
        """Return the merged DataProfile of all rows (``pipelines.data.schema.profile_batch``)."""

    @abstractmethod
    def sample_rows(self, data: Any, split: str, n: int, seed: int) -> pa.Table:
        """Return the ``n`` rows of ``split`` with the smallest ``landmark_priority`` of their row key.

        The same rows on every engine, found without moving the split to the driver: Nystroem's
        landmarks (train) and the rows the report explains the model on (valid).
        """

    @abstractmethod
    def keys_found(self, data: Any, keys: np.ndarray, split: str) -> np.ndarray:
        """Return the keys of ``keys`` (sorted uint64) that some row of ``split`` has as its row key."""

    @abstractmethod
    def fit(self, data: Any, ctx: FitContext) -> EngineModel:
        """Return the model fitted on the train split (and, where it uses one, valid)."""

    @abstractmethod
    def predict(self, model: EngineModel, data: Any, ctx: FitContext, split: str) -> Iterator[pa.RecordBatch]:
        """Yield prediction batches (see the module docstring) for the rows of ``split``."""

    def load_model(self, directory: Path, ctx: FitContext, kind: str) -> EngineModel:
        """Return the model ``EngineModel.save`` wrote into ``directory`` (``kind``: its ``EngineModel.kind``)."""
        return load_fitted(directory, kind, ctx.task.n_classes, ctx.output)


def predict_batch(
    model: EngineModel, batch: pa.Table | pa.RecordBatch, ctx: FitContext, key_column: str
) -> pa.RecordBatch:
    """Return the prediction batch of one batch of rows: the model layer's ``predict`` on its features."""
    x = ctx.features(batch)
    keys = np.asarray(batch.column(key_column).to_numpy())
    return prediction_batch(keys, ctx.labels(batch), model.predict(x), ctx.output)


def keys_in(batch: pa.Table | pa.RecordBatch, keys: np.ndarray, code: int) -> np.ndarray:
    """Return the keys of the sorted array ``keys`` that rows of split ``code`` in ``batch`` have."""
    from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN

    split = np.asarray(batch.column(SPLIT_COLUMN).to_numpy(zero_copy_only=False))
    mine = np.asarray(batch.column(KEY_COLUMN).to_numpy(zero_copy_only=False)).view(np.uint64)[split == code]
    if not len(keys) or not len(mine):
        return np.empty(0, np.uint64)
    at = np.minimum(np.searchsorted(keys, mine), len(keys) - 1)
    return np.unique(mine[keys[at] == mine])


def prediction_batch(keys: np.ndarray, y: np.ndarray, values: np.ndarray, output: str) -> pa.RecordBatch:
    """Return a prediction batch: ``row_key``, ``y`` and ``p_*`` or ``s_*`` columns."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    prefix = "s" if output == "scores" else "p"
    arrays = [pa.array(keys, type=pa.uint64()), pa.array(y, type=pa.int32())]
    names = ["row_key", "y"]
    for j in range(values.shape[1]):
        arrays.append(pa.array(values[:, j]))
        names.append(f"{prefix}_{j}")
    return pa.RecordBatch.from_arrays(arrays, names=names)
