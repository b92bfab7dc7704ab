"""The Dask engine: rows read by the shared reader on the workers, kept there, models fitted block by block.

``load`` cuts the source into runs of consecutive pieces (Parquet row groups, CSV files), one
task per run reads, keys and splits its rows with the shared reader and keeps the table on its
worker; profiles are computed where the tables are and merged on the driver. For a fit or a
prediction each table becomes, on its worker, a feature block of one split (``blocks``); those
are kept too and reused by fit, predict and every tuning trial. Linear models and naive Bayes add
up per-block sums of the model layer's maths (no row leaves its worker); trees train with
``xgboost.dask``; exact CART in one task.

When the data would not fit the cluster (``engine.options.streaming``), the streamed layout keeps
no table: blocks are sized from the rows (about ``STREAM_BLOCK_ROWS`` each), each task reads its
run of the source again when it needs the rows, and feature blocks hold float32 preprocessed
features (kernel maps applied per task), so what the workers keep is about 4 bytes a feature a
row; beyond their memory distributed spills blocks to the workers' local directories.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from pipelines.data.reader import contiguous_units, sliced_units, source_units
from pipelines.data.schema import DataPlan, DataProfile
from pipelines.data.split import SPLIT_NAMES
from pipelines.engines.base import Engine, EngineModel, FitContext, prediction_batch
from pipelines.engines.dask import blocks as on_worker
from pipelines.engines.local.memory import STREAM_SHARE, estimated_rows, in_memory_bytes
from pipelines.errors import DataError, EngineError, first_line
from pipelines.models.catalog import Param
from pipelines.models.fitted import BoosterModel
from pipelines.models.naive_bayes import fit_naive_bayes
from pipelines.models.native import (
    LINEAR_MODELS,
    NUMPY,
    SKLEARN,
    TREE_ENSEMBLES,
    XGBOOST,
    numpy_settings,
    xgboost_params,
)
from pipelines.models.network import NetworkModel, fit_lbfgs

# The LocalCluster layout when engine.workers / options do not say: one single-threaded worker
# per core. Measured with infra/dask/measure_layout.py on this 2-core machine (docs/engines/dask.md):
# xgboost.dask on 2 workers x 1 thread fitted 200k rows in 16-20 s, on 1 worker x 2 threads in
# 39-84 s, single-process xgboost (2 threads) in 44-80 s. OpenMP threads that wait on each other
# lose most on a busy machine; one thread per process never waits.
THREADS_PER_WORKER = 1
# Streamed layout: rows per block. A block is the unit distributed keeps or spills, and a task
# holds one block's table and features at once: ~1M rows of the HIGGS-like task is ~130 MB of
# Arrow and ~115 MB of float32 features.
STREAM_BLOCK_ROWS = 1 << 20
QUIET_LOGGERS = ("distributed", "distributed.client", "distributed.core", "distributed.comm", "distributed.worker")


def dask_tls_configured() -> bool:
    """Return whether dask's own configuration names a CA file (distributed.comm.tls.ca-file)."""
    import dask

    return bool(dask.config.get("distributed.comm.tls.ca-file", None))


@dataclass
class DaskData:
    """Futures of the loaded tables (kept on the workers), their rows per split, and feature blocks."""

    plan: DataPlan
    # Futures of pa.Table in source order (the fixed test source's last); in the streamed layout
    # the source runs the tasks read again instead.
    tables: list[Any]
    profiles: list[DataProfile]
    streamed: bool = False
    blocks: dict[str, list[Any]] = field(default_factory=dict)  # split -> futures of (x, y, keys)
    made_with: tuple[Any, ...] = ()  # the (context, dtype) the blocks were made with

    def rows(self, split: str) -> list[int]:
        """Return the rows of ``split`` in every table."""
        return [int(p.rows.get(split, 0)) for p in self.profiles]


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
    LIBRARY: ClassVar[dict[str, str]] = {
        **dict.fromkeys(LINEAR_MODELS, NUMPY),
        "naive_bayes": NUMPY,
        "decision_tree": SKLEARN,
        **dict.fromkeys(TREE_ENSEMBLES, XGBOOST),
    }
    REFUSED: ClassVar[dict[str, str]] = {
        "mlp": "no data-parallel MLP on Dask matches scikit-learn's Adam minibatches; dask-ml only"
        " wraps partial_fit block after block, which is sequential, not data-parallel",
    }
    OPTIONS: ClassVar[dict[str, Param]] = {
        "threads_per_worker": Param(None, "int", "threads per LocalCluster worker (default 1)", low=1, nullable=True),
        "memory_limit": Param("auto", "size", "memory per LocalCluster worker, e.g. '4GiB' (default: RAM / workers)"),
        "timeout": Param(60.0, "float", "seconds to reach the scheduler and to wait for workers", low=1e-3),
        "partitions": Param(
            None, "int", "blocks to spread the rows over (default: one per worker thread)", low=1, nullable=True
        ),
        "streaming": Param(
            "auto",
            "str",
            "keep no table, re-read the source per split and hold float32 feature blocks sized from the data:"
            " auto (when the in-memory layout is estimated above half of the workers' memory or"
            " resources.memory), always, never",
            choices=("auto", "always", "never"),
        ),
        "collective_timeout": Param(
            300, "int", "seconds an xgboost worker waits for its peers before the fit fails", low=1
        ),
        "tls_ca_file": Param(None, "str", "CA certificate (PEM) for a tls:// scheduler", nullable=True),
        "tls_cert": Param(None, "str", "this client's certificate (PEM) for a tls:// scheduler", nullable=True),
        "tls_key": Param(None, "str", "this client's private key (PEM) for a tls:// scheduler", nullable=True),
    }

    def __init__(self, spec: Any, seed: int = 0) -> None:
        super().__init__(spec, seed)
        self.timeout = float(self.options["timeout"])
        self.client: Any = None
        self.cluster: Any = None
        self.address = spec.address
        self._log_levels: dict[str, int] = {}
        self.model_name: str | None = None
        self.memory: int | None = None
        self.estimate: dict[str, Any] = {}

    def plan(self, model: str, params: dict[str, Any], memory: int) -> None:
        """Remember the job's model and memory budget: ``load`` chooses the layout from them."""
        self.model_name, self.memory = model, memory

    # --- cluster lifecycle ------------------------------------------------------------------

    def on_start(self) -> None:
        """Connect to ``engine.address`` or start a LocalCluster on 127.0.0.1 with random ports."""
        import dask
        from distributed import Client, LocalCluster

        dask.config.set({"distributed.comm.timeouts.connect": f"{self.timeout}s", "dataframe.convert-string": True})
        security = self._security() if self.spec.address else None
        # A lost scheduler is reported as one EngineError line; distributed would also log tracebacks.
        self._log_levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if self.spec.address:
            try:
                self.client = Client(self.spec.address, timeout=self.timeout, security=security)
            except (OSError, TimeoutError) as exc:
                self.on_shutdown()
                raise EngineError(
                    f"engine.address: cannot reach the Dask scheduler at {self.spec.address}"
                    f" within {self.timeout:g}s ({first_line(exc)})"
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
        threads = int(self.options["threads_per_worker"] or THREADS_PER_WORKER)
        workers = self.spec.workers or max(1, (os.cpu_count() or 1) // threads)
        self.cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            # Every listener on loopback: the scheduler's and workers' HTTP servers (metrics) too,
            # which distributed otherwise binds to every interface.
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
            memory_limit=self.options["memory_limit"],
            # A worker's death is reported as one EngineError line; its nanny would log a traceback.
            silence_logs=logging.CRITICAL,
        )
        self.client = Client(self.cluster)
        self.address = self.cluster.scheduler_address

    def _security(self) -> Any:
        """Return the TLS settings of engine.options (None: dask's configuration decides)."""
        from distributed.security import Security

        files = {key: self.options[key] for key in ("tls_ca_file", "tls_cert", "tls_key")}
        if not any(files.values()):
            if (self.spec.address or "").startswith("tls://") and not dask_tls_configured():
                raise EngineError(
                    f"engine.address: {self.spec.address} needs TLS settings: set engine.options.tls_ca_file,"
                    " tls_cert and tls_key"
                )
            return None
        for key, path in files.items():
            if not path:
                raise EngineError(f"engine.options.{key}: missing (TLS needs tls_ca_file, tls_cert and tls_key)")
            if not os.access(path, os.R_OK):
                raise EngineError(f"engine.options.{key}: cannot read {path}")
        return Security(
            tls_ca_file=files["tls_ca_file"],
            tls_client_cert=files["tls_cert"],
            tls_client_key=files["tls_key"],
            require_encryption=True,
        )

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
            **({"memory": self.estimate} if self.estimate else {}),
        }

    def preload(self, model: str) -> None:
        """Import dask.dataframe, distributed and (for tree models) xgboost.dask."""
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401

        if self.LIBRARY.get(model) == XGBOOST:
            import xgboost.dask  # noqa: F401

    def _gather(self, futures: Any) -> Any:
        return self.client.gather(futures, errors="raise")

    @contextmanager
    def _on_cluster(self) -> Iterator[None]:
        """Turn a lost scheduler, cancelled work or unreadable data into one-line errors."""
        from concurrent.futures import CancelledError

        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker

        try:
            yield
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"data.source: cannot read the data: {first_line(exc)}") from None
        except KilledWorker as exc:
            worker = getattr(exc.last_worker, "address", "a worker")
            raise EngineError(
                f"engine dask: {worker} died while running {exc.task!r} (killed, or out of memory:"
                " see engine.options.memory_limit)"
            ) from None
        except Exception as exc:
            lost = self.client is None or self.client.status != "running"
            if not (lost or isinstance(exc, ConnectionError | CommClosedError | TimeoutError | CancelledError)):
                raise
            where = "engine.address: the Dask scheduler" if self.cluster is None else "the LocalCluster scheduler"
            why = "connection lost, work cancelled" if isinstance(exc, CancelledError) else first_line(exc)
            raise EngineError(f"{where} at {self.address} stopped answering ({why})") from None

    # --- data -------------------------------------------------------------------------------

    def _streams(self, plan: DataPlan) -> bool:
        """Return whether to use the streamed layout, recording the estimate behind the choice."""
        choice = self.options["streaming"]
        needed = in_memory_bytes(plan, self.model_name)
        limits = [int(w.get("memory_limit") or 0) for w in self.client.scheduler_info().get("workers", {}).values()]
        budget = self.memory
        if limits and all(limits):
            budget = min(budget or sum(limits), sum(limits))
        streamed = choice == "always" or (choice == "auto" and budget is not None and needed > STREAM_SHARE * budget)
        self.estimate = {
            "in_memory_bytes": needed,
            "budget_bytes": budget,
            "layout": "streamed" if streamed else "in_memory",
        }
        return streamed

    def load(self, plan: DataPlan) -> DaskData:
        """Return futures of the plan's rows read by the shared reader, kept on the workers, and their profiles.

        In the streamed layout nothing is kept: the tasks profile their run of the source, and
        later tasks read it again.
        """
        with self._on_cluster():
            streamed = self._streams(plan)
            wanted = int(self.options["partitions"] or sum(self.threads) or 1)
            tables: list[Any] = []
            for source, is_test in ((plan.source, False), (plan.test_source, True)):
                if source is None:
                    continue
                units = source_units(source)
                parts = wanted
                if streamed and not self.options["partitions"]:
                    parts = max(wanted, -(-estimated_rows(source, units) // STREAM_BLOCK_ROWS))
                runs = contiguous_units(sliced_units(units, parts), parts)
                if streamed:
                    tables += [on_worker.SourceRun(plan, run, is_test) for run in runs]
                else:
                    tables += [self.client.submit(on_worker.read_block, plan, run, is_test, pure=False) for run in runs]
            profiles = self._gather([self.client.submit(on_worker.profile_block, t, plan) for t in tables])
        self.estimate["blocks"] = len(tables)
        data = DaskData(plan, tables, profiles, streamed)
        if not sum(sum(p.rows.values()) for p in profiles):
            raise DataError(f"data.source: {plan.source.text} has no rows")
        return data

    def profile(self, data: DaskData, plan: DataPlan) -> DataProfile:
        """Return the merge of the per-table profiles computed on the workers while loading."""
        merged = DataProfile()
        for p in data.profiles:
            merged = merged.merge(p)
        return merged

    def sample_rows(self, data: DaskData, split: str, n: int, seed: int) -> pa.Table:
        """Return the ``n`` rows of ``split`` with the smallest landmark priority (n per table, then merged)."""
        code = SPLIT_NAMES.index(split)
        with self._on_cluster():
            found = self._gather(
                [self.client.submit(on_worker.landmark_candidates, t, code, n, seed) for t in data.tables]
            )
        priority = np.concatenate([f[0] for f in found])
        rows = pa.concat_tables([f[1] for f in found])
        return rows.take(pa.array(np.argsort(priority, kind="stable")[:n]))

    def keys_found(self, data: DaskData, keys: np.ndarray, split: str) -> np.ndarray:
        """Return the keys of ``keys`` that rows of ``split`` have (looked up where each table is)."""
        with self._on_cluster():
            [shared] = self.client.scatter([keys], broadcast=True, hash=False)
            code = SPLIT_NAMES.index(split)
            found = self._gather([self.client.submit(on_worker.block_keys_in, t, shared, code) for t in data.tables])
        return np.unique(np.concatenate([np.empty(0, np.uint64), *found]))

    def _blocks(self, data: DaskData, ctx: FitContext, split: str) -> list[Any]:
        """Return futures of the split's feature blocks, built once per preprocessing."""
        # xgboost reads features as float32 whatever it is given (training and inplace_predict), so
        # its blocks are float32: the same model, half the memory and no copy inside xgboost.
        # The streamed layout stores float32 for every model (feature_block).
        dtype = np.float32 if self.LIBRARY[ctx.model.name] == XGBOOST or data.streamed else np.float64
        made_with = (ctx.preprocessor, ctx.feature_map, ctx.task, dtype)
        # Identity, not equality: a FeatureMap holds arrays, and a new object means new blocks.
        if not data.made_with or any(a is not b for a, b in zip(data.made_with, made_with, strict=True)):
            data.blocks, data.made_with = {}, made_with
        if data.streamed and not data.blocks:
            # One read of each source run makes the feature blocks of every split: the fit's pass
            # over the source also serves both predictions.
            every = [self.client.submit(on_worker.split_blocks, t, ctx, pure=False) for t in data.tables]
            for code, name in enumerate(SPLIT_NAMES):
                data.blocks[name] = [
                    self.client.submit(on_worker.item, f, code, pure=False)
                    for f, rows in zip(every, data.rows(name), strict=True)
                    if rows
                ]
        if split not in data.blocks:
            code = SPLIT_NAMES.index(split)
            chosen = [t for t, rows in zip(data.tables, data.rows(split), strict=True) if rows]
            data.blocks[split] = [
                self.client.submit(on_worker.feature_block, t, code, ctx, dtype, pure=False) for t in chosen
            ]
        return data.blocks[split]

    # --- models -----------------------------------------------------------------------------

    def fit(self, data: DaskData, ctx: FitContext) -> EngineModel:
        """Return the model fitted on the train blocks, class weights applied per row."""
        with self._on_cluster():
            blocks = self._blocks(data, ctx, "train")
            name, k, weights = ctx.model.name, ctx.task.n_classes, ctx.class_weights
            inputs = ctx if data.streamed else None  # streamed blocks are cast and kernel-mapped per task

            def summed(fn: Any, *args: Any) -> list[Any]:
                return self._gather([self.client.submit(fn, b, *args, pure=False) for b in blocks])

            if name == "decision_tree":  # exact CART needs all rows in one place (pipelines.models.cart)
                return self._gather(self.client.submit(on_worker.fit_cart_on_blocks, ctx, *blocks, pure=False))
            if name == "naive_bayes":
                settings = numpy_settings(name, ctx.params)
                return fit_naive_bayes(summed(on_worker.block_moments, k, weights, inputs), settings["var_smoothing"])
            if name in LINEAR_MODELS:
                settings = numpy_settings(name, ctx.params)

                def totals(params: list[np.ndarray]) -> tuple[float, list[np.ndarray], float]:
                    parts = summed(on_worker.network_totals, params, settings["loss"], k, weights, inputs)
                    grads = [sum(p[1][i] for p in parts) for i in range(len(params))]
                    return sum(p[0] for p in parts), grads, sum(p[2] for p in parts)

                done = iter(range(1, settings["max_iter"] + 1))
                params, steps, curve = fit_lbfgs(
                    totals, ctx.n_inputs, k, settings, callback=lambda _: self.on_step(next(done, 0))
                )
                return NetworkModel(
                    params,
                    settings["loss"],
                    k,
                    settings | {"iterations": steps},
                    {"axis": "L-BFGS iteration", "train": curve},
                )
            return self._fit_xgboost(data, ctx, blocks)

    def _fit_xgboost(self, data: DaskData, ctx: FitContext, blocks: list[Any]) -> EngineModel:
        """Return the booster ``xgboost.dask.train`` fits on a DaskQuantileDMatrix of the train blocks."""
        import dask.array as da
        import xgboost.dask as dxgb
        from dask import delayed

        width = ctx.n_inputs
        sizes = [n for n in data.rows("train") if n]
        x = da.concatenate(
            [
                da.from_delayed(delayed(on_worker.item)(b, 0), (n, width), np.float32)
                for b, n in zip(blocks, sizes, strict=True)
            ]
        )
        y = da.concatenate(
            [da.from_delayed(delayed(on_worker.item)(b, 1), (n,), np.int32) for b, n in zip(blocks, sizes, strict=True)]
        )
        weights = ctx.class_weights
        w = y.map_blocks(lambda v: weights[v], dtype=np.float64) if weights is not None else None
        params, rounds = xgboost_params(ctx.model.name, ctx.params, ctx.problem)
        from distributed.comm import get_address_host
        from xgboost.collective import Config

        # The Rabit tracker runs in the scheduler: it listens where the scheduler does (loopback for a
        # LocalCluster), not on the machine's network address xgboost would pick. A collective
        # operation waits at most collective_timeout for its peers: a lost worker fails the fit
        # within that bound instead of hanging the survivors.
        tracker = Config(
            tracker_host_ip=get_address_host(self.client.scheduler.address),
            timeout=int(self.options["collective_timeout"]),
        )

        def train() -> Any:
            matrix = dxgb.DaskQuantileDMatrix(self.client, x, y, weight=w, max_bin=params.get("max_bin", 256))
            return dxgb.train(
                self.client,
                {**params, "nthread": max(self.threads)},
                matrix,
                num_boost_round=rounds,
                verbose_eval=False,
                coll_cfg=tracker,
            )

        # xgboost.dask cannot survive a lost worker: its peers fail. When workers left during the
        # fit, fit once more from scratch on the survivors (lost blocks are recomputed from their
        # source); a second loss, or a failure with every worker still there, is one error line.
        before = set(self.client.scheduler_info().get("workers", {}))
        try:
            out = train()
        except Exception as exc:
            if self.client.status != "running":
                raise
            alive = set(self.client.scheduler_info().get("workers", {}))
            lost = sorted(before - alive)
            if not lost or not alive:
                raise EngineError(f"engine dask: xgboost training failed ({first_line(exc)})") from None
            logging.getLogger("scaleclf.engines.dask").warning(
                "xgboost training lost worker(s) %s; retrying once on the %d surviving worker(s)",
                ", ".join(lost),
                len(alive),
            )
            try:
                out = train()
            except Exception as again:
                if self.client.status != "running":
                    raise
                raise EngineError(
                    f"engine dask: xgboost training lost worker(s) {', '.join(lost)} and failed again on the"
                    f" survivors ({first_line(again)})"
                ) from None
        return BoosterModel.from_booster(out["booster"], ctx.task.n_classes)

    def predict(self, model: EngineModel, data: DaskData, ctx: FitContext, split: str) -> Iterator[pa.RecordBatch]:
        """Yield one prediction batch per block, each computed on the worker holding it."""
        from distributed import as_completed

        with self._on_cluster():
            blocks = self._blocks(data, ctx, split)
            if not blocks:
                return
            [shared] = self.client.scatter([model], broadcast=True, hash=False)
            inputs = ctx if data.streamed else None
            dtype = np.float32 if isinstance(model, BoosterModel) else np.float64
            futures = [
                self.client.submit(on_worker.block_outputs, b, shared, inputs, dtype, pure=False) for b in blocks
            ]
            for future in as_completed(futures):
                keys, y, values = self._gather(future)
                yield prediction_batch(keys, y, values, ctx.output)
