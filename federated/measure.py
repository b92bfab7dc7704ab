"""Time a federated run and sample the peak memory of its whole process tree (driver, Ray, clients).

    python -m federated.measure conf/federated_scale.yaml [--set KEY=VALUE ...]

Prints one JSON line: clients, rounds, wall seconds, peak RSS of the process tree (MiB), test AUC.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import psutil


def tree_rss(process: psutil.Process) -> int:
    """Return the resident memory of a process and all its descendants, in bytes."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def main(argv: list[str]) -> None:
    """Run ``scaleclf federate`` in this process while a thread samples the tree's memory."""
    from federated.simulation import federate
    from pipelines.progress import Progress
    from pipelines.spec import load_spec

    config, rest = argv[0], argv[1:]
    overrides = [rest[i + 1] for i in range(len(rest) - 1) if rest[i] == "--set"]
    spec = load_spec(config, overrides)
    me = psutil.Process()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(me))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        run_dir = federate(spec, Progress(quiet=True))
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    fed = spec.federated
    assert fed is not None
    print(
        json.dumps(
            {
                "clients": fed.clients,
                "rounds": fed.rounds,
                "strategy": fed.strategy,
                "model": spec.model.name,
                "wall_s": round(wall, 1),
                "fit_s": metrics["timing"].get("fit_s"),
                "peak_rss_mib": round(peak[0] / 2**20),
                "test_auc": metrics["test"]["auc"],
                "run_dir": str(run_dir),
            }
        )
    )


if __name__ == "__main__":
    from pipelines.process_exit import run_main

    run_main(main, sys.argv[1:])
