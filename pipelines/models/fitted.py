"""Fitted models: one prediction signature for every engine, and the files they are saved as.

Every engine returns an ``EngineModel``. ``predict(x)`` takes the preprocessed (and
kernel-mapped) feature matrix and returns class probabilities (rows x classes) or, for models
whose probabilities come from the shared Platt scaling, decision scores (binary: one value per
row; multiclass: rows x classes). The model layer's own fitted models (scikit-learn estimators,
xgboost boosters, NumPy networks, naive Bayes) live here and beside their maths; they reload
from their files without any engine, which is what ``scaleclf predict`` uses. Nothing is
unpickled: scikit-learn estimators go through skops with an allow-list, the others are JSON
and ``.npy`` files read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipelines.errors import ArtifactError
from pipelines.models.links import binary_columns

SKOPS_FILE = "estimator.skops"
XGBOOST_FILE = "xgboost.json"
XGBOOST_CONFIG_FILE = "xgboost_config.json"  # the training configuration, which the model file does not keep
# Types inside the scikit-learn estimators the model layer builds that skops does not trust by
# default: parts of those estimators; nothing else may appear in a model file.
TRUSTED_SKOPS_TYPES = frozenset(
    {
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
)


class EngineModel(ABC):
    """A fitted model in its native form, predicting from the feature matrix."""

    kind: ClassVar[str] = "engine"  # names the loader in ``load_fitted``; written to the manifest
    curves: dict[str, Any] | None = None  # learning curves recorded while fitting (train/valid loss per step)

    @property
    def format(self) -> str:
        """Return the native file format in words (e.g. "xgboost JSON", "Spark ML PipelineModel")."""
        return type(self).__name__

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return probabilities (rows x classes) or decision scores for the feature matrix ``x``."""

    @abstractmethod
    def save(self, directory: Path) -> list[Path]:
        """Write the model's native files into ``directory``; return what was written."""

    def native_params(self) -> dict[str, Any]:
        """Return the settings the native model was fitted with, read back from the fitted object."""
        return {}

    def native_importance(self) -> tuple[np.ndarray, str] | None:
        """Return the model's own importance of each input feature and its kind, when it has one."""
        return None


@dataclass
class SklearnModel(EngineModel):
    """A fitted scikit-learn estimator; saved with skops and reloaded with an allow-list of types."""

    estimator: Any
    output: str = "proba"  # "proba" or "scores" (decision_function)
    kind: ClassVar[str] = "sklearn"

    @property
    def format(self) -> str:
        """Return "scikit-learn estimator (skops)"."""
        return "scikit-learn estimator (skops)"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return predict_proba, or decision_function for score models."""
        if self.output == "scores":
            width = len(self.estimator.classes_)
            if x.shape[0] == 0:
                return np.empty(0) if width == 2 else np.empty((0, width))
            return np.asarray(self.estimator.decision_function(x), dtype=np.float64)
        if x.shape[0] == 0:
            return np.empty((0, len(self.estimator.classes_)))
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)

    def save(self, directory: Path) -> list[Path]:
        """Write ``estimator.skops``."""
        import skops.io as sio

        directory.mkdir(parents=True, exist_ok=True)
        path = directory / SKOPS_FILE
        sio.dump(self.estimator, path)
        return [path]

    @classmethod
    def load(cls, directory: Path, output: str = "proba") -> SklearnModel:
        """Return the estimator ``save`` wrote; any type outside the allow-list is refused."""
        import skops.io as sio

        path = directory / SKOPS_FILE
        try:
            untrusted = set(sio.get_untrusted_types(file=path))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read the scikit-learn model {path}: {exc}") from exc
        unexpected = sorted(untrusted - TRUSTED_SKOPS_TYPES)
        if unexpected:
            raise ArtifactError(f"{path} contains types scaleclf does not load: {', '.join(unexpected)}")
        return cls(sio.load(path, trusted=sorted(untrusted)), output)

    def native_params(self) -> dict[str, Any]:
        """Return the estimator's ``get_params()``."""
        return dict(self.estimator.get_params())

    def native_importance(self) -> tuple[np.ndarray, str] | None:
        """Return mean |coefficient| (linear models) or impurity decrease (trees)."""
        if hasattr(self.estimator, "coef_"):
            return np.abs(np.atleast_2d(self.estimator.coef_)).mean(axis=0), "coefficient"
        if hasattr(self.estimator, "feature_importances_"):
            return np.asarray(self.estimator.feature_importances_, dtype=np.float64), "impurity"
        return None


@dataclass
class BoosterModel(EngineModel):
    """An xgboost Booster (xgboost, and gbt / random_forest on the engines that boost with xgboost)."""

    raw: bytes  # the booster in xgboost's JSON format (small, picklable between processes)
    n_classes: int
    config: str | None = None  # Booster.save_config(): the parameters it was trained with
    curves: dict[str, Any] | None = None
    _booster: Any = field(default=None, repr=False, compare=False)
    kind: ClassVar[str] = "xgboost"

    @classmethod
    def from_booster(cls, booster: Any, n_classes: int, curves: dict[str, Any] | None = None) -> BoosterModel:
        """Return the model holding ``booster``."""
        return cls(bytes(booster.save_raw("json")), n_classes, booster.save_config(), curves)

    @property
    def format(self) -> str:
        """Return "xgboost JSON"."""
        return "xgboost JSON"

    @property
    def booster(self) -> Any:
        """Return the xgboost Booster, built once per process (one thread: callers parallelise)."""
        if self._booster is None:
            import xgboost

            self._booster = xgboost.Booster(model_file=bytearray(self.raw))
            if self.config is not None:
                self._booster.load_config(self.config)
            self._booster.set_param({"nthread": 1})
        return self._booster

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return class probabilities (rows x classes)."""
        if x.shape[0] == 0:
            return np.empty((0, self.n_classes))
        p = np.asarray(self.booster.inplace_predict(x), dtype=np.float64)
        return binary_columns(p) if self.n_classes == 2 else p.reshape(len(x), self.n_classes)

    def save(self, directory: Path) -> list[Path]:
        """Write ``xgboost.json`` and, when known, ``xgboost_config.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / XGBOOST_FILE
        path.write_bytes(self.raw)
        if self.config is None:
            return [path]
        config = directory / XGBOOST_CONFIG_FILE
        config.write_text(self.config)
        return [path, config]

    @classmethod
    def load(cls, directory: Path, n_classes: int) -> BoosterModel:
        """Return the booster ``save`` wrote."""
        try:
            config = directory / XGBOOST_CONFIG_FILE
            text = config.read_text() if config.is_file() else None
            if text is not None:
                json.loads(text)  # xgboost would abort on a malformed configuration
            return cls((directory / XGBOOST_FILE).read_bytes(), n_classes, text)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read the xgboost model in {directory}: {exc}") from exc

    def native_params(self) -> dict[str, Any]:
        """Return the booster's training parameters (tree, learner and ensemble settings) and its rounds."""
        return booster_settings(self.booster)

    def native_importance(self) -> tuple[np.ndarray, str] | None:
        """Return each feature's total gain (xgboost's ``get_score``)."""
        gain = self.booster.get_score(importance_type="gain")
        width = self.booster.num_features()
        return np.array([gain.get(f"f{i}", 0.0) for i in range(width)]), "gain"


def booster_settings(booster: Any) -> dict[str, Any]:
    """Return an xgboost Booster's training parameters read from its saved configuration."""
    config = json.loads(booster.save_config())
    learner = config["learner"]
    gbtree = learner["gradient_booster"]
    out: dict[str, Any] = {}
    sections = ("tree_train_param", "gbtree_model_param", "gbtree_train_param")
    for section in (gbtree.get(name, {}) for name in sections):
        out.update(section)
    out.update(learner.get("learner_train_param", {}))
    out["num_class"] = learner.get("learner_model_param", {}).get("num_class")
    out["seed"] = learner.get("generic_param", {}).get("seed")
    out["rounds"] = booster.num_boosted_rounds()
    return {k: _number(v) for k, v in out.items()}


def _number(value: Any) -> Any:
    """Return xgboost's string-typed config values as numbers where they are numbers."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def load_fitted(directory: Path, kind: str, n_classes: int, output: str) -> EngineModel:
    """Return the model-layer model of ``kind`` saved in ``directory`` (no engine needed)."""
    if kind == SklearnModel.kind:
        return SklearnModel.load(directory, output)
    if kind == BoosterModel.kind:
        return BoosterModel.load(directory, n_classes)
    if kind == "network":
        from pipelines.models.network import NetworkModel

        return NetworkModel.load(directory)
    if kind == "naive_bayes":
        from pipelines.models.naive_bayes import NaiveBayesModel

        return NaiveBayesModel.load(directory)
    raise ArtifactError(f"{directory}: models of kind {kind!r} are not loaded without their engine")
