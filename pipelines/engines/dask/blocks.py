"""What runs on the Dask workers: reading a run of source pieces, profiling it, and its feature blocks.

A loaded block is an Arrow table of consecutive source pieces with row key and split attached
(``pipelines.data.reader``). For a fit or a prediction it becomes, on the worker holding it, a
feature block ``(features, class index, row key)`` of one split; the model layer's block-wise
maths (network losses, naive Bayes moments) run on those blocks where they live.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.reader import Unit, read_units
from pipelines.data.schema import DataPlan, DataProfile, profile_batch
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN
from pipelines.engines.base import EngineModel, FitContext
from pipelines.models.kernels import landmark_priority
from pipelines.models.naive_bayes import class_moments
from pipelines.models.network import loss_and_grad

FeatureBlock = tuple[np.ndarray, np.ndarray, np.ndarray]  # (features, class index, row key)


def read_block(plan: DataPlan, units: list[Unit], is_test_source: bool) -> pa.Table:
    """Return a run of source pieces read, keyed and split by the shared reader."""
    source = plan.test_source if is_test_source else plan.source
    assert source is not None
    return read_units(plan, units, source, is_test_source=is_test_source)


def profile_block(table: pa.Table, plan: DataPlan) -> DataProfile:
    """Return the profile of one loaded block."""
    return profile_batch(table, plan) if table.num_rows else DataProfile()


def feature_block(table: pa.Table, code: int, ctx: FitContext, dtype: Any) -> FeatureBlock:
    """Return (features, class index or -1, row key) of one block's rows of split ``code``."""
    rows = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))
    return ctx.features(rows, dtype=dtype), ctx.labels(rows), np.asarray(rows.column(KEY_COLUMN).to_numpy())


def landmark_candidates(table: pa.Table, code: int, n: int, seed: int) -> tuple[np.ndarray, pa.Table]:
    """Return the ``n`` rows of split ``code`` in a block with the smallest landmark priority, and their priorities."""
    train = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))
    priority = landmark_priority(np.asarray(train.column(KEY_COLUMN).to_numpy()), seed)
    order = np.argsort(priority, kind="stable")[:n]
    return priority[order], train.take(pa.array(order))


def _weights(y: np.ndarray, class_weights: np.ndarray | None) -> np.ndarray:
    return class_weights[y] if class_weights is not None else np.ones(len(y))


def network_totals(
    block: FeatureBlock, params: list[np.ndarray], loss: str, n_classes: int, class_weights: np.ndarray | None
) -> tuple[float, list[np.ndarray], float]:
    """Return one block's weighted loss sum, gradients and weight sum (summed over blocks by the driver)."""
    x, y, _ = block
    w = _weights(y, class_weights)
    value, grads = loss_and_grad(params, x, y, w, loss, n_classes)
    return value, grads, float(w.sum())


def block_moments(block: FeatureBlock, n_classes: int, class_weights: np.ndarray | None) -> list[np.ndarray]:
    """Return one block's naive Bayes moments."""
    x, y, _ = block
    return class_moments(x, y, _weights(y, class_weights), n_classes)


def block_outputs(block: FeatureBlock, model: EngineModel) -> FeatureBlock:
    """Return (row keys, class indices, model outputs) of one feature block."""
    x, y, keys = block
    return keys, y, model.predict(x)


def fit_cart_on_blocks(ctx: FitContext, *blocks: FeatureBlock) -> EngineModel:
    """Return exact CART fitted on the train blocks, concatenated in block order (one task, one worker)."""
    from pipelines.models.cart import fit_cart

    x = np.concatenate([b[0] for b in blocks]) if blocks else np.empty((0, 0), np.float32)
    y = np.concatenate([b[1] for b in blocks]) if blocks else np.empty(0, np.int32)
    return fit_cart(x, y, ctx.params, ctx.seed, ctx.class_weights)


def item(block: tuple[Any, ...], i: int) -> Any:
    """Return one element of a block tuple (a task, so the element stays on the worker)."""
    return block[i]
