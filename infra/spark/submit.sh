#!/usr/bin/env bash
# spark-submit jobs/spark_train.py in client mode with conf/spark-defaults.conf.
# Usage: infra/spark/submit.sh [--master URL] CONFIG [--set KEY=VALUE]... [--out DIR]
# The master defaults to $SPARK_MASTER, else local[*]. With SCALECLF_SHIP=1 the archives of
# `make spark-package` (dist/spark/) are shipped to the executors (--py-files, --archives),
# for clusters whose machines lack this checkout and its .venv.
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
cd "$repo"
exec "$SPARK_HOME/bin/spark-submit" --master "$master" --deploy-mode client \
  --properties-file "$repo/conf/spark-defaults.conf" --conf "spark.local.dir=${SCALECLF_SPARK_DIR}/local" \
  ${extra[@]+"${extra[@]}"} "$repo/jobs/spark_train.py" "$@"
