#!/usr/bin/env bash
# A loopback Ray cluster: one head and one worker node started with `ray start` on 127.0.0.1.
#
#   infra/ray/local-cluster.sh start   # prints the cluster address (127.0.0.1:6390) last
#   infra/ray/local-cluster.sh stop
#
# Settings (environment): RAY_PORT (GCS, 6390), RAY_DASHBOARD_PORT (8266), RAY_HEAD_CPUS (1),
# RAY_WORKER_CPUS (1), RAY_TEMP_DIR (/tmp/scaleclf-ray), RAY_OBJECT_STORE_MB (1024 per node),
# RAY_BIN (the `ray` next to this Python, else on PATH). Every other port is in 20000-20999.
set -euo pipefail

PORT=${RAY_PORT:-6390}
DASHBOARD_PORT=${RAY_DASHBOARD_PORT:-8266}
HEAD_CPUS=${RAY_HEAD_CPUS:-1}
WORKER_CPUS=${RAY_WORKER_CPUS:-1}
TEMP_DIR=${RAY_TEMP_DIR:-/tmp/scaleclf-ray}
STORE=$(( ${RAY_OBJECT_STORE_MB:-1024} * 1024 * 1024 ))
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [[ -z "${RAY_BIN:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/ray" ]]; then RAY_BIN="$REPO/.venv/bin/ray"; else RAY_BIN=$(command -v ray); fi
fi
ADDRESS="127.0.0.1:$PORT"
# Job drivers (`ray job submit -- python ...`) run with this PATH: use the Python Ray came with.
export PATH="$(dirname "$RAY_BIN"):$PATH"
# Ray processes started here must never pick up another cluster's address by accident.
unset RAY_ADDRESS

start() {
  # The head keeps a share of the worker-port range; the worker node the rest.
  "$RAY_BIN" start --head --node-ip-address=127.0.0.1 --port="$PORT" \
    --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" --include-dashboard=true \
    --num-cpus="$HEAD_CPUS" --object-store-memory="$STORE" --temp-dir="$TEMP_DIR" \
    --node-manager-port=20900 --object-manager-port=20901 --ray-client-server-port=20902 \
    --dashboard-agent-listen-port=20903 --dashboard-agent-grpc-port=20904 --metrics-export-port=20905 \
    --runtime-env-agent-port=20906 \
    --min-worker-port=20000 --max-worker-port=20449 --disable-usage-stats >/dev/null
  "$RAY_BIN" start --address="$ADDRESS" --node-ip-address=127.0.0.1 \
    --num-cpus="$WORKER_CPUS" --object-store-memory="$STORE" \
    --node-manager-port=20910 --object-manager-port=20911 \
    --dashboard-agent-listen-port=20913 --dashboard-agent-grpc-port=20914 --metrics-export-port=20915 \
    --runtime-env-agent-port=20916 \
    --min-worker-port=20450 --max-worker-port=20899 --disable-usage-stats >/dev/null
  for _ in $(seq 60); do
    nodes=$("$RAY_BIN" status --address="$ADDRESS" 2>/dev/null | grep -c "^ 1 node_" || true)
    [[ "$nodes" -ge 2 ]] && { echo "$ADDRESS"; return 0; }
    sleep 1
  done
  echo "ray cluster at $ADDRESS did not show two nodes within 60 s" >&2
  return 1
}

descendants() {
  local p c
  for p in "$@"; do
    c=$(pgrep -P "$p" || true)
    if [[ -n "$c" ]]; then echo $c; descendants $c; fi
  done
}

stop() {
  # Stop only this cluster's processes: those whose session lives under our temp dir.
  local pids
  pids=$(pgrep -f -- "$TEMP_DIR/session_" || true)
  pids="$pids $(pgrep -f -- "--gcs-address=$ADDRESS" || true) $(pgrep -f -- "--gcs_address=$ADDRESS" || true)"
  pids="$pids $(pgrep -f -- "gcs_server.*--gcs_server_port=$PORT" || true)"
  pids="$pids $(pgrep -f -- "ray.util.client.server.*:$PORT " || true)"
  pids=$(echo "$pids" | tr ' ' '\n' | grep -v '^$' | sort -u || true)
  [[ -z "$pids" ]] && return 0
  # Agents (ray::DashboardAgent, ray::RuntimeEnvAgent, ...) retitle themselves and keep no
  # argument naming the cluster: find them as descendants of the processes found above.
  pids=$(echo "$pids $(descendants $pids)" | tr ' ' '\n' | grep -v '^$' | sort -u || true)
  kill $pids 2>/dev/null || true
  for _ in $(seq 20); do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [[ -z "$alive" ]] && return 0
    sleep 0.5
  done
  kill -9 $alive 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
