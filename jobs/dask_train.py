"""Train a job spec on a running Dask cluster: ``python jobs/dask_train.py CONFIG [ADDRESS] [--set KEY=VALUE]...``.

The entry point a user runs next to a cluster started by ``infra/dask/start.sh`` (ADDRESS
defaults to tcp://127.0.0.1:8786); without a cluster use ``scaleclf train CONFIG --engine dask``,
which starts a LocalCluster. Prints the run directory as the last line.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.errors import ScaleclfError


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, train on the Dask scheduler and print the run directory."""
    parser = argparse.ArgumentParser(prog="dask_train.py", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="job spec (YAML)")
    parser.add_argument("address", nargs="?", default="tcp://127.0.0.1:8786", help="Dask scheduler address")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from pipelines.progress import Progress
    from pipelines.run import train
    from pipelines.spec import load_spec

    try:
        spec = load_spec(args.config, [*args.overrides, f"engine.address={args.address}"], engine="dask")
        run_dir = train(spec, Progress(quiet=False))
    except ScaleclfError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(exc.exit_code) from None
    print(run_dir)


if __name__ == "__main__":
    main()
