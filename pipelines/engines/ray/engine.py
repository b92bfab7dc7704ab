"""The Ray engine: Ray tasks read, profile and predict; Ray Train fits on its workers.

Rows are read by a few large Ray tasks, one per run of consecutive Parquet row groups (at
most one per CPU), which attach the same row key and split as every engine
(``DataPlan.attach``) and profile their rows in the same pass; the blocks stay in the object
store. Trees (xgboost, gbt, random_forest) train with Ray Train's ``XGBoostTrainer``;
decision_tree is exact CART in one task (``pipelines.models.cart``); linear models, the kernel
SVMs and the MLP train data-parallel in numpy on Ray Train workers
(``pipelines.engines.ray.train_loops``); naive Bayes is exact sufficient statistics summed over the
blocks. Training workers take their share of the loaded blocks from the object store (or, where
the blocks do not divide evenly among them, read their own Parquet row groups); predictions run
where each block is. (Many small Ray Data ``map_batches`` tasks cost more
than the work at 1M rows; ``ingest: dataset`` still feeds Ray Train from Ray Data.)
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from pipelines.data.reader import balanced_units, contiguous_units, source_units
from pipelines.data.schema import DataPlan, DataProfile
from pipelines.data.split import SPLIT_NAMES
from pipelines.engines.base import Engine, EngineModel, FitContext, keys_in
from pipelines.engines.ray import tasks
from pipelines.errors import ConfigError, DataError, EngineError, ScaleclfError, first_line
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
from pipelines.models.network import NetworkModel, init_params, layer_sizes, unflatten

LOCAL_TEMP_DIR = "/tmp/scaleclf-ray-local"  # short: Ray's socket paths must stay under 107 bytes
INGEST = ("blocks", "fragments", "dataset")


@dataclass
class RayData:
    """The plan's rows as a few large Arrow blocks in the object store, with ``__row_key`` and ``__split``.

    Each block is a run of consecutive source pieces read, keyed and split by one task with the
    shared reader, which also profiled it; ``profile`` is the merge of those profiles.
    """

    plan: DataPlan
    blocks: list[Any]  # ObjectRefs of pa.Table, in file order
    profile: DataProfile
    source_blocks: int  # the first blocks are data.source's; the rest data.test_source's (all test rows)

    @property
    def dataset(self) -> Any:
        """Return the blocks as a Ray Dataset (for Ray Data ingest)."""
        import ray.data

        return ray.data.from_arrow_refs(list(self.blocks))

    def rows(self, split: str) -> Any:
        """Return the Dataset of one split's rows."""
        return self.dataset.map_batches(
            tasks.keep_split,
            fn_kwargs={"code": SPLIT_NAMES.index(split)},
            batch_format="pyarrow",
            batch_size=None,
            zero_copy_batch=True,
        )


def _cause(exc: BaseException) -> BaseException:
    """Return the scaleclf error a Ray task raised (not Ray's wrapper, whose text holds the remote
    traceback), or the innermost cause."""
    seen = exc
    for _ in range(32):
        wrapped = getattr(seen, "cause", None)
        if isinstance(seen, ScaleclfError) and not isinstance(wrapped, BaseException):
            return type(seen)(str(seen))
        nxt = wrapped if isinstance(wrapped, BaseException) else seen.__cause__
        if nxt is None or nxt is seen:
            break
        seen = nxt
    return seen


class RayEngine(Engine):
    """Runs the catalog on Ray: a fresh local instance, or the cluster at ``engine.address``."""

    name = "ray"
    MODELS: ClassVar[dict[str, str]] = {
        "logistic_regression": "numpy L-BFGS data-parallel on Ray Train workers (all-reduce actor)",
        "linear_svm": "numpy L-BFGS on squared hinge (as LinearSVC), data-parallel on Ray Train workers",
        "naive_bayes": "Gaussian NB from exact per-class moments summed over Ray Data blocks",
        "decision_tree": "exact CART (scikit-learn) in one Ray task fed the train blocks; parallel prediction",
        "random_forest": "xgboost random forest (num_parallel_tree, row/column subsampling) via XGBoostTrainer",
        "gbt": "xgboost hist boosting via Ray Train XGBoostTrainer",
        "xgboost": "xgboost hist via Ray Train XGBoostTrainer",
        "mlp": "numpy MLP, synchronous data-parallel Adam on Ray Train workers",
        "rff_svm": "shared random Fourier features in map_batches + data-parallel squared-hinge SVM",
        "nystroem_svm": "shared Nystroem features in map_batches + data-parallel squared-hinge SVM",
    }

    LIBRARY: ClassVar[dict[str, str]] = {
        **dict.fromkeys(LINEAR_MODELS, NUMPY),
        "naive_bayes": NUMPY,
        "mlp": NUMPY,
        "decision_tree": SKLEARN,
        **dict.fromkeys(TREE_ENSEMBLES, XGBOOST),
    }
    OPTIONS: ClassVar[dict[str, Param]] = {
        "num_cpus": Param(None, "int", "CPUs of the local Ray instance (default: every core)", low=1, nullable=True),
        "object_store_mb": Param(2048, "int", "object store size of the local Ray instance in MiB", low=80),
        "cpus_per_worker": Param(
            None,
            "float",
            "CPUs per training worker (default: CPUs / workers); also xgboost's nthread",
            low=0.01,
            nullable=True,
        ),
        "checkpoint_every": Param(
            50, "int", "checkpoint every N boosting rounds / L-BFGS iterations / epochs (0 = at the end only)", low=0
        ),
        "max_failures": Param(2, "int", "worker-group restarts Ray Train allows (FailureConfig)", low=0),
        "resources_timeout": Param(
            60.0,
            "float",
            "seconds a (re)started worker group waits for its CPUs; max_failures such waits, then the run stops",
            low=1,
        ),
        "ingest": Param(
            "blocks",
            "str",
            "blocks (workers take the loaded blocks; fragments where they do not divide evenly), fragments"
            " (workers read their Parquet row groups) or dataset (Ray Data shards)",
            choices=INGEST,
        ),
        "storage_path": Param(
            None, "str", "where Ray Train keeps checkpoints (a shared path on a real cluster)", nullable=True
        ),
        "placement_group_cleaner": Param(False, "bool", "start Ray Train's detached PlacementGroupCleaner per fit"),
        "fail_at": Param(
            None, "mapping", "testing only: {at, flag} kills training worker 0 once at that step", nullable=True
        ),
    }

    def __init__(self, spec: Any, seed: int = 0) -> None:
        super().__init__(spec, seed)
        self._started = False
        self._local = False  # a fresh single-node instance this engine started (no autoscaler)
        self._cpus = 1
        self._node_cpus = 1
        self.last_fit: dict[str, Any] = {}  # the last training run's final report (rounds, resumed_from)
        self.last_tune: dict[str, Any] | None = None  # set by Ray Tune (scheduler, trials, concurrency)

    # --- the runtime ---

    def on_start(self) -> None:
        """Start a fresh local Ray instance, or join ``engine.address``."""
        # Ray Train polls its workers every 2 s by default, and each report waits for a poll.
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
        os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        # Read by Ray Train's controller (propagated from the driver): see FailureConfig in fit.
        os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = str(float(self.options["resources_timeout"]))
        import ray

        common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if ray.is_initialized():
            pass  # a driver started by `ray job submit` (jobs/ray_train.py) already joined its cluster
        elif self.spec.address:
            from pipelines.engines.ray.address import check_address

            check_address(self.spec.address)
            try:
                ray.init(address=self.spec.address, **common)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                why = first_line(exc, last=True)
                raise EngineError(f"engine.address: cannot join the Ray cluster at {self.spec.address}: {why}") from exc
            self._started = True
        else:
            cpus = int(self.options["num_cpus"] or os.cpu_count() or 1)
            from pipelines.engines.ray.internals import loopback_only

            with loopback_only():
                ray.init(
                    address="local",
                    num_cpus=cpus,
                    object_store_memory=int(self.options["object_store_mb"]) * 2**20,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    _temp_dir=LOCAL_TEMP_DIR,
                    **common,
                )
            self._started = self._local = True
        import ray.data

        for logger in ("ray", "ray.data", "ray.train"):
            logging.getLogger(logger).setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # A worker's CPUs must fit on one node, or its placement group waits forever.
        node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        self._node_cpus = max(1, int(max(node_cpus, default=1)))

    def on_shutdown(self) -> None:
        """Shut down the Ray instance this engine started or joined."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = self._local = False

    def preload(self, model: str) -> None:
        """Import Ray Data, Ray Train and xgboost."""
        import ray.data
        import ray.train  # noqa: F401
        import xgboost  # noqa: F401
        from ray.train.xgboost import XGBoostTrainer  # noqa: F401

    def describe(self) -> dict[str, Any]:
        """Return the address, CPUs, training workers and Ray's version."""
        import ray

        return {
            "engine": self.name,
            "address": self.spec.address or "local",
            "cpus": self._cpus,
            "workers": self.workers,
            "ingest": self.options["ingest"],
            "ray": ray.__version__,
            "last_fit": self.last_fit,
        } | ({"tune": self.last_tune} if self.last_tune else {})

    @property
    def workers(self) -> int:
        """Return the number of Ray Train workers: ``engine.workers``, default one."""
        return int(self.spec.workers or 1)

    @property
    def cpus(self) -> int:
        """Return the CPUs of the Ray cluster this engine runs on."""
        return self._cpus

    def cpus_per_worker(self) -> float:
        """Return the CPUs each training worker asks for, or refuse workers that cannot fit."""
        workers = self.workers
        # Ray Data ingest needs a CPU of its own next to the training workers.
        spare = self._cpus - (1 if self.options["ingest"] == "dataset" else 0)
        per_worker = float(self.options["cpus_per_worker"] or max(1, min(spare // workers, self._node_cpus)))
        if workers * per_worker > self._cpus or per_worker > self._node_cpus:
            raise ConfigError(
                f"config error: engine.workers: {workers} workers x {per_worker:g} CPUs do not fit the Ray cluster"
                f" ({self._cpus} CPUs, at most {self._node_cpus} on one node)"
            )
        return per_worker

    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        """Return ``fn()``; a task's scaleclf error surfaces as itself, anything else as one EngineError line.

        SIGINT and SIGTERM end ``fn`` as :class:`pipelines.interrupts.Interrupted`: ``ray.get``
        stops waiting only for a ``KeyboardInterrupt`` (``native_waits``).
        """
        from pipelines.interrupts import native_waits

        try:
            with native_waits():
                return fn()
        except Exception as exc:  # Ray wraps task errors (their text holds the remote traceback)
            cause = _cause(exc)
            if isinstance(cause, ScaleclfError):
                raise cause from None
            raise EngineError(f"ray: {what} failed: {first_line(cause, last=True)}") from exc

    # --- data ---

    def load(self, plan: DataPlan) -> RayData:
        """Read the plan's rows into a few blocks in the object store, profiling them in the same pass.

        One task per run of consecutive source pieces (at most one per CPU) reads, keys, splits and
        profiles its rows with the shared reader; only the profiles come back to the driver.
        """
        import ray

        pending: list[tuple[Any, Any]] = []
        source_blocks = 0
        load = tasks.remote(tasks.load_block, 2)
        for source, is_test in ((plan.source, False), (plan.test_source, True)):
            if source is None:
                continue
            for run in contiguous_units(source_units(source), self._cpus):
                pending.append(load.remote(plan, run, is_test))
            if not is_test:
                source_blocks = len(pending)
        profiles = self._run(f"reading {plan.source.text}", lambda: ray.get([p for p, _ in pending]))
        profile = reduce(DataProfile.merge, profiles, DataProfile())
        if sum(profile.rows.values()) == 0:
            raise DataError(f"data.source: {plan.source.text} has no rows")
        return RayData(plan, [block for _, block in pending], profile, source_blocks)

    def profile(self, data: RayData, plan: DataPlan) -> DataProfile:
        """Return the profile computed while loading (the merge of one profile per block)."""
        return data.profile

    def _per_block(self, what: str, fn: Callable[..., Any], data: RayData, *args: Any) -> list[Any]:
        """Run ``fn(block, *args)`` as one task per block; return the results in block order."""
        import ray

        refs = [ray.put(a) if isinstance(a, (FitContext, EngineModel)) else a for a in args]
        task = tasks.remote(fn)
        return self._run(what, lambda: ray.get([task.remote(block, *refs) for block in data.blocks]))

    def sample_rows(self, data: RayData, split: str, n: int, seed: int) -> pa.Table:
        """Return the ``n`` rows of ``split`` with the smallest landmark priority (n per block, then n overall)."""
        code = SPLIT_NAMES.index(split)
        table = pa.concat_tables(self._per_block(f"sampling {split} rows", tasks.landmarks, data, code, n, seed))
        order = np.argsort(np.asarray(table.column("__priority").to_numpy()), kind="stable")[:n]
        return table.take(pa.array(order)).drop_columns(["__priority"])

    def keys_found(self, data: RayData, keys: np.ndarray, split: str) -> np.ndarray:
        """Return the keys of ``keys`` that rows of ``split`` have (one task per block)."""
        found = self._per_block("looking up test rows", keys_in, data, keys, SPLIT_NAMES.index(split))
        return np.unique(np.concatenate([np.empty(0, np.uint64), *found]))

    # --- fit ---

    def fit(self, data: RayData, ctx: FitContext) -> EngineModel:
        """Return the model fitted on the train split by Ray Train (Ray tasks for naive Bayes and CART)."""
        import ray

        name, k = ctx.model.name, ctx.task.n_classes
        if name == "naive_bayes":
            parts = self._per_block("naive Bayes", tasks.block_moments, data, ctx)
            return fit_naive_bayes(parts, numpy_settings(name, ctx.params)["var_smoothing"])
        if name == "decision_tree":  # exact CART in one task that receives every block (pipelines.models.cart)
            ctx_ref = ray.put(ctx)
            fit = tasks.remote(tasks.fit_cart_task)
            return self._run("training decision_tree", lambda: ray.get(fit.remote(ctx_ref, *data.blocks)))
        from pipelines.engines.ray import train_loops

        if self.LIBRARY[name] == XGBOOST:
            params, rounds = xgboost_params(name, ctx.params, ctx.problem)
            files = self._train(train_loops.xgboost_loop, data, ctx, {"params": params, "rounds": rounds}, xgboost=True)
            config = files["config.json"].decode()
            return BoosterModel(files["model.json"], k, config, _curve("boosting round", self.last_fit))
        settings = numpy_settings(name, ctx.params)
        loop = train_loops.mlp_loop if name == "mlp" else train_loops.linear_loop
        files = self._train(loop, data, ctx, {"settings": settings}, xgboost=False)
        hidden = settings.get("hidden_layer_sizes", [])
        like = init_params(layer_sizes(ctx.n_inputs, hidden, k))
        if name == "mlp":
            import io

            saved = np.load(io.BytesIO(files["mlp.npz"]))
            weights = [saved[f"p{i}"] for i in range(len(like))]
        else:
            weights = unflatten(np.frombuffer(files["weights.npy"], dtype=np.float64).copy(), like)
        axis = "epoch" if name == "mlp" else "L-BFGS iteration"
        steps = {"iterations": self.last_fit.get("iteration", self.last_fit.get("epoch"))}
        return NetworkModel(weights, settings["loss"], k, settings | steps, _curve(axis, self.last_fit))

    def _train(
        self,
        loop: Callable[[dict[str, Any]], None],
        data: RayData,
        ctx: FitContext,
        extra: dict[str, Any],
        xgboost: bool,
    ) -> dict[str, bytes]:
        """Run ``loop`` on Ray Train workers; return the files of the last checkpoint."""
        import ray
        import ray.train
        from ray.train import CheckpointConfig, RunConfig, ScalingConfig
        from ray.train.v2.api.config import FailureConfig  # ray.train.FailureConfig under Train v2

        from pipelines.engines.ray.train_loops import AllReduce

        workers = self.workers
        ingest = ingest_mode(self.options["ingest"], data.source_blocks, workers)
        per_worker = self.cpus_per_worker()
        cfg: dict[str, Any] = {
            "ctx": ctx,
            "plan": data.plan,
            "ingest": ingest,
            "units": balanced_units(source_units(data.plan.source), workers) if ingest == "fragments" else None,
            "blocks": [data.blocks[rank : data.source_blocks : workers] for rank in range(workers)]
            if ingest == "blocks"
            else None,
            "threads": max(1, int(per_worker)),
            "every": int(self.options["checkpoint_every"]),
            "blocks_timeout": float(self.options["resources_timeout"]),
            "fail_at": self.options["fail_at"],
            **extra,
        }
        reducer: Any = None
        if not xgboost and workers > 1:
            reducer = ray.remote(num_cpus=0)(AllReduce).remote(workers)
        cfg["reducer"] = reducer
        storage = self.options["storage_path"] or tempfile.mkdtemp(prefix="scaleclf-ray-train-")
        run_config = RunConfig(
            name=f"scaleclf-{ctx.model.name}-{uuid.uuid4().hex[:8]}",
            storage_path=storage,
            # Ray's default retries a worker group that cannot get its CPUs forever (a lost host
            # with no replacement hung the run): at most max_failures waits of resources_timeout.
            failure_config=FailureConfig(
                max_failures=int(self.options["max_failures"]),
                controller_failure_limit=int(self.options["max_failures"]),
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        )
        scaling = ScalingConfig(num_workers=workers, resources_per_worker={"CPU": per_worker})
        datasets = {"train": data.rows("train")} if ingest == "dataset" else None
        try:
            if xgboost:
                from ray.train.xgboost import XGBoostTrainer

                trainer: Any = self._trainer_class(XGBoostTrainer)(
                    loop,
                    train_loop_config=cfg,
                    scaling_config=scaling,
                    run_config=run_config,
                    datasets=datasets,
                    **single_worker_backend(workers),
                )
            else:
                from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

                trainer = self._trainer_class(DataParallelTrainer)(
                    loop, train_loop_config=cfg, scaling_config=scaling, run_config=run_config, datasets=datasets
                )
            called = time.time()
            result = self._run(f"training {ctx.model.name}", trainer.fit)
            returned = time.time()
            self.last_fit = dict(result.metrics or {}) | {"ingest": ingest}
            # Ray Train's own time: before the workers' loop started and after it ended (one clock
            # on one machine; across machines it includes their clock skew).
            started, ended = self.last_fit.pop("loop_started", None), self.last_fit.pop("loop_ended", None)
            if started is not None and ended is not None:
                self.last_fit["train_startup_s"] = round(started - called, 3)
                self.last_fit["train_teardown_s"] = round(returned - ended, 3)
            if result.checkpoint is None:
                raise EngineError(f"ray: training {ctx.model.name} ended without a checkpoint")
            with result.checkpoint.as_directory() as directory:
                return {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}
        finally:
            if reducer is not None:
                ray.kill(reducer)
            if not self.options["storage_path"]:
                shutil.rmtree(storage, ignore_errors=True)

    def _trainer_class(self, base: type) -> type:
        """Return ``base`` trimmed of what this run does not need (see ``lean``)."""
        from pipelines.engines.ray.internals import lean_trainer

        return lean_trainer(
            base, placement_group_cleaner=bool(self.options["placement_group_cleaner"]), local=self._local
        )

    # --- predict ---

    def predict(self, model: EngineModel, data: RayData, ctx: FitContext, split: str) -> Iterator[pa.RecordBatch]:
        """Yield prediction batches computed where each block is.

        Blocks on this process's node are predicted here, zero-copy from the object store, one
        thread each: a fresh Ray worker would spend seconds starting and importing xgboost
        (Ray Train's actors take the idle workers that read the data). Blocks on other nodes
        are predicted by one task each on their node.
        """
        tables = self._run(f"predicting the {split} split", lambda: self._predict_blocks(model, data, ctx, split))
        for table in tables:
            yield from table.to_batches()

    def _predict_blocks(self, model: EngineModel, data: RayData, ctx: FitContext, split: str) -> list[pa.Table]:
        import ray

        from pipelines.engines.ray.internals import object_nodes

        code = SPLIT_NAMES.index(split)
        here = ray.get_runtime_context().get_node_id()
        local = [not nodes or here in nodes for nodes in object_nodes(data.blocks)]
        remote: dict[int, Any] = {}
        if not all(local):
            model_ref, ctx_ref = ray.put(model), ray.put(ctx)
            task = tasks.remote(tasks.predict_split)
            remote = {
                i: task.remote(block, model_ref, ctx_ref, code) for i, block in enumerate(data.blocks) if not local[i]
            }
        mine = [i for i, is_local in enumerate(local) if is_local]
        done: dict[int, pa.Table] = {}
        if mine:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=len(mine)) as pool:
                tables = pool.map(lambda i: tasks.predict_split(ray.get(data.blocks[i]), model, ctx, code), mine)
                done = dict(zip(mine, tables, strict=True))
        done |= dict(zip(remote, ray.get(list(remote.values())), strict=True))
        return [done[i] for i in range(len(data.blocks))]

    def tune(
        self,
        data: Any,
        ctx: FitContext,
        tuning: Any,
        score: Callable[[EngineModel, FitContext], dict[str, Any]],
        on_trial: Callable[[Any], None] | None = None,
    ) -> tuple[EngineModel, FitContext, list[Any]] | None:
        """Schedule the shared trials with Ray Tune (ASHA); see ``pipelines.engines.ray.tune``."""
        from pipelines.engines.ray.tune import tune_on_ray

        return tune_on_ray(self, data, ctx, tuning, score, on_trial)


def _curve(axis: str, report: dict[str, Any]) -> dict[str, Any] | None:
    """Return the learning curve a training loop reported (train loss per step), if any."""
    values = report.pop("curve", None)
    return {"axis": axis, "train": [float(v) for v in values]} if values else None


def ingest_mode(setting: str, blocks: int, workers: int) -> str:
    """Return how training workers get their rows: ``blocks`` only where the blocks divide evenly.

    The loaded blocks are runs of consecutive row groups with similar row counts; a worker that
    takes its share of them from the object store skips the second Parquet decode (~1 s of a
    worker's start at 1M rows). Where they do not divide evenly among the workers, reading
    row groups balances rows better.
    """
    if setting == "blocks" and (blocks < workers or blocks % workers):
        return "fragments"
    return setting


def single_worker_backend(workers: int) -> dict[str, Any]:
    """Return XGBoostTrainer's ``xgboost_config`` for one worker: Ray Train's plain BackendConfig.

    XGBoostConfig starts a Rabit tracker in the Train controller, which makes the controller import
    xgboost (and, through it, scikit-learn): ~2.5 s on the critical path before any worker starts.
    One worker has no peer to talk to (its collective context is a no-op), so it needs neither.
    """
    if workers != 1:
        return {}
    from ray.train.backend import BackendConfig

    return {"xgboost_config": BackendConfig()}
