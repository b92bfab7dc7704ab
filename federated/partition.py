"""Partition the non-test rows into clients, fit preprocessing from federated statistics, write client files.

The global test split is exactly the rows the centralized engines test on
(``pipelines.data.split``); every other row goes to one client, which keeps the global
train/valid assignment of the row as its local train/valid split. Client assignment uses
the flwr-datasets partitioners on a local Arrow-backed ``datasets.Dataset`` (no download).
Preprocessing is fitted on the merge of the clients' own profiles (the mergeable profile is
what each client would send as federated statistics), never on pooled rows; with
``federated.preprocess: given`` it and the label classes come from the user's file instead
(``federated/preprocess.py``) and the profiles only check the data against it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.schema import DataPlan, DataProfile, Task, check_columns, infer_task, profile_batch
from pipelines.data.split import SPLIT_COLUMN, TEST, TRAIN, VALID
from pipelines.errors import ConfigError, DataError
from pipelines.models.preprocess import Preprocessor, fit_preprocessor
from pipelines.spec import FederatedSpec

if TYPE_CHECKING:
    from federated.preprocess import GivenPreprocessing

PARTITION_KEY = "__partition_by"


@dataclass
class ClientData:
    """One client's rows (Arrow, with the split column) and its index in the federation."""

    client: int
    table: pa.Table

    def rows(self, split: int) -> pa.Table:
        """Return the client's rows of one split code (TRAIN or VALID)."""
        return self.table.filter(pc.equal(self.table.column(SPLIT_COLUMN), pa.scalar(split, pa.int8())))


@dataclass
class Federation:
    """The partitioned data: clients, the global test rows, the task and the shared preprocessing."""

    clients: list[ClientData]
    test: pa.Table
    profile: DataProfile
    task: Task
    preprocessor: Preprocessor

    def statistics(self) -> dict[str, Any]:
        """Return partition sizes and label histograms (class name -> rows) per client."""
        rows = []
        for c in self.clients:
            labels = self.task.encode(c.table.column(self.task.label))
            split = np.asarray(c.table.column(SPLIT_COLUMN).to_numpy())
            hist = np.bincount(labels[split == TRAIN], minlength=self.task.n_classes)
            rows.append(
                {
                    "client": c.client,
                    "train_rows": int((split == TRAIN).sum()),
                    "valid_rows": int((split == VALID).sum()),
                    "labels": {str(k): int(v) for k, v in zip(self.task.classes, hist, strict=True)},
                }
            )
        sizes = np.array([r["train_rows"] for r in rows])
        return {
            "clients": rows,
            "test_rows": self.test.num_rows,
            "train_rows": {"total": int(sizes.sum()), "min": int(sizes.min()), "max": int(sizes.max())},
            "classes": [str(c) for c in self.task.classes],
        }


def assign_clients(pool: pa.Table, label: str, spec: FederatedSpec, seed: int) -> list[np.ndarray]:
    """Return, per client, the row indices of ``pool`` it holds (flwr-datasets partitioners)."""
    from datasets import Dataset
    from flwr_datasets import partitioner as fp

    p = spec.partition
    n = spec.clients
    by = p.column if p.scheme == "natural" else label
    if by is None:
        raise ConfigError("config error: federated.partition.column: required for the natural scheme")
    if by not in pool.schema.names:
        raise ConfigError(f"config error: federated.partition.column: column {by!r} is not in the data")
    values = pc.cast(pool.column(by), pa.string()).fill_null("<missing>")
    dataset = Dataset(pa.table({"__index": pa.array(np.arange(pool.num_rows)), PARTITION_KEY: values}))
    if p.scheme == "iid":
        part: Any = fp.IidPartitioner(n)
    elif p.scheme == "dirichlet":
        part = fp.DirichletPartitioner(n, PARTITION_KEY, p.alpha, min_partition_size=p.min_rows, seed=seed)
    elif p.scheme == "pathological":
        part = fp.PathologicalPartitioner(n, PARTITION_KEY, p.labels_per_client, seed=seed)
    elif p.scheme == "quantity":
        shares = np.random.default_rng(seed).dirichlet(np.full(n, p.alpha))
        sizes = np.floor(shares * (pool.num_rows - 2 * n)).astype(int) + 2
        sizes[-1] += pool.num_rows - sizes.sum()
        shuffled = dataset.shuffle(seed=seed)
        part, dataset = fp.SizePartitioner([int(s) for s in sizes]), shuffled
    else:
        distinct = pc.count_distinct(values).as_py()
        if distinct != n:
            raise ConfigError(
                f"config error: federated.clients: the natural partition by {by!r} gives {distinct} clients, not {n}"
            )
        part = fp.NaturalIdPartitioner(PARTITION_KEY)
    part.dataset = dataset
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # flwr-datasets warns on each Dirichlet redraw
            return [np.asarray(part.load_partition(i)["__index"], dtype=np.int64) for i in range(n)]
    except ValueError as exc:
        if p.scheme == "dirichlet":
            # Small alpha with few classes: flwr-datasets cannot give every client min_rows rows.
            encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
            labels = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
            return partition_dirichlet(labels, n, p.alpha, p.min_rows, seed)
        msg = " ".join(str(exc).split())
        raise ConfigError(f"config error: federated.partition: {p.scheme} cannot split the rows: {msg}") from None


def partition_dirichlet(labels: np.ndarray, n: int, alpha: float, min_rows: int, seed: int) -> list[np.ndarray]:
    """Return per-client row indices: each class split over clients by Dirichlet(alpha) shares,
    then clients below ``min_rows`` topped up with random rows taken from the largest clients."""
    rng = np.random.default_rng(seed)
    owner = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        cuts = (np.cumsum(rng.dirichlet(np.full(n, alpha)))[:-1] * len(rows)).astype(int)
        for client, part in enumerate(np.split(rows, cuts)):
            owner[part] = client
    sizes = np.bincount(owner, minlength=n)
    floor = int(min(min_rows, len(labels) // n))
    for client in np.flatnonzero(sizes < floor).tolist():
        while sizes[client] < floor:
            donor = int(np.argmax(sizes))
            take = rng.choice(
                np.flatnonzero(owner == donor), size=min(floor - sizes[client], sizes[donor] - floor), replace=False
            )
            owner[take] = client
            sizes = np.bincount(owner, minlength=n)
    return [np.flatnonzero(owner == c) for c in range(n)]


def federate_data(
    table: pa.Table, plan: DataPlan, spec: FederatedSpec, seed: int, given: GivenPreprocessing | None = None
) -> Federation:
    """Return the federation of ``table`` (rows with key and split): clients, test rows and preprocessing."""
    split = table.column(SPLIT_COLUMN)
    test = table.filter(pc.equal(split, pa.scalar(TEST, pa.int8())))
    pool = table.filter(pc.not_equal(split, pa.scalar(TEST, pa.int8())))
    if pool.num_rows < 2 * spec.clients:
        raise DataError(f"data.source: {pool.num_rows} train/valid rows cannot feed {spec.clients} clients")
    indices = assign_clients(pool, plan.label, spec, seed)
    clients = [ClientData(i, pool.take(pa.array(idx))) for i, idx in enumerate(indices)]
    for c in clients:
        if c.table.num_rows == 0:
            raise DataError(f"federated.partition: client {c.client} received no rows; use fewer clients")
    return federation_of(clients, test, plan, given)


def federation_of(
    clients: list[ClientData], test: pa.Table, plan: Any, given: GivenPreprocessing | None = None
) -> Federation:
    """Return the Federation of ``clients``: each profiles its own rows, only the merged summaries meet.

    With ``given`` the preprocessing and classes are the user's: the merged profile then only
    counts rows and checks the labels, it fits nothing.
    """
    profiles = [profile_batch(c.table, plan) for c in clients]
    if test.num_rows:
        profiles.append(profile_batch(test, plan))
    profile = reduce(DataProfile.merge, profiles)
    if given is not None:
        from federated.preprocess import given_task

        return Federation(clients, test, profile, given_task(given, profile, plan), given.preprocessor)
    task = infer_task(profile, plan)
    dropped = check_columns(profile, plan)
    return Federation(clients, test, profile, task, fit_preprocessor(profile, plan, dropped))


def write_client_files(federation: Federation, directory: Path, weights: np.ndarray | None) -> list[Path]:
    """Write each client's preprocessed train/valid arrays to ``client-NNNN.npz``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    task, prep = federation.task, federation.preprocessor
    for c in federation.clients:
        arrays: dict[str, np.ndarray] = {}
        for code, name in ((TRAIN, "train"), (VALID, "valid")):
            rows = c.rows(code)
            y = task.encode(rows.column(task.label))
            arrays[f"x_{name}"] = prep.transform(rows, dtype=np.float32)
            arrays[f"y_{name}"] = y
            arrays[f"w_{name}"] = (weights[y] if weights is not None else np.ones(len(y))).astype(np.float32)
        path = directory / f"client-{c.client:04d}.npz"
        np.savez(path, **arrays)  # type: ignore[arg-type]
        paths.append(path)
    return paths


def write_statistics(path: Path, federation: Federation, spec: FederatedSpec) -> dict[str, Any]:
    """Write ``partitions.json`` (scheme, sizes, label histograms); return its content."""
    stats = {"scheme": spec.partition.model_dump(mode="json"), **federation.statistics()}
    path.write_text(json.dumps(stats, indent=2) + "\n")
    return stats
