# Shared settings of the loopback Spark cluster scripts (sourced, not run).
# Everything binds to 127.0.0.1 (SPARK_LOCAL_IP); logs, pids and work dirs live under SCALECLF_SPARK_DIR.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
PYTHON="${PYTHON:-$repo/.venv/bin/python}"
SPARK_HOME="${SPARK_HOME:-$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
export SPARK_HOME
# Loopback unless the caller names the machine's address (a cluster across machines).
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}" SPARK_MASTER_HOST="${SPARK_MASTER_HOST:-127.0.0.1}"
export SPARK_CONF_DIR="${SPARK_CONF_DIR:-$repo/conf}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PYTHON}"
SCALECLF_SPARK_DIR="${SCALECLF_SPARK_DIR:-${TMPDIR:-/tmp}/scaleclf-spark}"
SPARK_MASTER_PORT="${SPARK_MASTER_PORT:-7077}"
SPARK_MASTER_WEBUI_PORT="${SPARK_MASTER_WEBUI_PORT:-8080}"
SPARK_WORKER_WEBUI_PORT="${SPARK_WORKER_WEBUI_PORT:-8081}"
SPARK_WORKER_CORES="${SPARK_WORKER_CORES:-$(nproc)}"
SPARK_WORKER_MEMORY="${SPARK_WORKER_MEMORY:-4g}"
MASTER_URL="spark://127.0.0.1:$SPARK_MASTER_PORT"
