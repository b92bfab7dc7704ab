"""Train a job spec on a Ray cluster: ``ray job submit --working-dir . -- python -m jobs.ray_train CONFIG [OPTIONS]``.

Runs as the driver of a Ray job (``ray job submit`` sets RAY_ADDRESS, so the engine joins that
cluster with ``engine.address=auto``), or next to a cluster with ``--address HOST:PORT``. It is
``scaleclf train --engine ray``; use an absolute ``output.dir`` on a shared disk, because a
submitted job runs in a copy of the working directory.
"""

from __future__ import annotations

import sys

import click


def command() -> click.Command:
    """Return the script's command: ``scaleclf train`` on the Ray engine."""
    from jobs.commands.train import job_command

    return job_command(
        "ray",
        address="auto",
        help="Train CONFIG on the Ray cluster (default: the cluster of the Ray job) and print the run directory.",
    )


def main(argv: list[str] | None = None) -> None:
    """Run the script with scaleclf's one-line errors and exit codes."""
    from jobs.cli import invoke

    invoke(command(), list(sys.argv[1:] if argv is None else argv), "python -m jobs.ray_train")


if __name__ == "__main__":
    from pipelines.process_exit import run_main

    run_main(main)  # a driver that segfaults in Ray's native teardown would mark the job FAILED
