"""Train a job spec on a running Dask cluster: ``python jobs/dask_train.py CONFIG [--address ADDRESS] [OPTIONS]``.

The entry point a user runs next to a cluster started by ``infra/dask/start.sh``; it is
``scaleclf train --engine dask`` with ``--address`` defaulting to that cluster. Without a cluster
use ``scaleclf train CONFIG --engine dask``, which starts a LocalCluster.
"""

from __future__ import annotations

import sys

import click

DEFAULT_ADDRESS = "tcp://127.0.0.1:8786"


def command() -> click.Command:
    """Return the script's command: ``scaleclf train`` on the Dask engine."""
    from jobs.commands.train import job_command

    return job_command(
        "dask",
        address=DEFAULT_ADDRESS,
        help="Train CONFIG on the Dask scheduler at --address and print the run directory as the last line.",
    )


def main(argv: list[str] | None = None) -> None:
    """Run the script; ``CONFIG ADDRESS`` (the old positional form) still works."""
    from jobs.cli import invoke

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 and not args[0].startswith("-") and not args[1].startswith("-"):
        args = [args[0], "--address", *args[1:]]
    invoke(command(), args, "python jobs/dask_train.py")


if __name__ == "__main__":
    main()
