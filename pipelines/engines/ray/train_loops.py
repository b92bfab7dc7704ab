"""Training loops that run on Ray Train workers: distributed xgboost and numpy data parallelism.

Each worker reads its own share of the train rows straight from the Parquet row groups
(or CSV files) the driver assigned it, so no training data passes through the driver or
the object store. Linear models and the MLP keep identical replicas of the weights on
every worker and add their gradients up through a small all-reduce actor (Ray Train on
CPU has no collective all-reduce without torch); with one worker the actor is skipped.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.schema import DataPlan
from pipelines.data.sources import Source
from pipelines.data.split import SPLIT_COLUMN, TRAIN
from pipelines.engines.base import FitContext
from pipelines.engines.ray.models import (
    linear_loss_grad,
    linear_penalty,
    linear_shape,
    mlp_init,
    mlp_loss_grad,
)


@dataclass(frozen=True)
class Unit:
    """One piece of the train source a worker reads: a file, some row groups, a slice of them."""

    path: str
    row_groups: tuple[int, ...] | None  # None = the whole file (CSV)
    part: int = 0
    parts: int = 1
    rows: int = 0


def source_units(source: Source) -> list[Unit]:
    """Return the pieces of ``source`` in file order: one per Parquet row group, one per CSV file."""
    import pyarrow.parquet as pq

    units: list[Unit] = []
    for path in source.paths:
        local = path if source.is_local else path.split("://", 1)[1]
        if source.format == "parquet":
            meta = pq.ParquetFile(local, filesystem=source.filesystem).metadata
            units += [Unit(path, (g,), rows=meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        else:
            units.append(Unit(path, None, rows=1))
    return units


def plan_units(plan: DataPlan, workers: int) -> list[list[Unit]]:
    """Return, per worker, the pieces of ``plan.source`` it reads (balanced by row count)."""
    source = plan.source
    units = source_units(source)
    if len(units) < workers:  # too few pieces: every worker reads a slice of each one
        units = [Unit(u.path, u.row_groups, p, workers, u.rows // workers) for u in units for p in range(workers)]
    shares: list[list[Unit]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for unit in sorted(units, key=lambda u: -u.rows):
        i = loads.index(min(loads))
        shares[i].append(unit)
        loads[i] += unit.rows
    return [sorted(share, key=lambda u: (source.paths.index(u.path), u.row_groups or (), u.part)) for share in shares]


def contiguous_units(units: list[Unit], parts: int) -> list[list[Unit]]:
    """Return ``units`` cut into at most ``parts`` runs of consecutive pieces with similar row counts."""
    total = sum(u.rows for u in units) or 1
    runs: list[list[Unit]] = [[] for _ in range(max(1, min(parts, len(units))))]
    seen = 0
    for unit in units:
        runs[min(len(runs) - 1, seen * len(runs) // total)].append(unit)
        seen += unit.rows
    return [run for run in runs if run]


def read_units(
    plan: DataPlan,
    units: list[Unit],
    source: Source | None = None,
    is_test_source: bool = False,
    split: int | None = TRAIN,
) -> pa.Table:
    """Return the rows of ``units`` (of ``source``, default the plan's) with row key and split attached.

    ``split`` keeps one split's rows (default train); None keeps every row.
    """
    import pyarrow.parquet as pq

    from pipelines.data.sources import open_dataset

    source = source or plan.source
    tables = []
    for u in units:
        if u.row_groups is None:
            one = Source(source.text, (u.path,), source.format, source.filesystem)
            table = open_dataset(one).to_table(columns=plan.columns)
        else:
            local = u.path if source.is_local else u.path.split("://", 1)[1]
            table = pq.ParquetFile(local, filesystem=source.filesystem).read_row_groups(
                list(u.row_groups), columns=plan.columns
            )
        if u.parts > 1:
            step = -(-table.num_rows // u.parts)
            table = table.slice(u.part * step, step)
        table = plan.attach(table, is_test_source=is_test_source)
        if split is not None:
            table = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(split, pa.int8())))
        tables.append(table)
    if not tables:
        return plan.attach(pa.table({c: pa.array([], pa.float64()) for c in plan.columns})).slice(0, 0)
    return pa.concat_tables(tables, promote_options="permissive")


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
        blocks = ray.get(list(cfg["blocks"][rank]))  # zero-copy where the block is on this node
        table = pa.concat_tables(
            [b.filter(pc.equal(b.column(SPLIT_COLUMN), train)) for b in blocks], promote_options="permissive"
        )
    else:
        table = read_units(cfg["plan"], cfg["units"][rank])
    x = ctx.preprocessor.transform(table, dtype=dtype)
    if ctx.feature_map is not None:
        x = ctx.feature_map.transform(x, dtype=dtype)
    y = ctx.task.encode(table.column(ctx.task.label))
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
        {"model.json": bytes(booster.save_raw("json"))},
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
    """Fit a linear model by full-batch L-BFGS on the summed loss, replicas in lock step."""
    import ray.train
    from scipy.optimize import minimize

    ctx: FitContext = cfg["ctx"]
    rank = ray.train.get_context().get_world_rank()
    x, y, sw = worker_matrix(cfg, rank)
    reducer = Reducer(cfg["reducer"], rank)
    name, p, k = ctx.model.name, ctx.params, ctx.task.n_classes
    shape = linear_shape(name, x.shape[1], k)
    previous = restored("weights.npy")
    w0 = np.frombuffer(previous, dtype=np.float64).copy() if previous else np.zeros(shape[0] * shape[1])
    c = float(p["C"])
    fit_intercept = bool(p.get("fit_intercept", True))
    evaluations = 0

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        if not fit_intercept:
            w = w.reshape(shape).copy()
            w[-1] = 0.0
            w = w.ravel()
        loss, grad = linear_loss_grad(name, w, x, y, sw, k)
        total = reducer.sum(np.concatenate([[loss], grad]))
        pen, pgrad = linear_penalty(name, w, x.shape[1], c)
        g = total[1:] + pgrad
        if not fit_intercept:
            g = g.reshape(shape)
            g[-1] = 0.0
            g = g.ravel()
        evaluations += 1
        maybe_fail(cfg, evaluations)
        return float(total[0]) + pen, g

    def checkpoint(w: np.ndarray) -> None:
        it = checkpoint.count = getattr(checkpoint, "count", 0) + 1  # type: ignore[attr-defined]
        if cfg["every"] and it % cfg["every"] == 0:
            report({"iteration": it}, {"weights.npy": np.asarray(w, dtype=np.float64).tobytes()})

    result = minimize(
        objective,
        w0,
        jac=True,
        method="L-BFGS-B",
        callback=checkpoint,
        options={"maxiter": int(p["max_iter"]), "gtol": float(p["tol"]), "maxfun": 15000},
    )
    report(
        {"iteration": int(result.nit), "resumed_from": getattr(checkpoint, "count", 0) if previous else 0},
        {"weights.npy": result.x.astype(np.float64).tobytes()},
    )


def mlp_loop(cfg: dict[str, Any]) -> None:
    """Fit the MLP by synchronous data-parallel minibatch Adam (gradients summed each step)."""
    import ray.train

    ctx: FitContext = cfg["ctx"]
    rank = ray.train.get_context().get_world_rank()
    x, y, sw = worker_matrix(cfg, rank)
    reducer = Reducer(cfg["reducer"], rank)
    p, k = ctx.params, ctx.task.n_classes
    sizes = [x.shape[1], *p["hidden_layer_sizes"], 1 if k == 2 else k]
    # One RandomState for the initial weights then each epoch's shuffle, as MLPClassifier does,
    # so a single worker replays scikit-learn's training exactly.
    rs = np.random.RandomState(ctx.seed)
    params = mlp_init(sizes, rs)
    flat_sizes = [a.size for a in params]
    n_total = int(reducer.sum(np.array([float(len(y))]))[0])
    batch = min(int(p["batch_size"]), n_total)
    steps = -(-n_total // batch)
    world = ray.train.get_context().get_world_size()
    local_batch = batch if world == 1 else -(-len(y) // steps)
    m = [np.zeros_like(a) for a in params]
    v = [np.zeros_like(a) for a in params]
    b1, b2, eps, lr, alpha = 0.9, 0.999, 1e-8, float(p["learning_rate_init"]), float(p["alpha"])
    start_epoch, t = 0, 0
    previous = restored("mlp.npz")
    if previous:
        import io

        saved = np.load(io.BytesIO(previous))
        params = [saved[f"p{i}"] for i in range(len(params))]
        m = [saved[f"m{i}"] for i in range(len(params))]
        v = [saved[f"v{i}"] for i in range(len(params))]
        start_epoch, t = int(saved["epoch"]), int(saved["t"])
        for _ in range(start_epoch):  # replay the skipped epochs' shuffles
            rs.shuffle(np.arange(len(y)))
    for epoch in range(start_epoch, int(p["max_iter"])):
        order = np.arange(len(y))
        rs.shuffle(order)
        for s in range(steps):
            rows = order[s * local_batch : (s + 1) * local_batch]
            loss, grads = mlp_loss_grad(params, x[rows], y[rows], sw[rows], k)
            flat = np.concatenate([[float(len(rows)), loss], *(g.ravel() for g in grads)])
            total = reducer.sum(flat)
            n_rows = max(total[0], 1.0)
            offset = 2
            t += 1
            for i, a in enumerate(params):
                g = total[offset : offset + flat_sizes[i]].reshape(a.shape) / n_rows
                offset += flat_sizes[i]
                if i % 2 == 0:
                    g = g + alpha * a / n_rows
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                step = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
                params[i] = a - step * m[i] / (np.sqrt(v[i]) + eps)
        maybe_fail(cfg, epoch + 1)
        if cfg["every"] and (epoch + 1) % cfg["every"] == 0 and epoch + 1 < int(p["max_iter"]):
            report({"epoch": epoch + 1}, {"mlp.npz": _mlp_state(params, m, v, epoch + 1, t)})
    state = _mlp_state(params, m, v, int(p["max_iter"]), t)
    report({"epoch": int(p["max_iter"]), "resumed_from": start_epoch}, {"mlp.npz": state})


def _mlp_state(params: list[np.ndarray], m: list[np.ndarray], v: list[np.ndarray], epoch: int, t: int) -> bytes:
    import io

    buf = io.BytesIO()
    arrays: dict[str, Any] = {"epoch": np.array(epoch), "t": np.array(t)}
    arrays |= {f"p{i}": a for i, a in enumerate(params)}
    arrays |= {f"m{i}": a for i, a in enumerate(m)} | {f"v{i}": a for i, a in enumerate(v)}
    np.savez(buf, **arrays)
    return buf.getvalue()
