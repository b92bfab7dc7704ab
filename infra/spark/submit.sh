#!/usr/bin/env bash
# spark-submit jobs/spark_train.py in client mode with conf/spark-defaults.conf.
# Usage: infra/spark/submit.sh [--master URL] CONFIG [--set KEY=VALUE]... [--out DIR]
# The master defaults to $SPARK_MASTER, else local[*]. With `make spark-package` archives
# present under dist/spark/, they are shipped to the executors (--py-files, --archives).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

master="${SPARK_MASTER:-local[*]}"
if [[ "${1:-}" == "--master" ]]; then master=$2; shift 2; fi
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PYTHON}"
extra=()
if [[ -f "$repo/dist/spark/scaleclf.zip" ]]; then extra+=(--py-files "$repo/dist/spark/scaleclf.zip"); fi
if [[ -f "$repo/dist/spark/env.tar.gz" && "${SCALECLF_SHIP_ENV:-0}" == 1 ]]; then
  extra+=(--archives "$repo/dist/spark/env.tar.gz#env" --conf spark.pyspark.python=./env/bin/python)
fi
cd "$repo"
exec "$SPARK_HOME/bin/spark-submit" --master "$master" --deploy-mode client \
  --properties-file "$repo/conf/spark-defaults.conf" --conf "spark.local.dir=${SCALECLF_SPARK_DIR}/local" \
  ${extra[@]+"${extra[@]}"} "$repo/jobs/spark_train.py" "$@"
