"""Engine registry: engines are looked up by name and imported only when used."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.engines.base import Engine
    from pipelines.spec import EngineSpec

# The one list of engines. Each engine's whole story lives in its package; pyspark / dask / ray
# are imported inside it, and only when the engine is used.
ENGINE_MODULES = {
    "local": ("pipelines.engines.local.engine", "LocalEngine"),
    "spark": ("pipelines.engines.spark.engine", "SparkEngine"),
    "dask": ("pipelines.engines.dask.engine", "DaskEngine"),
    "ray": ("pipelines.engines.ray.engine", "RayEngine"),
}


def available_engines() -> list[str]:
    """Return the names of engines whose module is present in this installation."""
    return [name for name in ENGINE_MODULES if importlib.util.find_spec(ENGINE_MODULES[name][0]) is not None]


def engine_class(name: str) -> type[Engine]:
    """Return the Engine class registered as ``name``, or raise a ConfigError saying what exists."""
    if name not in ENGINE_MODULES:
        raise ConfigError(f"config error: engine.name: {name!r} is not allowed (allowed: {', '.join(ENGINE_MODULES)})")
    module_name, class_name = ENGINE_MODULES[name]
    if importlib.util.find_spec(module_name) is None:
        raise ConfigError(
            f"config error: engine.name: the {name} engine is not available in this build"
            f" (available: {', '.join(available_engines())})"
        )
    return getattr(importlib.import_module(module_name), class_name)


ENGINE_NAMES = tuple(ENGINE_MODULES)


def engine_models(name: str) -> tuple[dict[str, str], dict[str, str]]:
    """Return (supported model -> implementation, refused model -> reason) for an engine."""
    cls = engine_class(name)
    return dict(cls.MODELS), dict(cls.REFUSED)


def create_engine(spec: EngineSpec, seed: int) -> Engine:
    """Return a (not yet started) engine for the spec's ``engine`` section."""
    return engine_class(spec.name)(spec, seed)


def check_engine_options(name: str, options: dict[str, object]) -> None:
    """Raise a ConfigError naming the first ``engine.options`` key the engine does not take."""
    engine_class(name).resolve_options(dict(options))
