"""How much memory the local engine's in-memory path needs, and when it streams or refuses instead.

The in-memory path holds the whole table as Arrow, then the train split's copy and its float64
feature matrix (and a model's own copies: xgboost's quantised matrix, scikit-learn's checks).
Measured on the HIGGS-like task (28 float32 features, 129 Arrow bytes a row with key and split):
logistic regression grows by about 467 bytes a row (10M rows: 4.8 GB peak), xgboost by about
513 (10M rows: 5.3 GB), i.e. 3.6 and 4.0 times the Arrow width of a row (bench, 2026-12-03). The estimate is the Arrow
width of the plan's columns times that factor, plus the interpreter and libraries; a kernel
model's train features (``n_components`` wide, float64, twice) come on top.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pyarrow as pa

from pipelines.data.schema import DataPlan
from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.data.reader import Unit
    from pipelines.data.sources import Source

BASE_BYTES = 300 * 2**20  # the interpreter, NumPy, pyarrow, scikit-learn and xgboost loaded
KEY_AND_SPLIT_BYTES = 9
TEXT_BYTES = 24  # an Arrow string's offset plus a short category name
# decision_tree and mlp: as the trees, not measured.
MODEL_FACTOR = {"xgboost": 4.0, "gbt": 4.0, "random_forest": 4.0, "decision_tree": 4.0, "mlp": 4.0}
DEFAULT_FACTOR = 3.6
KERNEL_COPIES = 2
TRAIN_SHARE = 0.7  # the default split's train share: the kernel features exist for train rows only
STREAM_SHARE = 0.5  # streaming: auto streams when the in-memory estimate passes this share of the budget
# Models that need every row in memory at once: exact CART, and the MLP's shuffled Adam minibatches.
NEEDS_ALL_ROWS = {
    "decision_tree": "exact CART sorts every row of a feature at each split",
    "mlp": "scikit-learn's MLP shuffles every row into its Adam minibatches",
}


def row_bytes(schema: pa.Schema) -> int:
    """Return the Arrow bytes of one row of ``schema`` with the row key and split attached."""
    width = KEY_AND_SPLIT_BYTES
    for f in schema:
        width += f.type.bit_width // 8 if pa.types.is_primitive(f.type) and f.type.bit_width >= 8 else TEXT_BYTES
    return width


def source_rows(plan: DataPlan) -> tuple[int, int]:
    """Return (rows known from Parquet metadata, bytes of CSV files whose rows are unknown) of the plan's sources."""
    from pipelines.data.reader import source_units

    rows, text = 0, 0
    for source in (plan.source, plan.test_source):
        if source is None:
            continue
        for unit in source_units(source):
            if unit.row_groups is not None:
                rows += unit.rows
            elif source.is_local:
                text += os.path.getsize(unit.path)
    return rows, text


def estimated_rows(source: Source, units: list[Unit]) -> int:
    """Return the rows of a source's pieces: Parquet metadata's count, CSV files' bytes / 100."""
    rows = sum(u.rows for u in units if u.row_groups is not None)
    text = sum(os.path.getsize(u.path) for u in units if u.row_groups is None and source.is_local)
    return rows + text // 100


def in_memory_bytes(plan: DataPlan, model: str | None, kernel_width: int = 0) -> int:
    """Return the estimated peak bytes of the in-memory path for ``model`` on the plan's rows.

    ``kernel_width`` (a kernel model's ``n_components``) adds the train rows' kernel features:
    float64, twice (the map's output and the estimator's copy).
    """
    rows, text = source_rows(plan)
    width = row_bytes(plan.read_schema)
    factor = MODEL_FACTOR.get(model or "", DEFAULT_FACTOR)
    kernel = KERNEL_COPIES * TRAIN_SHARE * 8 * kernel_width * (rows + text / width)
    return int(BASE_BYTES + factor * (rows * width + text) + kernel)


def streams(model: str | None) -> bool:
    """Return True when the local engine can fit ``model`` from streamed batches."""
    from pipelines.engines.local.stream import STREAMED_MODELS

    return model in STREAMED_MODELS


def should_stream(setting: str, model: str | None, needed: int, budget: int | None) -> bool:
    """Return True when the fit streams: ``always``, or ``auto`` with the estimate above half the budget."""
    if setting == "never" or not streams(model):
        return False
    return setting == "always" or (budget is not None and needed > STREAM_SHARE * budget)


def gib(n: int) -> str:
    """Return a byte count in GiB, in words."""
    return f"{n / 2**30:.1f} GiB"


def check_in_memory(model: str | None, needed: int, budget: int | None) -> None:
    """Raise a ConfigError with the estimate when the in-memory path would not fit in ``budget``."""
    if budget is None or needed <= budget:
        return
    why = NEEDS_ALL_ROWS.get(model or "")
    if why is not None:
        raise ConfigError(
            f"resources.memory: {model} on the local engine needs every train row in memory ({why}):"
            f" estimated {gib(needed)} > resources.memory {gib(budget)}; use a distributed engine,"
            " fewer rows, or a model that streams (linear models, naive Bayes, tree ensembles)"
        )
    raise ConfigError(
        f"resources.memory: the local engine's in-memory table is estimated at {gib(needed)} >"
        f" resources.memory {gib(budget)}; set engine.options.streaming: auto or always"
    )
