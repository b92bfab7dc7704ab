#!/usr/bin/env bash
# spark-submit jobs/spark_train.py.
# Usage: infra/spark/submit.sh [SPARK-SUBMIT OPTIONS] CONFIG [CONFIG...] [scaleclf train options]
#   infra/spark/submit.sh --master spark://10.77.0.11:7077 --conf spark.executor.memory=2g \
#     --executor-memory 2g --deploy-mode client conf/higgs_logreg.yaml
# Every option before CONFIG goes to spark-submit unchanged, after the script's own defaults, so
# yours win (spark-submit keeps the last --conf of a key). The master defaults to $SPARK_MASTER,
# else local[*]. Properties come from $SPARK_CONF_DIR/spark-defaults.conf: the cluster's own
# when SPARK_CONF_DIR is set, else conf/ (loopback defaults). With SCALECLF_SHIP=1 the archives
# of `make spark-package` (dist/spark/) are shipped to the executors (--py-files, --archives),
# for clusters whose machines lack this checkout and its .venv. SCALECLF_DRY_RUN=1 prints the
# spark-submit command line (one word per line) instead of running it.
#
# As with `scaleclf train`, progress goes to stderr and the run directories to stdout:
# spark-submit merges the Python driver's stdout and stderr, so the driver writes its result
# lines to $SCALECLF_RESULT_FILE and this script prints them when the job ends. Spark's own
# log goes to a file (conf/log4j2.properties) that each run copies into its logs/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

master="${SPARK_MASTER:-local[*]}"
# spark-submit's options before CONFIG: every --option takes a value except these flags.
passed=()
while [[ $# -gt 0 && "$1" == -* ]]; do
  case "$1" in
    --verbose | -v | --supervise) passed+=("$1"); shift ;;
    --help | -h | --version) exec "$SPARK_HOME/bin/spark-submit" "$1" ;;
    --*=*) passed+=("$1"); shift ;;
    --master) master="$2"; shift 2 ;;
    *) [[ $# -ge 2 ]] || { echo "error: spark-submit option $1 needs a value" >&2; exit 2; }
       passed+=("$1" "$2"); shift 2 ;;
  esac
done
[[ $# -ge 1 ]] || { echo "usage: submit.sh [SPARK-SUBMIT OPTIONS] CONFIG [CONFIG...] [scaleclf train options]" >&2; exit 2; }
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
java_options="-Dlog4j2.configurationFile=file:$repo/conf/log4j2.properties -Dscaleclf.spark.log=$SCALECLF_SPARK_LOG -Dscaleclf.console.level=$console"
cmd=("$SPARK_HOME/bin/spark-submit" --master "$master" --conf "spark.local.dir=${SCALECLF_SPARK_DIR}/local"
  --driver-java-options "$java_options" ${extra[@]+"${extra[@]}"} ${passed[@]+"${passed[@]}"}
  "$repo/jobs/spark_train.py" "$@")
if [[ "${SCALECLF_DRY_RUN:-0}" == 1 ]]; then
  printf '%s\n' "${cmd[@]}"
  exit 0
fi
status=0
# Two lines reach the JVM's stderr without log4j: the incubator module Spark loads, and netlib's
# attempt to load a native BLAS (MLlib falls back to Java). They go to the driver log with the rest.
jvm_notes='^WARNING: Using incubator modules|^netlib-blas: '
"${cmd[@]}" \
  2> >(awk -v logfile="$SCALECLF_SPARK_LOG" -v notes="$jvm_notes" \
         '$0 ~ notes { print >> logfile; fflush(logfile); next } { print; fflush() }' >&2) >&2 || status=$?
wait || true
cat "$result"
exit "$status"
