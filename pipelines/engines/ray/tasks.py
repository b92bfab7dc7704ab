"""What runs in Ray tasks next to the blocks: reading and profiling a run of pieces, landmarks, moments, predictions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.reader import Unit, read_units
from pipelines.data.schema import DataPlan, DataProfile, profile_batch
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, TRAIN
from pipelines.engines.base import EngineModel, FitContext, predict_batch


def keep_split(batch: pa.Table, code: int) -> pa.Table:
    """Return the rows of ``batch`` in split ``code``."""
    return batch.filter(pc.equal(batch.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))


def load_block(plan: DataPlan, units: list[Unit], is_test_source: bool) -> tuple[DataProfile, pa.Table]:
    """Read, key and split a run of source pieces with the shared reader; return its profile and the table."""
    source = plan.test_source if is_test_source else plan.source
    assert source is not None
    table = read_units(plan, units, source, is_test_source=is_test_source)
    return (profile_batch(table, plan) if table.num_rows else DataProfile()), table


def landmarks(batch: pa.Table, code: int, n: int, seed: int) -> pa.Table:
    """Return a block's ``n`` rows of split ``code`` with the smallest landmark priority, with that priority."""
    from pipelines.models.kernels import landmark_priority

    train = keep_split(batch, code)
    priority = landmark_priority(np.asarray(train.column(KEY_COLUMN).to_numpy()), seed)
    order = np.argsort(priority, kind="stable")[:n]
    return train.take(pa.array(order)).append_column("__priority", pa.array(priority[order], pa.uint64()))


def block_moments(batch: pa.Table, ctx: FitContext) -> list[np.ndarray]:
    """Return the naive Bayes moments of a block's train rows."""
    from pipelines.models.naive_bayes import class_moments

    train = keep_split(batch, TRAIN)
    x, y = ctx.features(train), ctx.labels(train)
    keep = y >= 0
    x, y = x[keep], y[keep]
    return class_moments(x, y, ctx.class_weights[y] if ctx.class_weights is not None else None, ctx.task.n_classes)


def fit_cart_task(ctx: FitContext, *blocks: pa.Table) -> EngineModel:
    """Return CART fitted on the train rows of ``blocks`` (in file order, as the local engine reads them)."""
    from pipelines.models.cart import fit_cart

    train = pa.concat_tables([keep_split(b, TRAIN) for b in blocks])
    return fit_cart(ctx.features(train, dtype=np.float32), ctx.labels(train), ctx.params, ctx.seed, ctx.class_weights)


def predict_split(block: pa.Table, model: EngineModel, ctx: FitContext, code: int) -> pa.Table:
    """Return the predictions of one block's rows of split ``code`` (one task, the block in place)."""
    return pa.Table.from_batches([predict_batch(model, keep_split(block, code), ctx, KEY_COLUMN)])


@functools.cache
def remote(fn: Callable[..., Any], returns: int = 1) -> Any:
    """Return ``fn`` as a Ray task holding one CPU (built once per process)."""
    import ray

    return ray.remote(num_cpus=1, num_returns=returns)(fn)
