"""The cost model: time and peak memory of a job on each engine, estimated before fitting.

Coefficients per engine and model family (``cost_model.json``, calibrated by ``scaleclf
bench`` on the development machine) give a start-up time plus seconds per million rows, and a
base plus bytes per row of memory; both scale with the columns (against the 28 of the
HIGGS-like task they were measured on) and time with the cores (against 2). The local engine's
memory stays flat when it would stream (``pipelines.engines.local.memory``). ``engine.name:
auto`` picks the engine whose estimate is fastest within ``resources.memory``; every run prints
its estimate and records it with the actual figures in ``metrics.json`` (``cost``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError, ScaleclfError
from pipelines.models.native import TREE_ENSEMBLES

COST_FILE = Path(__file__).with_name("cost_model.json")
AUTO = "auto"


@cache
def coefficients() -> dict[str, Any]:
    """Return the calibrated coefficients (``cost_model.json``)."""
    # Through importlib.resources: a Spark driver imports scaleclf from the --py-files zip, where
    # the file is no path on disk.
    from importlib.resources import files

    return json.loads(files("pipelines").joinpath(COST_FILE.name).read_text())


@dataclass(frozen=True)
class Estimate:
    """The estimated seconds and peak memory of one job on one engine."""

    engine: str
    seconds: float
    peak_mb: float
    layout: str  # "in_memory", "streamed" (local, Dask) or "distributed"
    calibrated: bool  # False when the model's family was not benched (decision_tree, mlp, kernel SVMs)

    def line(self) -> str:
        """Return the estimate in words."""
        return f"{self.engine} ~{self.seconds:.0f} s, ~{self.peak_mb / 1024:.1f} GiB peak ({self.layout})"


def family(model: str) -> tuple[str, bool]:
    """Return the coefficient family of ``model`` and whether it was calibrated for that model."""
    if model in TREE_ENSEMBLES:
        return "trees", True
    if model in ("logistic_regression", "linear_svm", "naive_bayes"):
        return "linear", True
    return "trees", False  # the costlier family stands in for the models never benched


def estimate(engine: str, model: str, rows: int, columns: int, memory: int, cores: int | None = None) -> Estimate:
    """Return the estimate of ``model`` on ``rows`` x ``columns`` on ``engine`` within ``memory`` bytes."""
    from pipelines.engines.local.memory import STREAM_SHARE, streams

    table = coefficients()
    kind, calibrated = family(model)
    c = table["engines"][engine][kind]
    width = max(columns, 1) / table["reference"]["columns"]
    speed = table["reference"]["cores"] / max(cores or os.cpu_count() or 1, 1)
    seconds = c["start_s"] + c["s_per_mrow"] * rows / 1e6 * width * speed
    peak = c["base_mb"] + c["bytes_per_row"] * rows * width / 2**20
    layout = "distributed" if engine != "local" else "in_memory"
    # Engines with a streamed layout switch to it past half the budget, as their auto does: the
    # local engine for the models it can stream, Dask for every model but exact CART (gathered
    # into one task either way).
    can_stream = streams(model) if engine == "local" else model != "decision_tree"
    if "streamed_s_per_mrow" in c and can_stream and peak * 2**20 > STREAM_SHARE * memory:
        # Streamed, the table is gone; what remains per row is the model's per-row state and the
        # valid/test predictions the evaluation collects (local), or the float32 feature blocks
        # the workers keep (Dask).
        seconds = c["start_s"] + c["streamed_s_per_mrow"] * rows / 1e6 * width * speed
        per_row = c["streamed_bytes_per_row"] * (width if engine != "local" else 1.0)
        peak, layout = c["streamed_mb"] + per_row * rows / 2**20, "streamed"
    return Estimate(engine, round(seconds, 2), round(peak, 1), layout, calibrated)


def candidates(spec: Any) -> list[str]:
    """Return the engines that accept the spec's model and engine options (local first)."""
    from pipelines.engines import ENGINE_NAMES, check_engine_options
    from pipelines.models.catalog import check_model_spec

    out = []
    for name in ENGINE_NAMES:
        try:
            check_model_spec(spec.model, name, spec.tuning)
            check_engine_options(name, spec.engine.options)
        except ScaleclfError:
            continue
        out.append(name)
    return out


def choose(spec: Any, rows: int, columns: int) -> tuple[str, list[Estimate]]:
    """Return the engine ``auto`` picks (the fastest estimated to fit ``resources.memory``) and every estimate."""
    memory = spec.resources.memory_bytes
    estimates = [estimate(e, spec.model.name, rows, columns, memory) for e in candidates(spec)]
    fitting = [e for e in estimates if e.peak_mb * 2**20 <= memory]
    if not fitting:
        shown = "; ".join(e.line() for e in estimates)
        raise ConfigError(
            f"engine.name: auto: no engine fits {spec.model.name} on {rows} rows in resources.memory"
            f" {memory / 2**30:.1f} GiB ({shown})"
        )
    return min(fitting, key=lambda e: e.seconds).engine, estimates


def plan_rows(spec: Any) -> tuple[int, int]:
    """Return (rows, feature columns) of the spec's data, from Parquet metadata or CSV size (rows ~ bytes / 100)."""
    from pipelines.data.schema import make_plan
    from pipelines.engines.local.memory import source_rows

    plan = make_plan(spec.data, spec.seed)
    rows, text = source_rows(plan)
    return rows + text // 100, len(plan.numeric) + len(plan.categorical)


def record(chosen: Estimate, estimates: list[Estimate], by: str, seconds: float) -> dict[str, Any]:
    """Return metrics.json's ``cost``: the estimates, the engine and who chose it, and the actual figures."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "engine": chosen.engine,
        "chosen_by": by,
        "estimate": asdict(chosen),
        "estimates": [asdict(e) for e in estimates],
        "actual": {
            "seconds": round(seconds, 2),
            "peak_mb": round(peak, 1),
            "largest_child_peak_mb": round(children, 1),
        },
        "seconds_error": round(chosen.seconds / seconds - 1.0, 3) if seconds else None,
    }
