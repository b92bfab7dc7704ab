"""Train a job spec on a Ray cluster: ``ray job submit --working-dir . -- python -m jobs.ray_train CONFIG``.

Runs as the driver of a Ray job (``ray job submit`` sets RAY_ADDRESS, so the engine joins that
cluster with ``engine.address=auto``), or next to a cluster with ``--address HOST:PORT``.
Prints the run directory as the last line; use an absolute ``output.dir`` on a shared disk,
because a submitted job runs in a copy of the working directory.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.errors import ScaleclfError


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, train on the Ray cluster and print the run directory."""
    parser = argparse.ArgumentParser(prog="python -m jobs.ray_train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="job spec (YAML)")
    parser.add_argument("--address", default="auto", help="Ray cluster address (default: the job's cluster)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from pipelines.progress import Progress
    from pipelines.run import train
    from pipelines.spec import load_spec

    try:
        spec = load_spec(args.config, [f"engine.address={args.address}", *args.overrides], engine="ray")
        run_dir = train(spec, Progress(quiet=False))
    except ScaleclfError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(exc.exit_code) from None
    print(run_dir)


if __name__ == "__main__":
    from pipelines.process_exit import run_main

    run_main(main)  # a driver that segfaults in Ray's native teardown would mark the job FAILED
