#!/usr/bin/env bash
# spark-submit jobs/spark_train.py in client mode with conf/spark-defaults.conf.
# Usage: infra/spark/submit.sh [--master URL] CONFIG [CONFIG...] [scaleclf train options]
# The master defaults to $SPARK_MASTER, else local[*]. With SCALECLF_SHIP=1 the archives of
# `make spark-package` (dist/spark/) are shipped to the executors (--py-files, --archives),
# for clusters whose machines lack this checkout and its .venv.
#
# As with `scaleclf train`, progress goes to stderr and the run directories to stdout:
# spark-submit merges the Python driver's stdout and stderr, so the driver writes its result
# lines to $SCALECLF_RESULT_FILE and this script prints them when the job ends. Spark's own
# log goes to a file (conf/log4j2.properties) that each run copies into its logs/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

master="${SPARK_MASTER:-local[*]}"
if [[ "${1:-}" == "--master" ]]; then master=$2; shift 2; fi
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PYTHON}"
extra=()
if [[ "${SCALECLF_SHIP:-0}" == 1 ]]; then
  [[ -f "$repo/dist/spark/scaleclf.zip" ]] || { echo "error: SCALECLF_SHIP=1 but dist/spark/scaleclf.zip is missing; run make spark-package" >&2; exit 2; }
  extra+=(--py-files "$repo/dist/spark/scaleclf.zip")
fi
if [[ "${SCALECLF_SHIP:-0}" == 1 && -f "$repo/dist/spark/env.tar.gz" ]]; then
  extra+=(--archives "$repo/dist/spark/env.tar.gz#env" --conf spark.pyspark.python=./env/bin/python)
fi
console=off
for arg in "$@"; do [[ "$arg" == "--verbose" || "$arg" == "-v" ]] && console=info; done
mkdir -p "$SCALECLF_SPARK_DIR"
result=$(mktemp "$SCALECLF_SPARK_DIR/result.XXXXXX")
export SCALECLF_RESULT_FILE="$result"
export SCALECLF_SPARK_LOG="${SCALECLF_SPARK_LOG:-$SCALECLF_SPARK_DIR/driver-$$.log}"
trap 'rm -f "$result"' EXIT
cd "$repo"
status=0
# Two lines reach the JVM's stderr without log4j: the incubator module Spark loads, and netlib's
# attempt to load a native BLAS (MLlib falls back to Java). They go to the driver log with the rest.
jvm_notes='^WARNING: Using incubator modules|^netlib-blas: '
"$SPARK_HOME/bin/spark-submit" --master "$master" --deploy-mode client \
  --properties-file "$repo/conf/spark-defaults.conf" --conf "spark.local.dir=${SCALECLF_SPARK_DIR}/local" \
  --driver-java-options "-Dlog4j2.configurationFile=file:$repo/conf/log4j2.properties -Dscaleclf.spark.log=$SCALECLF_SPARK_LOG -Dscaleclf.console.level=$console" \
  ${extra[@]+"${extra[@]}"} "$repo/jobs/spark_train.py" "$@" \
  2> >(awk -v logfile="$SCALECLF_SPARK_LOG" -v notes="$jvm_notes" \
         '$0 ~ notes { print >> logfile; fflush(logfile); next } { print; fflush() }' >&2) >&2 || status=$?
wait || true
cat "$result"
exit "$status"
