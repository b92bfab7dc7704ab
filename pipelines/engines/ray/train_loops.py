"""Training loops that run on Ray Train workers: distributed xgboost and NumPy data parallelism.

Each worker takes its share of the train rows (loaded blocks from the object store, its own
Parquet row groups through the shared reader, or a Ray Data shard), so no training data passes
through the driver. The maths are the model layer's: xgboost's booster parameters come from
``pipelines.models.native``; linear models run ``pipelines.models.network.fit_lbfgs`` on sums
added up across workers, and the MLP takes synchronous data-parallel Adam steps. Replicas of the
weights stay identical on every worker; gradients are summed through a small all-reduce actor
(Ray Train on CPU has no collective all-reduce without torch); with one worker it is skipped.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.reader import read_units
from pipelines.data.split import SPLIT_COLUMN, TRAIN
from pipelines.engines.base import FitContext
from pipelines.models.network import (
    Adam,
    fit_lbfgs,
    flatten,
    init_params,
    layer_sizes,
    loss_and_grad,
    unflatten,
)


def worker_matrix(cfg: dict[str, Any], rank: int, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return this worker's features, class indices and sample weights."""
    ctx: FitContext = cfg["ctx"]
    if cfg["ingest"] == "dataset":
        import ray.train

        shard = ray.train.get_dataset_shard("train")
        table = pa.concat_tables(list(shard.iter_batches(batch_format="pyarrow", batch_size=None)))
    elif cfg["ingest"] == "blocks":
        import ray

        train = pa.scalar(TRAIN, pa.int8())
        # Zero-copy where the block is on this node. A block lost with its node is rebuilt by its
        # load task, which needs a CPU outside this worker group's: bounded, so that a group that
        # holds every CPU fails and restarts (freeing them) instead of waiting forever.
        wait = cfg.get("blocks_timeout")
        try:
            blocks = ray.get(list(cfg["blocks"][rank]), timeout=wait)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(f"training worker {rank}: its data blocks were not available within {wait:g}s") from None
        table = pa.concat_tables(
            [b.filter(pc.equal(b.column(SPLIT_COLUMN), train)) for b in blocks], promote_options="permissive"
        )
    else:
        table = read_units(cfg["plan"], cfg["units"][rank], split=TRAIN)
    x = ctx.features(table, dtype=dtype)
    y = ctx.labels(table)
    keep = y >= 0
    x, y = x[keep], y[keep]
    w = ctx.class_weights[y] if ctx.class_weights is not None else np.ones(len(y))
    return x, y, w


# --- checkpoints shared by every loop ---


def report(metrics: dict[str, Any], files: dict[str, bytes] | None) -> None:
    """Report metrics from every worker; rank 0 attaches a checkpoint holding ``files``."""
    import ray.train

    if files is None or ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="scaleclf-ckpt-") as tmp:
        for name, data in files.items():
            Path(tmp, name).write_bytes(data)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def restored(name: str) -> bytes | None:
    """Return file ``name`` of the checkpoint this attempt resumes from (None on a fresh start)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return Path(directory, name).read_bytes()


def maybe_fail(cfg: dict[str, Any], progress: int) -> None:
    """SIGKILL this worker process once, at ``progress``, when asked to (the fault-tolerance test)."""
    marker = cfg.get("fail_at")
    if marker and progress == marker["at"] and not os.path.exists(marker["flag"]):
        import signal

        import ray.train

        if ray.train.get_context().get_world_rank() == marker.get("rank", 0):
            Path(marker["flag"]).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


# --- xgboost ---


def import_xgboost_alone() -> Any:
    """Return the xgboost module, imported without scikit-learn when neither is loaded yet.

    ``import xgboost`` imports scikit-learn for its estimator wrappers (1.5 of its 1.9 s on this
    machine), on a Train worker's critical path before its first boosting round. The loop uses
    only ``xgboost.train`` / ``QuantileDMatrix`` / ``Booster``, and a Train worker is a process of
    its own, so there xgboost is imported as if scikit-learn were absent. In a process that has
    either module already (the driver, a test), this is a plain import.
    """
    import sys

    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        import xgboost

        return xgboost
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # makes `import sklearn...` raise ImportError
    try:
        import xgboost
    finally:
        del sys.modules["sklearn"]
    return xgboost


def xgboost_loop(cfg: dict[str, Any]) -> None:
    """Train ``cfg['rounds']`` boosting rounds, checkpointing every ``cfg['every']`` rounds."""
    import ray.train

    xgboost = import_xgboost_alone()
    started, wall = time.perf_counter(), time.time()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    x, y, w = worker_matrix(cfg, rank, np.float32)
    read_s = time.perf_counter() - started
    params = dict(cfg["params"], nthread=cfg["threads"])
    dtrain = xgboost.QuantileDMatrix(x, y, weight=w, max_bin=params.get("max_bin", 256))
    del x
    matrix_s = time.perf_counter() - started - read_s
    previous = restored("model.json")
    booster = xgboost.Booster(model_file=bytearray(previous)) if previous else None
    done = booster.num_boosted_rounds() if booster is not None else 0
    rounds, every = cfg["rounds"], cfg["every"]

    base: Any = xgboost.callback.TrainingCallback

    class Checkpoints(base):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            n = epoch + 1
            if every and n % every == 0 and n < rounds:
                report({"round": n}, {"model.json": bytes(model.save_raw("json"))})
            maybe_fail(cfg, n)
            return False

    booster = xgboost.train(params, dtrain, rounds - done, xgb_model=booster, callbacks=[Checkpoints()])
    # Where a worker's time went (engine_info.last_fit): the rest of fit_s is Ray Train's own.
    phases = {"read_s": read_s, "matrix_s": matrix_s, "train_s": time.perf_counter() - started - read_s - matrix_s}
    report(
        {"round": rounds, "resumed_from": done, "loop_started": wall, "loop_ended": time.time()}
        | {k: round(v, 3) for k, v in phases.items()},
        {"model.json": bytes(booster.save_raw("json")), "config.json": booster.save_config().encode()},
    )


# --- numpy data parallelism ---


class AllReduce:
    """Adds up one array per worker and hands every worker the same sum (in rank order)."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.generation = 0
        self.joined: set[int] = set()
        self.parts: dict[tuple[int, int], dict[int, np.ndarray]] = {}
        self.ready: dict[tuple[int, int], asyncio.Event] = {}
        self.sums: dict[tuple[int, int], np.ndarray] = {}
        self.taken: dict[tuple[int, int], int] = {}

    def join(self, rank: int) -> int:
        """Return the generation a (re)started worker group uses; a restart starts a new one."""
        if rank in self.joined:
            self.generation += 1
            self.joined = set()
            self.parts, self.ready, self.sums, self.taken = {}, {}, {}, {}
        self.joined.add(rank)
        return self.generation

    async def reduce(self, generation: int, step: int, rank: int, value: np.ndarray) -> np.ndarray:
        """Return the sum over workers of ``value`` for this step."""
        key = (generation, step)
        event = self.ready.setdefault(key, asyncio.Event())
        parts = self.parts.setdefault(key, {})
        parts[rank] = value
        if len(parts) == self.world:
            self.sums[key] = np.sum([parts[r] for r in sorted(parts)], axis=0)
            event.set()
        await event.wait()
        out = self.sums[key]
        self.taken[key] = self.taken.get(key, 0) + 1
        if self.taken[key] == self.world:
            for store in (self.parts, self.ready, self.sums, self.taken):
                store.pop(key, None)
        return out


class Reducer:
    """A worker's view of the all-reduce: numbered steps, skipped entirely for one worker."""

    def __init__(self, actor: Any, rank: int) -> None:
        import ray

        self.actor, self.rank, self.step = actor, rank, 0
        self.generation = ray.get(actor.join.remote(rank)) if actor is not None else 0

    def sum(self, value: np.ndarray) -> np.ndarray:
        """Return the sum of ``value`` over all workers."""
        import ray

        if self.actor is None:
            return value
        self.step += 1
        return ray.get(self.actor.reduce.remote(self.generation, self.step, self.rank, value))


def linear_loop(cfg: dict[str, Any]) -> None:
    """Fit a linear model by full-batch L-BFGS on the loss summed over workers, replicas in lock step."""
    import ray.train

    ctx: FitContext = cfg["ctx"]
    settings = cfg["settings"]
    rank = ray.train.get_context().get_world_rank()
    x, y, sw = worker_matrix(cfg, rank)
    reducer = Reducer(cfg["reducer"], rank)
    k = ctx.task.n_classes
    previous = restored("weights.npy")
    start = np.frombuffer(previous, dtype=np.float64).copy() if previous else None
    like = init_params(layer_sizes(x.shape[1], (), k))
    evaluations = 0

    def totals(params: list[np.ndarray]) -> tuple[float, list[np.ndarray], float]:
        nonlocal evaluations
        loss, grads = loss_and_grad(params, x, y, sw, settings["loss"], k)
        total = reducer.sum(np.concatenate([[loss, float(sw.sum())], flatten(grads)]))
        evaluations += 1
        maybe_fail(cfg, evaluations)
        return float(total[0]), unflatten(total[2:], like), float(total[1])

    done = 0

    def checkpoint(flat: np.ndarray) -> None:
        nonlocal done
        done += 1
        if cfg["every"] and done % cfg["every"] == 0:
            report({"iteration": done}, {"weights.npy": np.asarray(flat, dtype=np.float64).tobytes()})

    params, steps, curve = fit_lbfgs(totals, x.shape[1], k, settings, start=start, callback=checkpoint)
    report(
        {"iteration": steps, "resumed_from": int(previous is not None), "curve": curve},
        {"weights.npy": flatten(params).astype(np.float64).tobytes()},
    )


def mlp_loop(cfg: dict[str, Any]) -> None:
    """Fit the MLP by synchronous data-parallel minibatch Adam (gradients summed each step).

    One RandomState draws the initial weights and then each epoch's shuffle, as MLPClassifier
    does, so a single worker replays scikit-learn's training.
    """
    import ray.train

    ctx: FitContext = cfg["ctx"]
    settings = cfg["settings"]
    rank = ray.train.get_context().get_world_rank()
    x, y, sw = worker_matrix(cfg, rank)
    reducer = Reducer(cfg["reducer"], rank)
    k = ctx.task.n_classes
    rs = np.random.RandomState(ctx.seed)
    params = init_params(layer_sizes(x.shape[1], settings["hidden_layer_sizes"], k), rs)
    n_total = int(reducer.sum(np.array([float(len(y))]))[0])
    batch = min(settings["batch_size"], n_total)
    steps = -(-n_total // batch)
    world = ray.train.get_context().get_world_size()
    local_batch = batch if world == 1 else -(-len(y) // steps)
    adam = Adam.start(params, settings["learning_rate_init"])
    alpha, epochs = settings["alpha"], settings["max_iter"]
    start_epoch, curve = 0, []
    previous = restored("mlp.npz")
    if previous:
        saved = np.load(io.BytesIO(previous))
        params = [saved[f"p{i}"] for i in range(len(params))]
        adam.m = [saved[f"m{i}"] for i in range(len(params))]
        adam.v = [saved[f"v{i}"] for i in range(len(params))]
        start_epoch, adam.t, curve = int(saved["epoch"]), int(saved["t"]), list(saved["curve"])
        for _ in range(start_epoch):  # replay the skipped epochs' shuffles
            rs.shuffle(np.arange(len(y)))
    for epoch in range(start_epoch, epochs):
        order = np.arange(len(y))
        rs.shuffle(order)
        epoch_loss = 0.0
        for s in range(steps):
            rows = order[s * local_batch : (s + 1) * local_batch]
            loss, grads = loss_and_grad(params, x[rows], y[rows], sw[rows], settings["loss"], k)
            total = reducer.sum(np.concatenate([[float(len(rows)), loss], flatten(grads)]))
            n_rows = max(total[0], 1.0)
            epoch_loss += total[1]
            summed = unflatten(total[2:], params)
            # scikit-learn: mean gradient of the batch, plus alpha * W / batch rows on the weights.
            grads = [
                g / n_rows + (alpha * p / n_rows if i % 2 == 0 else 0.0)
                for i, (g, p) in enumerate(zip(summed, params, strict=True))
            ]
            params = adam.step(params, grads)
        curve.append(epoch_loss / n_total)
        maybe_fail(cfg, epoch + 1)
        if cfg["every"] and (epoch + 1) % cfg["every"] == 0 and epoch + 1 < epochs:
            report({"epoch": epoch + 1}, {"mlp.npz": _mlp_state(params, adam, epoch + 1, curve)})
    report(
        {"epoch": epochs, "resumed_from": start_epoch, "curve": curve},
        {"mlp.npz": _mlp_state(params, adam, epochs, curve)},
    )


def _mlp_state(params: list[np.ndarray], adam: Adam, epoch: int, curve: list[float]) -> bytes:
    buf = io.BytesIO()
    arrays: dict[str, Any] = {"epoch": np.array(epoch), "t": np.array(adam.t), "curve": np.asarray(curve)}
    arrays |= {f"p{i}": a for i, a in enumerate(params)}
    arrays |= {f"m{i}": a for i, a in enumerate(adam.m)} | {f"v{i}": a for i, a in enumerate(adam.v)}
    np.savez(buf, **arrays)
    return buf.getvalue()
