"""spark-submit entry point: ``spark-submit jobs/spark_train.py CONFIG [CONFIG...] [OPTIONS]``.

It is ``scaleclf train --engine spark`` inside the session spark-submit configured: the master,
cores and memory come from spark-submit (``--master``, ``conf/spark-defaults.conf``). Several
CONFIGs train one after the other in one application (one set of executors), each with the same
options, each printing its run directory; the first failure stops the job with its exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click


@contextmanager
def submitted_session(configs: list[Path]) -> Iterator[None]:
    """Start the session spark-submit configured for the whole job, and stop it at the end."""
    from pyspark.sql import SparkSession

    from pipelines.errors import EngineError

    try:
        spark = SparkSession.builder.appName(f"scaleclf {' '.join(map(str, configs))}").getOrCreate()
    except Exception as exc:  # no JVM, bad master URL
        raise EngineError(f"engine spark: cannot start the Spark session: {str(exc).splitlines()[0]}") from None
    try:
        yield
    finally:
        spark.stop()


def command() -> click.Command:
    """Return the script's command: ``scaleclf train`` on the Spark engine, one or more CONFIGs."""
    from jobs.commands.train import job_command

    return job_command(
        "spark",
        several=submitted_session,
        help="Train each CONFIG in the Spark application spark-submit started; print each run directory.",
    )


def main(argv: list[str] | None = None) -> None:
    """Run the script with scaleclf's one-line errors and exit codes."""
    from jobs.cli import invoke

    invoke(command(), list(sys.argv[1:] if argv is None else argv), "spark-submit jobs/spark_train.py")


if __name__ == "__main__":
    main()
