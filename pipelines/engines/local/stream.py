"""The local engine in bounded memory: the source read unit by unit, the train features spilled to disk.

Nothing here holds the whole table. Each pass reads the source one unit at a time with the
shared reader (a Parquet row group, or a CSV file block by block); profiling merges per-unit profiles, the
Nystroem and report samples keep the best ``n`` candidates seen so far, and prediction streams.
A fit reads the train split once and writes its preprocessed features (float32, before any
kernel map) and class indices to a spill directory, one file pair per batch of about
``SPILL_BATCH_ROWS`` rows; every later pass of the fit (an L-BFGS iteration, an xgboost page)
reads those files back one at a time:

- linear models and kernel SVMs: full-batch L-BFGS (``pipelines.models.network.fit_lbfgs``)
  whose objective and gradient are sums over the spilled batches, the kernel map applied per
  batch and never materialised;
- naive Bayes: one pass of per-batch class moments;
- xgboost, gbt, random_forest: xgboost's ``ExtMemQuantileDMatrix`` fed by a ``DataIter`` over
  the spilled batches (xgboost quantises them once and keeps its own pages on disk).

Peak memory is a few batches plus what the model keeps, whatever the row count.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.data.reader import Unit, iter_units, source_units
from pipelines.data.schema import DataPlan, DataProfile, profile_batch
from pipelines.data.sources import Source
from pipelines.data.split import KEY_COLUMN, SPLIT_NAMES
from pipelines.engines.base import EngineModel, FitContext, keys_in
from pipelines.errors import DataError
from pipelines.models.fitted import BoosterModel
from pipelines.models.kernels import landmark_priority
from pipelines.models.naive_bayes import class_moments, fit_naive_bayes
from pipelines.models.native import LINEAR_MODELS, TREE_ENSEMBLES, numpy_settings, xgboost_params
from pipelines.models.network import NetworkModel, fit_lbfgs, loss_and_grad

STREAMED_MODELS = (*LINEAR_MODELS, "naive_bayes", *TREE_ENSEMBLES)
# Train rows per spilled batch (units are joined up to it): large enough that a pass is a few
# NumPy calls per batch and xgboost's pages are few, small enough to stay a few tens of MB.
SPILL_BATCH_ROWS = 262_144


@dataclass
class Spill:
    """The train split's preprocessed features and class indices on disk, one ``.npy`` pair per batch."""

    directory: Path
    batches: list[tuple[Path, Path]]
    rows: int
    made_with: tuple[Any, ...]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for xs, ys in self.batches:
            yield np.load(xs), np.load(ys)

    def remove(self) -> None:
        """Delete the spill directory."""
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class StreamedData:
    """The plan's source(s) cut into units, read again on each pass; nothing of it stays in memory."""

    plan: DataPlan
    pieces: list[tuple[Source, list[Unit], bool]]  # (source, its units, is the fixed test source)
    spill_root: str | None = None
    spill: Spill | None = field(default=None, repr=False)

    @classmethod
    def open(cls, plan: DataPlan, spill_root: str | None) -> StreamedData:
        """Return the streamed handle on the plan's source and fixed test source."""
        pieces = [(plan.source, source_units(plan.source), False)]
        if plan.test_source is not None:
            pieces.append((plan.test_source, source_units(plan.test_source), True))
        return cls(plan, pieces, spill_root)

    def tables(self, split: str | None = None) -> Iterator[pa.Table]:
        """Yield the rows of every unit in source order (only those of ``split`` when given)."""
        code = None if split is None else SPLIT_NAMES.index(split)
        for source, units, is_test in self.pieces:
            yield from iter_units(self.plan, units, source, is_test_source=is_test, split=code, stream_csv=True)

    def profile(self) -> DataProfile:
        """Return the merge of the per-unit profiles."""
        merged = DataProfile()
        for table in self.tables():
            if table.num_rows:
                merged = merged.merge(profile_batch(table, self.plan))
        if not sum(merged.rows.values()):
            raise DataError(f"data.source: {self.plan.source.text} has no rows")
        return merged

    def sample_rows(self, split: str, n: int, seed: int) -> pa.Table:
        """Return the ``n`` rows of ``split`` with the smallest landmark priority, keeping ``n`` candidates per pass."""
        best: pa.Table | None = None
        best_priority = np.empty(0)
        for table in self.tables(split):
            if best is not None:
                table = pa.concat_tables([best, table])
            priority = np.concatenate(
                [
                    best_priority,
                    landmark_priority(np.asarray(table.column(KEY_COLUMN).to_numpy()[len(best_priority) :]), seed),
                ]
            )
            order = np.argsort(priority, kind="stable")[:n]
            best, best_priority = table.take(pa.array(order)), priority[order]
        if best is None:
            return self.plan.attach(self.plan.read_schema.empty_table())
        return best

    def keys_found(self, keys: np.ndarray, split: str) -> np.ndarray:
        """Return the keys of ``keys`` that rows of ``split`` have, looked up unit by unit."""
        code = SPLIT_NAMES.index(split)
        found = [keys_in(t, keys, code) for t in self.tables()]
        return np.unique(np.concatenate([np.empty(0, np.uint64), *found]))

    def train_spill(self, ctx: FitContext) -> Spill:
        """Return the spilled train features for ``ctx``'s preprocessing, written on first use."""
        made_with = (ctx.preprocessor, ctx.task)
        if self.spill is not None and all(a is b for a, b in zip(self.spill.made_with, made_with, strict=True)):
            return self.spill
        self.close()
        directory = Path(tempfile.mkdtemp(prefix="scaleclf-spill-", dir=self.spill_root))
        batches: list[tuple[Path, Path]] = []
        pending: list[pa.Table] = []

        def write() -> None:
            table = pa.concat_tables(pending)
            xs, ys = directory / f"x-{len(batches):06d}.npy", directory / f"y-{len(batches):06d}.npy"
            np.save(xs, ctx.preprocessor.transform(table, dtype=np.float32), allow_pickle=False)
            np.save(ys, ctx.labels(table), allow_pickle=False)
            batches.append((xs, ys))
            pending.clear()

        rows = 0
        for table in self.tables("train"):
            pending.append(table)
            rows += table.num_rows
            if sum(t.num_rows for t in pending) >= SPILL_BATCH_ROWS:
                write()
        if any(t.num_rows for t in pending):
            write()
        self.spill = Spill(directory, batches, rows, made_with)
        return self.spill

    def close(self) -> None:
        """Delete the spilled train features, if any."""
        if self.spill is not None:
            self.spill.remove()
            self.spill = None


def _weights(y: np.ndarray, ctx: FitContext) -> np.ndarray:
    return ctx.class_weights[y] if ctx.class_weights is not None else np.ones(len(y))


def fit_streamed(data: StreamedData, ctx: FitContext, n_jobs: int, on_step: Callable[..., None]) -> EngineModel:
    """Return ``ctx``'s model fitted on the spilled train split, one batch in memory at a time."""
    spill = data.train_spill(ctx)
    name, k = ctx.model.name, ctx.task.n_classes
    if name == "naive_bayes":
        parts = [class_moments(ctx.model_input(x, np.float64), y, _weights(y, ctx), k) for x, y in spill]
        return fit_naive_bayes(parts, numpy_settings(name, ctx.params)["var_smoothing"])
    if name in LINEAR_MODELS:
        settings = numpy_settings(name, ctx.params)

        def totals(params: list[np.ndarray]) -> tuple[float, list[np.ndarray], float]:
            value, grads, weight = 0.0, [np.zeros_like(p) for p in params], 0.0
            for x, y in spill:
                w = _weights(y, ctx)
                v, g = loss_and_grad(params, ctx.model_input(x, np.float64), y, w, settings["loss"], k)
                value += v
                grads = [a + b for a, b in zip(grads, g, strict=True)]
                weight += float(w.sum())
            return value, grads, weight

        done = iter(range(1, settings["max_iter"] + 1))
        params, steps, curve = fit_lbfgs(totals, ctx.n_inputs, k, settings, callback=lambda _: on_step(next(done, 0)))
        return NetworkModel(params, settings["loss"], k, settings | {"iterations": steps}, {"train": curve})
    return _fit_external_memory(spill, ctx, n_jobs, on_step)


def _fit_external_memory(spill: Spill, ctx: FitContext, n_jobs: int, on_step: Callable[..., None]) -> EngineModel:
    """Return the booster trained on an ``ExtMemQuantileDMatrix`` over the spilled batches."""
    import xgboost

    from pipelines.engines.local.engine import round_counter

    class Batches(xgboost.DataIter):
        def __init__(self) -> None:
            self.at = 0
            super().__init__(cache_prefix=str(spill.directory / "xgb"), on_host=False)

        def next(self, input_data: Callable[..., None]) -> bool:
            if self.at == len(spill.batches):
                return False
            xs, ys = spill.batches[self.at]
            y = np.load(ys)
            weight = ctx.class_weights[y] if ctx.class_weights is not None else None
            input_data(data=ctx.model_input(np.load(xs), np.float32), label=y, weight=weight)
            self.at += 1
            return True

        def reset(self) -> None:
            self.at = 0

    params, rounds = xgboost_params(ctx.model.name, ctx.params, ctx.problem)
    matrix = xgboost.ExtMemQuantileDMatrix(Batches(), max_bin=params.get("max_bin", 256), nthread=n_jobs)
    booster = xgboost.train(
        {**params, "nthread": n_jobs}, matrix, num_boost_round=rounds, callbacks=[round_counter(on_step)]
    )
    return BoosterModel.from_booster(booster, ctx.task.n_classes)
