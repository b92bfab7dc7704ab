"""The model catalog: each model is described once (params, capabilities) and engines map it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.spec import ModelSpec, TuningSpec


@dataclass(frozen=True)
class Param:
    """One model parameter: its default, type and allowed range, in the user's words."""

    default: Any
    kind: str  # "float", "int", "bool", "str", "int_list", "size" (int or text such as "4GiB"), "mapping"
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def check(self, key: str, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise a ConfigError naming ``key``."""
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"config error: {key}: must not be null")
        if self.choices is not None:
            if value not in self.choices:
                allowed = ", ".join(map(str, self.choices))
                raise ConfigError(f"config error: {key}: {value!r} is not allowed (allowed: {allowed})")
            return value
        coerced = _coerce(self.kind, value)
        if coerced is None:
            raise ConfigError(f"config error: {key}: expected {self.kind}, got {value!r}")
        for number in coerced if isinstance(coerced, list) else [coerced]:
            if isinstance(number, bool) or not isinstance(number, int | float):
                continue
            if self.low is not None and number < self.low:
                raise ConfigError(f"config error: {key}: must be >= {self.low:g}, got {value!r}")
            if self.high is not None and number > self.high:
                raise ConfigError(f"config error: {key}: must be <= {self.high:g}, got {value!r}")
        return coerced


def _coerce(kind: str, value: Any) -> Any:
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind == "str":
        return value if isinstance(value, str) else None
    if kind == "int":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return None
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) else None
    if kind == "size":
        return value if isinstance(value, str) and value.strip() else _coerce("int", value)
    if kind == "mapping":
        return value if isinstance(value, dict) else None
    if kind == "int_list":
        items = value if isinstance(value, list) else [value]
        out = [_coerce("int", v) for v in items]
        return out if out and all(v is not None and v >= 1 for v in out) else None
    raise AssertionError(f"unknown param kind {kind}")


@dataclass(frozen=True)
class ModelInfo:
    """A catalog model: what it is, what it can do and the parameters every engine maps."""

    name: str
    summary: str
    params: dict[str, Param]
    multiclass: bool = True
    probabilities: str = "native"  # "native" or "calibrated" (decision values + Platt on valid)
    tree_based: bool = False
    kernel: str | None = None  # "rff" or "nystroem": the shared feature map in kernels.py
    binary: bool = True
    sample_weights: bool = True

    def resolve_params(self, params: dict[str, Any], prefix: str = "model.params") -> dict[str, Any]:
        """Return every parameter with defaults filled in, each value checked and coerced."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            allowed = ", ".join(self.params)
            raise ConfigError(
                f"config error: {prefix}.{unknown[0]}: unknown parameter for {self.name} (allowed: {allowed})"
            )
        out = {k: p.default for k, p in self.params.items()}
        for key, value in params.items():
            out[key] = self.params[key].check(f"{prefix}.{key}", value)
        return out


_C = Param(1.0, "float", "inverse regularisation strength (as scikit-learn's C)", low=1e-12)
_MAX_ITER = Param(1000, "int", "maximum optimiser iterations", low=1)
_TOL = Param(1e-4, "float", "optimiser tolerance", low=0)
_GAMMA = Param(None, "float", "RBF kernel width; null = 1 / n_features", low=1e-12, nullable=True)

CATALOG: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo(
            "logistic_regression",
            "L2-regularised logistic regression",
            {"C": _C, "max_iter": _MAX_ITER, "tol": _TOL, "fit_intercept": Param(True, "bool", "fit an intercept")},
        ),
        ModelInfo(
            "linear_svm",
            "linear SVM (hinge loss); probabilities by Platt scaling on the validation split",
            {"C": _C, "max_iter": _MAX_ITER, "tol": _TOL},
            probabilities="calibrated",
        ),
        ModelInfo(
            "naive_bayes",
            "Gaussian naive Bayes",
            {"var_smoothing": Param(1e-9, "float", "variance added for stability", low=0)},
        ),
        ModelInfo(
            "decision_tree",
            "CART decision tree (gini)",
            {
                "max_depth": Param(10, "int", "maximum depth", low=1, high=30),
                "min_samples_leaf": Param(1, "int", "minimum rows in a leaf", low=1),
            },
            tree_based=True,
        ),
        ModelInfo(
            "random_forest",
            "random forest of CART trees",
            {
                "n_estimators": Param(100, "int", "number of trees", low=1),
                "max_depth": Param(12, "int", "maximum depth", low=1, high=30),
                "min_samples_leaf": Param(1, "int", "minimum rows in a leaf", low=1),
                "max_features": Param("sqrt", "str", "features tried per split", choices=("sqrt", "log2", "all")),
            },
            tree_based=True,
        ),
        ModelInfo(
            "gbt",
            "gradient-boosted trees (histogram-based where the engine has it)",
            {
                "n_estimators": Param(100, "int", "boosting rounds", low=1),
                "learning_rate": Param(0.1, "float", "shrinkage", low=1e-6, high=1),
                "max_depth": Param(5, "int", "maximum depth", low=1, high=30),
                "min_samples_leaf": Param(20, "int", "minimum rows in a leaf", low=1),
            },
            tree_based=True,
        ),
        ModelInfo(
            "xgboost",
            "XGBoost (tree_method=hist)",
            {
                "n_estimators": Param(200, "int", "boosting rounds", low=1),
                "learning_rate": Param(0.1, "float", "shrinkage (eta)", low=1e-6, high=1),
                "max_depth": Param(6, "int", "maximum depth", low=1, high=30),
                "subsample": Param(1.0, "float", "row subsample per tree", low=1e-3, high=1),
                "colsample_bytree": Param(1.0, "float", "column subsample per tree", low=1e-3, high=1),
                "reg_lambda": Param(1.0, "float", "L2 on leaf weights", low=0),
                "min_child_weight": Param(1.0, "float", "minimum hessian in a child", low=0),
                "max_bin": Param(256, "int", "histogram bins", low=2),
            },
            tree_based=True,
        ),
        ModelInfo(
            "mlp",
            "multilayer perceptron (ReLU, Adam, softmax/logistic output)",
            {
                "hidden_layer_sizes": Param([64], "int_list", "units per hidden layer"),
                "alpha": Param(1e-4, "float", "L2 penalty", low=0),
                "learning_rate_init": Param(1e-3, "float", "Adam step size", low=1e-8),
                "max_iter": Param(50, "int", "epochs", low=1),
                "batch_size": Param(256, "int", "minibatch rows", low=1),
            },
        ),
        ModelInfo(
            "rff_svm",
            "random Fourier features (RBF kernel) + linear SVM",
            {
                "n_components": Param(500, "int", "random features", low=1),
                "gamma": _GAMMA,
                "C": _C,
                "max_iter": _MAX_ITER,
                "tol": _TOL,
            },
            probabilities="calibrated",
            kernel="rff",
        ),
        ModelInfo(
            "nystroem_svm",
            "Nystroem RBF kernel approximation + linear SVM",
            {
                "n_components": Param(300, "int", "landmark rows", low=1),
                "gamma": _GAMMA,
                "C": _C,
                "max_iter": _MAX_ITER,
                "tol": _TOL,
            },
            probabilities="calibrated",
            kernel="nystroem",
        ),
    ]
}


def get_model(name: str) -> ModelInfo:
    """Return the catalog entry for ``name`` or raise a ConfigError listing the catalog."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ConfigError(f"config error: model.name: unknown model {name!r} (allowed: {', '.join(CATALOG)})") from None


def check_model_spec(model: ModelSpec, engine: str, tuning: TuningSpec) -> None:
    """Raise a ConfigError when the model, its params, or the model/engine pair is not supported."""
    from pipelines.engines import engine_class
    from pipelines.models.native import UNUSED

    info = get_model(model.name)
    info.resolve_params(model.params)
    cls = engine_class(engine)
    supported, refused = dict(cls.MODELS), dict(cls.REFUSED)
    if model.name not in supported:
        reason = refused.get(model.name, "not implemented on this engine")
        raise ConfigError(
            f"config error: model.name: {model.name} is not supported on engine {engine} ({reason});"
            f" supported there: {', '.join(supported)}"
        )
    unused = UNUSED.get((cls.LIBRARY[model.name], model.name), {})
    for key in [*model.params, *(tuning.space if tuning.enabled else [])]:
        if key in unused:
            raise ConfigError(
                f"config error: model.params.{key}: not used by {model.name} on engine {engine} ({unused[key]});"
                " remove it or use another engine"
            )
    refusal = cls.refuses(model)
    if refusal:
        raise ConfigError(f"config error: {refusal}")
    for key in tuning.space if tuning.enabled else []:
        if key not in info.params:
            raise ConfigError(
                f"config error: tuning.space.{key}: unknown parameter for {model.name}"
                f" (allowed: {', '.join(info.params)})"
            )
    if tuning.enabled and not tuning.space:
        raise ConfigError("config error: tuning.space: tuning is enabled but the search space is empty")
