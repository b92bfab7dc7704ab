"""The engine protocol: what every engine implements, and the batch format it returns.

An engine reads the plan's data (attaching row keys and the split), profiles it with the
shared mergeable profile, fits a catalog model and streams predictions back as Arrow
batches. It never computes a metric: ``pipelines.evaluation`` does, the same for all.

Prediction batches have ``row_key`` (uint64), ``y`` (int32 class index, -1 if unknown) and
either probabilities ``p_0..p_{k-1}`` or, for models whose probabilities come from the
shared Platt scaling (``ModelInfo.probabilities == "calibrated"``), decision scores
``s_0..s_{k-1}`` (binary: a single ``s_0`` for the positive class).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from pipelines.data.schema import DataPlan, DataProfile, Task
from pipelines.models.catalog import ModelInfo
from pipelines.models.kernels import FeatureMap
from pipelines.models.preprocess import Preprocessor
from pipelines.spec import EngineSpec


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


class EngineModel(ABC):
    """A fitted model in the engine's native form."""

    @property
    def format(self) -> str:
        """Return the native file format in words (e.g. "xgboost JSON", "Spark ML PipelineModel")."""
        return type(self).__name__

    @abstractmethod
    def save(self, directory: Path) -> list[Path]:
        """Write the model's native files into ``directory``; return what was written."""


class Engine(ABC):
    """One execution engine. Heavy engine libraries are imported only inside its module."""

    name: ClassVar[str]
    MODELS: ClassVar[dict[str, str]]  # catalog model -> native implementation, in words
    REFUSED: ClassVar[dict[str, str]] = {}  # catalog model -> why this engine refuses it

    def __init__(self, spec: EngineSpec, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed

    def on_start(self) -> None:  # noqa: B027 - optional hook
        """Start or connect to the engine's runtime (session, cluster client)."""

    def on_shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release what ``on_start`` acquired."""

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
        self.on_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.on_shutdown()

    @abstractmethod
    def load(self, plan: DataPlan) -> Any:
        """Return the engine's handle on the plan's rows with row key and split attached."""

    @abstractmethod
    def profile(self, data: Any, plan: DataPlan) -> DataProfile:
        """Return the merged DataProfile of all rows (``pipelines.data.schema.profile_batch``)."""

    @abstractmethod
    def landmark_rows(self, data: Any, n: int, seed: int) -> pa.Table:
        """Return the ``n`` train rows with the smallest ``landmark_priority`` (Nystroem)."""

    @abstractmethod
    def fit(self, data: Any, ctx: FitContext) -> EngineModel:
        """Return the model fitted on the train split (and, where it uses one, valid)."""

    @abstractmethod
    def predict(self, model: EngineModel, data: Any, ctx: FitContext, split: str) -> Iterator[pa.RecordBatch]:
        """Yield prediction batches (see the module docstring) for the rows of ``split``."""

    @abstractmethod
    def load_model(self, directory: Path, ctx: FitContext) -> EngineModel:
        """Return the model saved in ``directory`` by ``EngineModel.save``."""


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
