"""Time xgboost on one machine: single-process, then xgboost.dask on each LocalCluster layout.

Usage: python infra/dask/measure_layout.py [ROWS] [ROUNDS]  (run under ``flock /tmp/scaleclf-bench.lock``).
Prints one JSON line per measurement: layout (workers x threads), fit seconds (data already
persisted on the workers, cluster already up), and the ratio to single-process xgboost.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import dask.array as da
import numpy as np
import pyarrow.parquet as pq
import xgboost
import xgboost.dask as dxgb
from distributed import Client, LocalCluster

from pipelines.data.sources import cache_root
from pipelines.data.synthetic import materialize


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    cores = os.cpu_count() or 1
    table = pq.read_table(materialize("higgs", rows, seed=0, cache_dir=cache_root() / "synthetic"))
    y = np.asarray(table.column("label").to_numpy(), dtype=np.int32)
    x = np.column_stack([table.column(c).to_numpy() for c in table.column_names if c != "label"]).astype(np.float64)
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "eta": 0.1, "max_bin": 256}
    results = []
    for repeat in range(2):
        start = time.perf_counter()
        xgboost.train({**params, "nthread": cores}, xgboost.QuantileDMatrix(x, y), rounds)
        single = time.perf_counter() - start
        print(json.dumps({"layout": "single process", "threads": cores, "fit_s": round(single, 2)}), flush=True)
        layouts = [(w, cores // w) for w in range(1, cores + 1) if cores % w == 0]
        for workers, threads in layouts if repeat == 0 else layouts[::-1]:
            with (
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads,
                    host="127.0.0.1",
                    scheduler_port=0,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                ) as cluster,
                Client(cluster) as client,
            ):
                chunk = -(-rows // (workers * threads))
                dx, dy = client.persist([da.from_array(x, chunks=(chunk, x.shape[1])), da.from_array(y, chunks=chunk)])
                start = time.perf_counter()
                matrix = dxgb.DaskQuantileDMatrix(client, dx, dy, max_bin=256)
                dxgb.train(client, {**params, "nthread": threads}, matrix, rounds, verbose_eval=False)
                fit = time.perf_counter() - start
            results.append(fit)
            line = {"layout": f"{workers}x{threads}", "fit_s": round(fit, 2), "vs_single": round(fit / single, 2)}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
