"""What runs on the Dask workers: reading a run of source pieces, profiling it, and its feature blocks.

A loaded block is an Arrow table of consecutive source pieces with row key and split attached
(``pipelines.data.reader``). For a fit or a prediction it becomes, on the worker holding it, a
feature block ``(features, class index, row key)`` of one split; the model layer's block-wise
maths (network losses, naive Bayes moments) run on those blocks where they live.

In the streamed layout no table is kept: a block is a ``SourceRun`` that a task reads again when
it needs the rows, and feature blocks hold float32 preprocessed features that each task casts
and kernel-maps (``FitContext.model_input``) when it uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.reader import Unit, read_units
from pipelines.data.schema import DataPlan, DataProfile, profile_batch
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, SPLIT_NAMES
from pipelines.engines.base import EngineModel, FitContext, keys_in
from pipelines.models.kernels import landmark_priority
from pipelines.models.naive_bayes import class_moments
from pipelines.models.network import loss_and_grad

FeatureBlock = tuple[np.ndarray, np.ndarray, np.ndarray]  # (features, class index, row key)


@dataclass(frozen=True)
class SourceRun:
    """A run of consecutive source pieces, read again by each task that needs its rows (streamed layout)."""

    plan: DataPlan
    units: list[Unit]
    is_test_source: bool


def read_block(plan: DataPlan, units: list[Unit], is_test_source: bool) -> pa.Table:
    """Return a run of source pieces read, keyed and split by the shared reader."""
    source = plan.test_source if is_test_source else plan.source
    assert source is not None
    return read_units(plan, units, source, is_test_source=is_test_source)


def rows_of(block: pa.Table | SourceRun) -> pa.Table:
    """Return a loaded block's table, or a source run's rows read now."""
    if isinstance(block, SourceRun):
        return read_block(block.plan, block.units, block.is_test_source)
    return block


def profile_block(block: pa.Table | SourceRun, plan: DataPlan) -> DataProfile:
    """Return the profile of one loaded block (or source run)."""
    table = rows_of(block)
    return profile_batch(table, plan) if table.num_rows else DataProfile()


def feature_block(table: pa.Table, code: int, ctx: FitContext, dtype: Any, stored: bool = False) -> FeatureBlock:
    """Return (features, class index or -1, row key) of one block's rows of split ``code``.

    ``stored`` (the streamed layout): the preprocessed features as float32, before any kernel
    map; the tasks that use them apply ``ctx.model_input``.
    """
    rows = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))
    x = ctx.preprocessor.transform(rows, dtype=np.float32) if stored else ctx.features(rows, dtype=dtype)
    return x, ctx.labels(rows), np.asarray(rows.column(KEY_COLUMN).to_numpy())


def split_blocks(run: SourceRun, ctx: FitContext) -> tuple[FeatureBlock, ...]:
    """Return a source run's feature block of every split (``SPLIT_NAMES`` order), read once (streamed layout)."""
    table = rows_of(run)
    return tuple(feature_block(table, code, ctx, np.float32, stored=True) for code in range(len(SPLIT_NAMES)))


def block_keys_in(block: pa.Table | SourceRun, keys: np.ndarray, code: int) -> np.ndarray:
    """Return the keys of ``keys`` that the block's rows of split ``code`` have."""
    return keys_in(rows_of(block), keys, code)


def landmark_candidates(block: pa.Table | SourceRun, code: int, n: int, seed: int) -> tuple[np.ndarray, pa.Table]:
    """Return the ``n`` rows of split ``code`` in a block with the smallest landmark priority, and their priorities."""
    table = rows_of(block)
    train = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))
    priority = landmark_priority(np.asarray(train.column(KEY_COLUMN).to_numpy()), seed)
    order = np.argsort(priority, kind="stable")[:n]
    return priority[order], train.take(pa.array(order))


def _weights(y: np.ndarray, class_weights: np.ndarray | None) -> np.ndarray:
    return class_weights[y] if class_weights is not None else np.ones(len(y))


def _inputs(x: np.ndarray, ctx: FitContext | None, dtype: Any = np.float64) -> np.ndarray:
    """Return a feature block's model input: as stored, or (streamed layout, ``ctx`` given) cast and kernel-mapped."""
    return x if ctx is None else ctx.model_input(x, dtype)


def network_totals(
    block: FeatureBlock,
    params: list[np.ndarray],
    loss: str,
    n_classes: int,
    class_weights: np.ndarray | None,
    ctx: FitContext | None = None,
) -> tuple[float, list[np.ndarray], float]:
    """Return one block's weighted loss sum, gradients and weight sum (summed over blocks by the driver)."""
    x, y, _ = block
    x = _inputs(x, ctx)
    w = _weights(y, class_weights)
    value, grads = loss_and_grad(params, x, y, w, loss, n_classes)
    return value, grads, float(w.sum())


def block_moments(
    block: FeatureBlock, n_classes: int, class_weights: np.ndarray | None, ctx: FitContext | None = None
) -> list[np.ndarray]:
    """Return one block's naive Bayes moments."""
    x, y, _ = block
    return class_moments(_inputs(x, ctx), y, _weights(y, class_weights), n_classes)


def block_outputs(
    block: FeatureBlock, model: EngineModel, ctx: FitContext | None = None, dtype: Any = None
) -> FeatureBlock:
    """Return (row keys, class indices, model outputs) of one feature block."""
    x, y, keys = block
    return keys, y, model.predict(_inputs(x, ctx, dtype or np.float64))


def fit_cart_on_blocks(ctx: FitContext, *blocks: FeatureBlock) -> EngineModel:
    """Return exact CART fitted on the train blocks, concatenated in block order (one task, one worker)."""
    from pipelines.models.cart import fit_cart

    x = np.concatenate([b[0] for b in blocks]) if blocks else np.empty((0, 0), np.float32)
    y = np.concatenate([b[1] for b in blocks]) if blocks else np.empty(0, np.int32)
    return fit_cart(x, y, ctx.params, ctx.seed, ctx.class_weights)


def item(block: tuple[Any, ...], i: int) -> Any:
    """Return one element of a block tuple (a task, so the element stays on the worker)."""
    return block[i]
