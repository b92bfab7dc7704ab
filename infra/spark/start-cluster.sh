#!/usr/bin/env bash
# Start a standalone Spark master + one worker on 127.0.0.1 with the spark-class launcher
# shipped in the pyspark wheel. Prints the master URL on success; waits until the worker
# has registered. Settings: see env.sh (SPARK_WORKER_CORES, SPARK_WORKER_MEMORY, ports).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

command -v java >/dev/null || [[ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]] || {
  echo "error: Java was not found (install Java 17 or 21, or set JAVA_HOME)" >&2; exit 4; }
mkdir -p "$SCALECLF_SPARK_DIR/logs" "$SCALECLF_SPARK_DIR/work" "$SCALECLF_SPARK_DIR/local"
export SPARK_LOCAL_DIRS="$SCALECLF_SPARK_DIR/local" SPARK_LOG_DIR="$SCALECLF_SPARK_DIR/logs"

launch() {  # name class args...
  local name=$1 pidfile="$SCALECLF_SPARK_DIR/$1.pid"; shift
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "error: a Spark $name is already running (pid $(cat "$pidfile")); run stop-cluster.sh first" >&2; exit 4
  fi
  nohup setsid "$SPARK_HOME/bin/spark-class" "$@" >"$SCALECLF_SPARK_DIR/logs/$name.log" 2>&1 &
  echo $! >"$pidfile"
}

master_json() { "$PYTHON" - "$SPARK_MASTER_WEBUI_PORT" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2) as r:
        d = json.load(r)
    print(d.get("aliveworkers", 0), d.get("cores", 0))
except Exception:
    print(-1, 0)
PY
}

launch master org.apache.spark.deploy.master.Master \
  --host 127.0.0.1 --port "$SPARK_MASTER_PORT" --webui-port "$SPARK_MASTER_WEBUI_PORT"
launch worker org.apache.spark.deploy.worker.Worker \
  --host 127.0.0.1 --webui-port "$SPARK_WORKER_WEBUI_PORT" --cores "$SPARK_WORKER_CORES" \
  --memory "$SPARK_WORKER_MEMORY" --work-dir "$SCALECLF_SPARK_DIR/work" "$MASTER_URL"

for _ in $(seq 1 120); do
  read -r workers cores < <(master_json)
  if [[ "$workers" -ge 1 ]]; then
    echo "Spark master $MASTER_URL up: $workers worker(s), $cores cores (logs: $SCALECLF_SPARK_DIR/logs)" >&2
    echo "$MASTER_URL"
    exit 0
  fi
  sleep 0.5
done
echo "error: the Spark cluster did not come up within 60s; see $SCALECLF_SPARK_DIR/logs" >&2
"$(dirname "${BASH_SOURCE[0]}")/stop-cluster.sh" >/dev/null 2>&1 || true
exit 4
