"""Batched execution (``federated.execution: batched``): the clients of a round trained together in NumPy.

The Flower path gives every client a ClientApp run in a Ray actor and a message per round, so
1000 clients pay 1000 start-ups, file loads and message round trips for a few milliseconds of
arithmetic each. Here the rows are partitioned in one pass, transformed once and kept in memory
between rounds; each local Adam step runs for a whole chunk of clients at once as stacked
matrix products (a leading client axis), and FedAvg is one weighted sum over that axis.

The arithmetic is the Flower client's (``federated.models.train_local``): the same per-client
seed, the same row order within each epoch, the same Adam, L2 and FedProx terms, so the global
model equals the Flower path's to rounding (tests/federated/test_batched.py). What it does not
do is refused up front: other strategies, xgboost, secure aggregation and differential privacy.
Client sampling (``fraction_train`` < 1, ``fraction_evaluate``) is drawn from the job's seed
where Flower draws it unseeded.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from federated.models import NETWORK_MODELS, NetSpec
from federated.partition import ClientData, Federation, assign_clients, federation_of
from pipelines.data.schema import DataPlan
from pipelines.data.split import SPLIT_COLUMN, TEST, TRAIN, VALID
from pipelines.errors import ConfigError, DataError
from pipelines.models import network
from pipelines.progress import Progress
from pipelines.spec import FederatedSpec, JobSpec

if TYPE_CHECKING:
    from federated.preprocess import GivenPreprocessing
    from federated.server_app import History
    from federated.simulation import FederatedJob

STRATEGIES = ("fedavg", "fedprox")
# Memory of one chunk of clients trained together (parameters, Adam moments, gathered batch).
CHUNK_BYTES = 256 * 2**20


def check_batched(spec: JobSpec) -> None:
    """Raise a one-line ConfigError when batched execution cannot run the spec as the Flower path would."""
    fed = spec.federated
    if fed is None:
        return  # prepare_job names the missing section
    if spec.model.name not in NETWORK_MODELS:
        raise ConfigError(
            f"config error: model.name: federated.execution: batched trains {', '.join(NETWORK_MODELS)};"
            f" use flower for {spec.model.name}"
        )
    if fed.strategy not in STRATEGIES:
        raise ConfigError(
            f"config error: federated.strategy: federated.execution: batched runs {', '.join(STRATEGIES)};"
            f" use flower for {fed.strategy}"
        )
    if fed.privacy.secure_aggregation.enabled:
        raise ConfigError(
            "config error: federated.privacy.secure_aggregation.enabled: federated.execution: batched does not"
            " run secure aggregation; use flower"
        )
    if fed.privacy.dp != "none":
        raise ConfigError(
            f"config error: federated.privacy.dp: federated.execution: batched does not run differential privacy"
            f" ({fed.privacy.dp}); use flower"
        )


def federate_batched(spec: JobSpec, progress: Progress) -> Path:
    """Run a federated job with batched clients; return the completed run directory (as ``federate``)."""
    from federated.simulation import execute, prepare_job

    check_batched(spec)

    def prepare(spec: JobSpec, progress: Progress, workdir: Path) -> FederatedJob:
        return prepare_job(spec, progress, workdir, partition=partition_rows, client_files=False)

    return execute(spec, progress, run_batched_rounds, prepare)


# --- partitioning: one pass ------------------------------------------------------------------


def client_order(pool: pa.Table, label: str, fed: FederatedSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the pool's row indices client after client and each client's row count.

    IID is flwr-datasets' contiguous sharding (``Dataset.shard(n, i, contiguous=True)``) in
    closed form; the label- and size-skewed schemes ask the same partitioners as the Flower path,
    so both paths hold the same rows in the same order.
    """
    n = fed.clients
    if fed.partition.scheme == "iid":
        rows = pool.num_rows
        sizes = np.full(n, rows // n, dtype=np.int64)
        sizes[: rows % n] += 1
        return np.arange(rows, dtype=np.int64), sizes
    indices = assign_clients(pool, label, fed, seed)
    return np.concatenate(indices), np.array([len(i) for i in indices], dtype=np.int64)


def partition_rows(
    table: pa.Table, plan: DataPlan, fed: FederatedSpec, seed: int, given: GivenPreprocessing | None = None
) -> Federation:
    """Return the federation of ``table`` with one gather: each client's rows a zero-copy slice.

    Every client still profiles its own rows and the profiles are merged in client order
    (federated statistics), so the preprocessing is the Flower path's to the bit.
    """
    split = table.column(SPLIT_COLUMN)
    test = table.filter(pc.equal(split, pa.scalar(TEST, pa.int8())))
    pool = table.filter(pc.not_equal(split, pa.scalar(TEST, pa.int8())))
    if pool.num_rows < 2 * fed.clients:
        raise DataError(f"data.source: {pool.num_rows} train/valid rows cannot feed {fed.clients} clients")
    order, sizes = client_order(pool, plan.label, fed, seed)
    empty = np.flatnonzero(sizes == 0)
    if len(empty):
        raise DataError(f"federated.partition: client {int(empty[0])} received no rows; use fewer clients")
    rows = pool.take(pa.array(order)).combine_chunks()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    clients = [ClientData(i, rows.slice(int(lo), int(k))) for i, (lo, k) in enumerate(zip(starts, sizes, strict=True))]
    return federation_of(clients, test, plan, given)


# --- the clients' rows, kept between rounds --------------------------------------------------


@dataclass
class ClientRows:
    """One split of every client's rows, client after client, with a zero padding row at the end."""

    x: np.ndarray  # (rows + 1, features) float64: the features the Flower client reads from its file
    y: np.ndarray  # class index per row
    w: np.ndarray  # row weight (class weights); 0 on the padding row
    start: np.ndarray  # first row of each client
    count: np.ndarray  # rows of each client

    @property
    def pad(self) -> int:
        """Return the index of the padding row (zero features, zero weight)."""
        return len(self.y) - 1

    def rows_of(self, clients: np.ndarray) -> np.ndarray:
        """Return the row indices of ``clients``, client after client."""
        counts = self.count[clients]
        shift = np.repeat(self.start[clients] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        return np.arange(int(counts.sum())) + shift


def client_rows(job: FederatedJob, split: int) -> ClientRows:
    """Return every client's rows of ``split`` as the Flower client sees them (float32 features, as float64)."""
    federation, task = job.federation, job.ctx.task
    table = pa.concat_tables([c.table for c in federation.clients])
    owner = np.repeat(np.arange(len(federation.clients)), [c.table.num_rows for c in federation.clients])
    keep = np.flatnonzero(np.asarray(table.column(SPLIT_COLUMN).to_numpy()) == split)
    rows = table.take(pa.array(keep))
    y = task.encode(rows.column(task.label))
    weights = job.ctx.class_weights
    w = (weights[y] if weights is not None else np.ones(len(y))).astype(np.float32).astype(np.float64)
    x = job.ctx.preprocessor.transform(rows, dtype=np.float32).astype(np.float64)
    count = np.bincount(owner[keep], minlength=len(federation.clients))
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return ClientRows(np.vstack([x, np.zeros((1, x.shape[1]))]), np.append(y, 0), np.append(w, 0.0), start, count)


# --- local training of many clients at once --------------------------------------------------


def stacked_loss_and_grad(
    spec: NetSpec, params: list[np.ndarray], x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return each client's summed weighted loss and gradients; every array has a leading client axis.

    ``network.loss_and_grad`` with one more axis: ``x`` is (clients, rows, features).
    """
    acts = [x]
    h = x
    last = len(params) // 2 - 1
    for i in range(last + 1):
        h = np.matmul(h, params[2 * i]) + params[2 * i + 1][:, None, :]
        if i < last:
            h = np.maximum(h, 0.0)
            acts.append(h)
    clients, rows, width = h.shape
    per_row, dz = network.output_terms(spec.loss, h.reshape(-1, width), y.reshape(-1), spec.n_classes)
    loss = np.einsum("cr,cr->c", w, per_row.reshape(clients, rows))
    delta = dz.reshape(clients, rows, width) * w[:, :, None]
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    for i in range(last, -1, -1):
        grads[2 * i] = np.matmul(acts[i].transpose(0, 2, 1), delta)
        grads[2 * i + 1] = delta.sum(axis=1)
        if i:
            delta = np.matmul(delta, params[2 * i].transpose(0, 2, 1)) * (acts[i] > 0)
    return loss, grads


def _per_client(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Return ``values`` (one per client) shaped to broadcast against a stacked parameter ``like``."""
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


def client_seed(seed: int, client: int, server_round: int) -> int:
    """Return the seed of a client's row shuffles in a round (the Flower client's formula)."""
    return seed * 100_003 + client * 1_009 + server_round


def train_chunk(
    spec: NetSpec,
    start: list[np.ndarray],
    data: ClientRows,
    clients: np.ndarray,
    fed: FederatedSpec,
    seed: int,
    server_round: int,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Return the chunk's trained parameters (leading client axis) and each client's last-epoch loss.

    Step ``s`` of every client runs together: client ``c`` takes rows ``s*B..s*B+B`` of its own
    shuffled order, padded with the zero-weight row; clients whose epoch has ended sit out
    (their Adam step count does not advance), exactly as each would alone.
    """
    batch, lr, epochs = fed.batch_size, fed.learning_rate, fed.local_epochs
    mu = fed.proximal_mu if fed.strategy == "fedprox" else 0.0
    counts = data.count[clients]
    steps = -(-counts // batch)
    rngs = [np.random.default_rng(client_seed(seed, int(c), server_round)) for c in clients]
    params = [np.repeat(p[None].astype(np.float64), len(clients), axis=0) for p in start]
    moment1 = [np.zeros_like(p) for p in params]
    moment2 = [np.zeros_like(p) for p in params]
    t = np.zeros(len(clients), dtype=np.int64)
    loss = np.zeros(len(clients))
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for _ in range(epochs):
        width = int(steps.max()) * batch
        order = np.full((len(clients), max(width, 1)), data.pad, dtype=np.int64)
        for k, (rng, lo, n) in enumerate(zip(rngs, data.start[clients], counts, strict=True)):
            order[k, :n] = lo + rng.permutation(int(n))
        total = np.zeros(len(clients))
        for s in range(int(steps.max())):
            active = np.flatnonzero(steps > s)
            every = len(active) == len(clients)
            idx = order[active, s * batch : (s + 1) * batch]
            n_rows = np.minimum(batch, counts[active] - s * batch).astype(np.float64)
            sub = params if every else [p[active] for p in params]
            loss_sum, grads = stacked_loss_and_grad(spec, sub, data.x[idx], data.y[idx], data.w[idx])
            mean_loss = loss_sum / n_rows
            total[active] += mean_loss * n_rows
            grads = [g / _per_client(n_rows, g) for g in grads]
            # Weights, not biases, are regularised; FedProx pulls towards the global model.
            grads = [
                g + (spec.l2 * p if j % 2 == 0 else 0.0) + (mu * (p - start[j]) if mu else 0.0)
                for j, (p, g) in enumerate(zip(sub, grads, strict=True))
            ]
            t[active] += 1
            ta = t[active].astype(np.float64)
            rate = lr * np.sqrt(1.0 - beta2**ta) / (1.0 - beta1**ta)
            for j, g in enumerate(grads):
                m = beta1 * (moment1[j] if every else moment1[j][active]) + (1.0 - beta1) * g
                v = beta2 * (moment2[j] if every else moment2[j][active]) + (1.0 - beta2) * g * g
                new = sub[j] - _per_client(rate, g) * m / (np.sqrt(v) + eps)
                if every:
                    moment1[j], moment2[j], params[j] = m, v, new
                else:
                    moment1[j][active], moment2[j][active], params[j][active] = m, v, new
        loss = total / np.maximum(counts, 1)
    return params, loss


def chunk_size(spec: NetSpec, batch: int) -> int:
    """Return how many clients train together within CHUNK_BYTES."""
    sizes = network.layer_sizes(spec.n_features, spec.hidden, spec.n_classes)
    n_params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    per_client = 8 * (5 * n_params + 3 * batch * sum(sizes))
    return max(1, CHUNK_BYTES // per_client)


def train_round(
    job: FederatedJob, data: ClientRows, global_params: list[np.ndarray], clients: np.ndarray, server_round: int
) -> tuple[list[np.ndarray], float]:
    """Return FedAvg of the clients' trained models (weights: train rows) and their weighted train loss."""
    assert job.net is not None
    spec, fed = job.net, job.fed
    weights = data.count[clients].astype(np.float64)
    factors = weights / weights.sum()
    merged = [np.zeros_like(p) for p in global_params]
    losses = np.zeros(len(clients))
    size = chunk_size(spec, fed.batch_size)
    for lo in range(0, len(clients), size):
        part = clients[lo : lo + size]
        params, losses[lo : lo + size] = train_chunk(spec, global_params, data, part, fed, job.spec.seed, server_round)
        for j, p in enumerate(params):
            merged[j] += np.tensordot(factors[lo : lo + size], p, axes=1)
    return merged, float(weights @ losses / weights.sum())


def evaluate_clients(
    spec: NetSpec, params: list[np.ndarray], data: ClientRows, clients: np.ndarray
) -> dict[str, float]:
    """Return the row-weighted mean over ``clients`` of each client's validation loss and accuracy."""
    rows = data.rows_of(clients)
    owner = np.repeat(np.arange(len(clients)), data.count[clients])
    z, _ = network.forward(params, data.x[rows])
    per_row, _ = network.output_terms(spec.loss, z, data.y[rows], spec.n_classes)
    pred = (z[:, 0] > 0).astype(int) if z.shape[1] == 1 else z.argmax(axis=1)
    n = data.count[clients].astype(np.float64)
    loss = np.bincount(owner, weights=data.w[rows] * per_row, minlength=len(clients)) / n
    accuracy = np.bincount(owner, weights=(pred == data.y[rows]).astype(np.float64), minlength=len(clients)) / n
    return {"loss": float(n @ loss / n.sum()), "accuracy": float(n @ accuracy / n.sum())}


def sample(rng: np.random.Generator, n: int, fraction: float, minimum: int) -> np.ndarray:
    """Return the sorted client ids of a round: Flower's sample size, drawn from ``rng``."""
    size = min(n, max(int(n * fraction), minimum))
    return np.arange(n) if size == n else np.sort(rng.choice(n, size=size, replace=False))


def message_bytes(params: list[np.ndarray], partitions_dir: str, fed: FederatedSpec) -> dict[str, int]:
    """Return the bytes of each message Flower would send and receive per client (records' count_bytes)."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    arrays = ArrayRecord(params).count_bytes()
    config = ConfigRecord({"partitions-dir": partitions_dir, "server-round": 1}).count_bytes()
    # FedProx adds its mu to the train config.
    train = config + (ConfigRecord({"proximal-mu": fed.proximal_mu}).count_bytes() if fed.strategy == "fedprox" else 0)
    return {
        "train_sent": arrays + train,
        "train_received": arrays + MetricRecord({"num-examples": 1, "train-loss": 0.0, "client": 1}).count_bytes(),
        "evaluate_sent": arrays + config,
        "evaluate_received": MetricRecord({"num-examples": 1, "loss": 0.0, "accuracy": 0.0, "client": 1}).count_bytes(),
    }


def run_batched_rounds(job: FederatedJob) -> tuple[Any, History]:
    """Run the planned rounds with batched clients; return the final global model and the history."""
    from flwr.app import ArrayRecord

    from federated.server_app import History

    assert job.net is not None
    fed, spec, rounds = job.fed, job.net, job.privacy.rounds
    train, valid = client_rows(job, TRAIN), client_rows(job, VALID)
    rng = np.random.default_rng(job.spec.seed)
    history = History()
    params = job.net.init(job.spec.seed)
    sizes = message_bytes(params, str(job.partitions_dir), fed)
    history.at(0).centralized_evaluation = job.centralized_metrics(ArrayRecord(params))
    history.at(0).duration_s = time.perf_counter() - history.at(0).started
    for server_round in range(1, rounds + 1):
        rec = history.at(server_round)
        failing = set(fed.fail_clients) if server_round in fed.fail_rounds else set()
        chosen = sample(rng, fed.clients, fed.fraction_train, fed.min_train_clients)
        ok = np.array([c for c in chosen if c not in failing], dtype=np.int64)
        rec.bytes_sent += len(chosen) * sizes["train_sent"]
        if len(ok):
            params, train_loss = train_round(job, train, params, ok, server_round)
            rec.train_metrics = {"train-loss": train_loss}
        rec.train_clients, rec.failed_train, rec.train_replies = ok.tolist(), len(chosen) - len(ok), len(ok)
        rec.bytes_received += len(ok) * sizes["train_received"]
        if fed.fraction_evaluate > 0:
            chosen = sample(rng, fed.clients, fed.fraction_evaluate, min(fed.min_evaluate_clients, fed.clients))
            # A client without validation rows fails its evaluation, as the Flower client raises.
            ok = np.array([c for c in chosen if c not in failing and valid.count[c]], dtype=np.int64)
            rec.bytes_sent += len(chosen) * sizes["evaluate_sent"]
            rec.bytes_received += len(ok) * sizes["evaluate_received"]
            rec.evaluate_clients, rec.failed_evaluate = ok.tolist(), len(chosen) - len(ok)
            if len(ok):
                rec.federated_evaluation = evaluate_clients(spec, params, valid, ok)
        rec.centralized_evaluation = job.centralized_metrics(ArrayRecord(params))
        rec.duration_s = time.perf_counter() - rec.started
        test = ", ".join(f"{k} {v:.4f}" for k, v in rec.centralized_evaluation.items() if k in ("auc", "log_loss"))
        failed = f", {rec.failed_train} failed" if rec.failed_train else ""
        job.progress.note(
            f"round {server_round}/{rounds}: {len(rec.train_clients)} clients trained{failed}; test {test}"
        )
    return ArrayRecord(params), history
