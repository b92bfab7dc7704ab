"""The Dask engine: rows read lazily by dask.dataframe, persisted once on the workers, models fitted block by block.

``load`` reads Parquet/CSV with ``dask.dataframe`` (pyarrow dtypes), attaches the shared row
key and split to every partition and persists the frame once. For a fit or a prediction each
partition is turned, on its worker, into a block ``(features, class index, row key)`` of one
split with the shared Preprocessor (and kernel FeatureMap); those blocks are persisted too and
reused by fit, predict and every tuning trial. Models live in ``models``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.schema import DataPlan, DataProfile, Task, profile_batch
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, SPLIT_NAMES
from pipelines.engines.base import Engine, EngineModel, FitContext, prediction_batch
from pipelines.engines.dask.models import (
    LinearModel,
    NaiveBayesModel,
    XGBoostModel,
    fit_linear,
    fit_naive_bayes,
    fit_xgboost,
    xgboost_params,
)
from pipelines.errors import ConfigError, DataError, EngineError
from pipelines.models.cart import CartModel, fit_cart
from pipelines.models.kernels import FeatureMap, landmark_priority
from pipelines.models.preprocess import Preprocessor

# The LocalCluster layout when engine.workers / options do not say: one single-threaded worker
# per core. Measured with infra/dask/measure_layout.py on this 2-core machine (README, "Dask
# engine"): xgboost.dask on 2 workers x 1 thread fitted 200k rows in 16-20 s, on 1 worker x
# 2 threads in 39-84 s, single-process xgboost (2 threads) in 44-80 s. OpenMP threads that
# wait on each other lose most on a busy machine; one thread per process never waits.
THREADS_PER_WORKER = 1
OPTIONS = {
    "threads_per_worker": "threads per LocalCluster worker (default 1; workers default to cores / threads)",
    "memory_limit": "memory per LocalCluster worker, e.g. '4GiB' (default: RAM / workers)",
    "timeout": "seconds to reach the scheduler, and to wait for a lost one to come back (default 60)",
    "partitions": "partitions to spread the rows over (default: at least one per worker thread)",
}
QUIET_LOGGERS = ("distributed", "distributed.client", "distributed.core", "distributed.comm", "distributed.worker")
LINEAR = {"logistic_regression": "logistic", "linear_svm": "hinge", "rff_svm": "hinge", "nystroem_svm": "hinge"}
TREES = ("xgboost", "gbt", "random_forest", "decision_tree")


def _arrow(df: Any) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def _attach_partition(df: Any, plan: DataPlan, is_test_source: bool) -> Any:
    import pandas as pd

    return plan.attach(_arrow(df), is_test_source=is_test_source).to_pandas(types_mapper=pd.ArrowDtype)


def _profile_partition(df: Any, plan: DataPlan) -> DataProfile:
    return profile_batch(_arrow(df), plan)


def _split_block(
    df: Any, code: int, prep: Preprocessor, fmap: FeatureMap | None, task: Task, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (features, class index or -1, row key) of one partition's rows of one split."""
    table = _arrow(df)
    table = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))
    x = prep.transform(table)
    if fmap is not None:
        x = fmap.transform(x)
    x = np.asarray(x, dtype=dtype)
    if task.label in table.schema.names:
        y = task.encode(table.column(task.label))
    else:
        y = np.full(table.num_rows, -1, dtype=np.int32)
    return x, y, np.asarray(table.column(KEY_COLUMN).to_numpy())


def _landmark_candidates(df: Any, n: int, seed: int) -> tuple[np.ndarray, pa.Table]:
    table = _arrow(df)
    train = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(0, pa.int8())))
    priority = landmark_priority(np.asarray(train.column(KEY_COLUMN).to_numpy()), seed)
    order = np.argsort(priority, kind="stable")[:n]
    return priority[order], train.take(pa.array(order))


def _block_outputs(block: tuple[np.ndarray, ...], model: Any, output: str) -> tuple[np.ndarray, ...]:
    x, y, keys = block
    return keys, y, model.outputs(x, output)


@dataclass
class DaskData:
    """The persisted frame, the rows of each split per partition, and the blocks built from it."""

    frame: Any
    partition_rows: list[dict[str, int]] = field(default_factory=list)
    blocks: dict[str, list[Any]] = field(default_factory=dict)  # split -> futures of (x, y, keys)
    made_with: tuple[Any, ...] = ()  # the (preprocessor, feature map, task, dtype) of the blocks


class DaskEngine(Engine):
    """Runs the catalog on a Dask cluster: a LocalCluster, or the scheduler at ``engine.address``."""

    name = "dask"
    MODELS: ClassVar[dict[str, str]] = {
        "logistic_regression": "block-wise gradients + L-BFGS on the driver (scikit-learn's objective)",
        "linear_svm": "block-wise squared-hinge gradients + L-BFGS (LinearSVC's primal) + shared Platt scaling",
        "naive_bayes": "Gaussian naive Bayes from block-wise class moments",
        "decision_tree": "exact CART (scikit-learn) in one task fed the train blocks; prediction per block",
        "random_forest": "xgboost.dask random forest (DaskXGBRFClassifier's parameters)",
        "gbt": "xgboost.dask gradient boosting with HistGradientBoosting's settings",
        "xgboost": "xgboost.dask train on a DaskQuantileDMatrix (hist)",
        "rff_svm": "shared random Fourier features per block + the block-wise linear SVM",
        "nystroem_svm": "shared Nystroem features per block + the block-wise linear SVM",
    }
    REFUSED: ClassVar[dict[str, str]] = {
        "mlp": "no data-parallel MLP on Dask matches scikit-learn's Adam minibatches; dask-ml only"
        " wraps partial_fit block after block, which is sequential, not data-parallel",
    }

    def __init__(self, spec: Any, seed: int = 0) -> None:
        super().__init__(spec, seed)
        unknown = sorted(set(spec.options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"config error: engine.options.{unknown[0]}: unknown option for dask (allowed: {', '.join(OPTIONS)})"
            )
        for key in ("threads_per_worker", "partitions", "timeout"):
            value = spec.options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                raise ConfigError(f"config error: engine.options.{key}: expected a positive number, got {value!r}")
        self.timeout = float(spec.options.get("timeout", 60))
        self.client: Any = None
        self.cluster: Any = None
        self.address = spec.address
        self._log_levels: dict[str, int] = {}

    # --- cluster lifecycle ------------------------------------------------------------------

    def on_start(self) -> None:
        """Connect to ``engine.address`` or start a LocalCluster on 127.0.0.1 with random ports."""
        import dask
        from distributed import Client, LocalCluster

        dask.config.set({"distributed.comm.timeouts.connect": f"{self.timeout}s", "dataframe.convert-string": True})
        # A lost scheduler is reported as one EngineError line; distributed would also log tracebacks.
        self._log_levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if self.spec.address:
            try:
                self.client = Client(self.spec.address, timeout=self.timeout)
            except (OSError, TimeoutError) as exc:
                self.on_shutdown()
                raise EngineError(
                    f"engine.address: cannot reach the Dask scheduler at {self.spec.address}"
                    f" within {self.timeout:g}s ({_first_line(exc)})"
                ) from None
            try:
                self.client.wait_for_workers(1, timeout=self.timeout)
            except TimeoutError:
                self.on_shutdown()  # __exit__ does not run when __enter__ fails
                raise EngineError(
                    f"engine.address: the Dask scheduler at {self.spec.address} has no workers"
                    f" (none joined within {self.timeout:g}s)"
                ) from None
            return
        threads = int(self.spec.options.get("threads_per_worker") or THREADS_PER_WORKER)
        workers = self.spec.workers or max(1, (os.cpu_count() or 1) // threads)
        self.cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            memory_limit=self.spec.options.get("memory_limit", "auto"),
            silence_logs=logging.ERROR,
        )
        self.client = Client(self.cluster)
        self.address = self.cluster.scheduler_address

    def on_shutdown(self) -> None:
        """Close the client and, when this engine started it, the LocalCluster."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        for name, level in self._log_levels.items():
            logging.getLogger(name).setLevel(level)

    @property
    def threads(self) -> list[int]:
        """Return the thread count of each worker."""
        return [int(w["nthreads"]) for w in self.client.scheduler_info().get("workers", {}).values()]

    def describe(self) -> dict[str, Any]:
        """Return the scheduler address, workers, threads and library versions."""
        import dask
        import xgboost

        with self._on_cluster():  # the scheduler can die after the last prediction, too
            threads = self.threads
            if not threads and self.client.status != "running":
                raise ConnectionError("connection lost")
        return {
            "engine": self.name,
            "scheduler": self.client.scheduler.address,
            "cluster": "external" if self.cluster is None else "LocalCluster",
            "workers": len(threads),
            "threads_per_worker": threads,
            "dask": dask.__version__,
            "xgboost": xgboost.__version__,
        }

    def preload(self, model: str) -> None:
        """Import dask.dataframe, distributed and (for tree models) xgboost.dask."""
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401

        if model in TREES:
            import xgboost.dask  # noqa: F401

    def _gather(self, futures: Any) -> Any:
        return self.client.gather(futures, errors="raise")

    @contextmanager
    def _on_cluster(self) -> Iterator[None]:
        """Turn a lost scheduler, cancelled work or unreadable data into one-line errors."""
        from concurrent.futures import CancelledError

        from distributed.comm.core import CommClosedError

        try:
            yield
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"data.source: cannot read the data: {_first_line(exc)}") from None
        except Exception as exc:
            lost = self.client is None or self.client.status != "running"
            if not (lost or isinstance(exc, ConnectionError | CommClosedError | TimeoutError | CancelledError)):
                raise
            where = "engine.address: the Dask scheduler" if self.cluster is None else "the LocalCluster scheduler"
            why = "connection lost, work cancelled" if isinstance(exc, CancelledError) else _first_line(exc)
            raise EngineError(f"{where} at {self.address} stopped answering ({why})") from None

    # --- data -------------------------------------------------------------------------------

    def load(self, plan: DataPlan) -> DaskData:
        """Return the plan's rows as a persisted Dask frame with row key and split attached."""
        import dask.dataframe as dd
        from distributed import wait

        with self._on_cluster():
            frame = self._read(plan, plan.source, "data.source", is_test_source=False)
            if plan.test_source is not None:
                test = self._read(plan, plan.test_source, "data.test_source", is_test_source=True)
                frame = dd.concat([frame, test])
            wanted = int(self.spec.options.get("partitions") or sum(self.threads))
            if frame.npartitions < wanted:
                frame = frame.repartition(npartitions=wanted)
            frame = self.client.persist(frame)
            wait(frame)
            return DaskData(frame)

    def _read(self, plan: DataPlan, source: Any, field_name: str, *, is_test_source: bool) -> Any:
        import dask.dataframe as dd

        paths = list(source.paths) if source.is_local else source.uris()
        try:
            if source.format == "parquet":
                frame = dd.read_parquet(
                    paths, columns=plan.columns, dtype_backend="pyarrow", filesystem=source.filesystem or "fsspec"
                )
            else:
                # round_trip: parse floats to the same bits pyarrow's reader (the local engine) gives,
                # or the row keys, which hash those bits, would differ.
                frame = dd.read_csv(
                    paths,
                    usecols=plan.columns,
                    dtype_backend="pyarrow",
                    float_precision="round_trip",
                    blocksize="64MB",
                )
        except (OSError, ValueError, pa.ArrowInvalid) as exc:
            raise DataError(f"{field_name}: cannot read {source.text} as {source.format}: {_first_line(exc)}") from None
        meta = _attach_partition(frame._meta, plan, is_test_source)
        return frame.map_partitions(_attach_partition, plan, is_test_source, meta=meta)

    def profile(self, data: DaskData, plan: DataPlan) -> DataProfile:
        """Return the merged profile of every partition (computed on the workers)."""
        from dask import delayed

        with self._on_cluster():
            parts = data.frame.to_delayed()
            profiles = self._gather(self.client.compute([delayed(_profile_partition)(p, plan) for p in parts]))
            data.partition_rows = [dict(p.rows) for p in profiles]
            merged = DataProfile()
            for p in profiles:
                merged = merged.merge(p)
            return merged

    def landmark_rows(self, data: DaskData, n: int, seed: int) -> pa.Table:
        """Return the ``n`` train rows with the smallest landmark priority (n per partition, then merged)."""
        from dask import delayed

        with self._on_cluster():
            parts = data.frame.to_delayed()
            found = self._gather(self.client.compute([delayed(_landmark_candidates)(p, n, seed) for p in parts]))
            priority = np.concatenate([f[0] for f in found])
            rows = pa.concat_tables([f[1] for f in found])
            return rows.take(pa.array(np.argsort(priority, kind="stable")[:n]))

    def _blocks(self, data: DaskData, ctx: FitContext, split: str) -> list[Any]:
        """Return futures of the split's (x, y, keys) blocks, built once per preprocessing."""
        from dask import delayed

        # xgboost reads features as float32 whatever it is given (training and inplace_predict), so
        # tree models get float32 blocks: the same model, half the memory and no copy inside xgboost.
        dtype = np.float32 if ctx.model.name in TREES else np.float64
        made_with = (ctx.preprocessor, ctx.feature_map, ctx.task, dtype)
        # Identity, not equality: a FeatureMap holds arrays, and a new object means new blocks.
        if not data.made_with or any(a is not b for a, b in zip(data.made_with, made_with, strict=True)):
            data.blocks, data.made_with = {}, made_with
        if split not in data.blocks:
            code = SPLIT_NAMES.index(split)
            parts = data.frame.to_delayed()
            chosen = [p for p, rows in zip(parts, data.partition_rows, strict=True) if rows.get(split, 0)]
            tasks = [delayed(_split_block)(p, code, ctx.preprocessor, ctx.feature_map, ctx.task, dtype) for p in chosen]
            data.blocks[split] = self.client.compute(tasks)
        return data.blocks[split]

    # --- models -----------------------------------------------------------------------------

    def fit(self, data: DaskData, ctx: FitContext) -> EngineModel:
        """Return the model fitted on the train blocks, class weights applied per row."""
        with self._on_cluster():
            blocks = self._blocks(data, ctx, "train")
            name, n_classes = ctx.model.name, ctx.task.n_classes
            n_features = ctx.feature_map.n_components if ctx.feature_map is not None else ctx.preprocessor.n_features

            def reduce(fn: Any, args: tuple[Any, ...]) -> list[Any]:
                return self._gather([self.client.submit(fn, b, *args, pure=False) for b in blocks])

            if name in LINEAR:
                return fit_linear(reduce, LINEAR[name], n_features, n_classes, ctx.params, ctx.class_weights)
            if name == "naive_bayes":
                return fit_naive_bayes(reduce, n_classes, ctx.params["var_smoothing"], ctx.class_weights)
            if name == "decision_tree":  # exact CART needs all rows in one place (pipelines.models.cart)
                future = self.client.submit(_fit_cart, ctx.params, ctx.seed, ctx.class_weights, *blocks, pure=False)
                return self._gather(future)
            counts = np.asarray(ctx.task.class_counts, dtype=np.float64)
            prior = float(counts[-1] / counts.sum())
            params, rounds = xgboost_params(name, ctx.params, n_features, n_classes, prior, ctx.seed)
            x, y, w = self._train_arrays(data, ctx, n_features)
            return fit_xgboost(self.client, x, y, w, params, rounds, max(self.threads))

    def _train_arrays(self, data: DaskData, ctx: FitContext, n_features: int) -> tuple[Any, Any, Any]:
        import dask.array as da
        from dask import delayed

        blocks = self._blocks(data, ctx, "train")
        sizes = [rows["train"] for rows in data.partition_rows if rows.get("train", 0)]
        x = da.concatenate(
            [
                da.from_delayed(delayed(_item)(b, 0), (n, n_features), np.float32)
                for b, n in zip(blocks, sizes, strict=True)
            ]
        )
        y = da.concatenate(
            [da.from_delayed(delayed(_item)(b, 1), (n,), np.int32) for b, n in zip(blocks, sizes, strict=True)]
        )
        weights = ctx.class_weights
        w = y.map_blocks(lambda v: weights[v], dtype=np.float64) if weights is not None else None
        return x, y, w

    def predict(self, model: EngineModel, data: DaskData, ctx: FitContext, split: str) -> Iterator[pa.RecordBatch]:
        """Yield one prediction batch per partition, each computed on the worker holding it."""
        from distributed import as_completed

        with self._on_cluster():
            blocks = self._blocks(data, ctx, split)
            if not blocks:
                return
            [shared] = self.client.scatter([model], broadcast=True, hash=False)
            futures = [self.client.submit(_block_outputs, b, shared, ctx.output, pure=False) for b in blocks]
            for future in as_completed(futures):
                keys, y, values = self._gather(future)
                yield prediction_batch(keys, y, values, ctx.output)

    def load_model(self, directory: Path, ctx: FitContext) -> EngineModel:
        """Return the model saved by ``save`` (JSON coefficients or xgboost JSON)."""
        name = ctx.model.name
        if name in LINEAR:
            return LinearModel.load(directory)
        if name == "naive_bayes":
            return NaiveBayesModel.load(directory)
        if name == "decision_tree":
            return CartModel.load(directory)
        return XGBoostModel.load(directory, ctx.task.n_classes)


def _fit_cart(params: dict[str, Any], seed: int, class_weights: np.ndarray | None, *blocks: Any) -> CartModel:
    """Return CART fitted on the train blocks, concatenated in partition order (one task, one worker)."""
    x = np.concatenate([b[0] for b in blocks]) if blocks else np.empty((0, 0), np.float32)
    y = np.concatenate([b[1] for b in blocks]) if blocks else np.empty(0, np.int32)
    return fit_cart(x, y, params, seed, class_weights)


def _item(block: tuple[Any, ...], i: int) -> Any:
    return block[i]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
