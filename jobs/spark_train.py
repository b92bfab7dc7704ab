"""spark-submit entry point: ``spark-submit jobs/spark_train.py CONFIG [CONFIG...] [--set KEY=VALUE]... [--out DIR]``.

The master, cores and memory come from spark-submit (``--master``, ``conf/spark-defaults.conf``);
this script starts the session spark-submit configured, runs ``scaleclf train --engine spark``
inside it (same spec, same errors, same run directory) and prints the run directory last.
Several CONFIGs train one after the other in the same session (one application, one set of
executors), each with the same ``--set``/``--out`` options; each prints its run directory,
and the first failure stops the job with its exit code.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Train the spec on the Spark session spark-submit set up; exit with scaleclf's exit codes."""
    from pyspark.sql import SparkSession

    from jobs.cli import main as cli_main

    if not argv or argv[0].startswith("-"):
        sys.stderr.write(
            "usage: spark-submit jobs/spark_train.py CONFIG [CONFIG...] [--set KEY=VALUE]... [--out DIR]\n"
        )
        raise SystemExit(2)
    n_configs = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    configs, options = argv[:n_configs], argv[n_configs:]
    try:
        spark = SparkSession.builder.appName(f"scaleclf {' '.join(configs)}").getOrCreate()
    except Exception as exc:  # no JVM, bad master URL: one line, as the CLI reports errors
        sys.stderr.write(f"error: engine spark: cannot start the Spark session: {str(exc).splitlines()[0]}\n")
        raise SystemExit(4) from None
    spark.sparkContext.setLogLevel("ERROR")
    try:
        for config in configs:
            try:
                cli_main(["train", config, "--engine", "spark", *options])
            except SystemExit as exc:
                if exc.code not in (0, None):
                    raise
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
