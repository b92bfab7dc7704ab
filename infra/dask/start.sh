#!/usr/bin/env bash
# Start a Dask scheduler and workers on 127.0.0.1 with the `dask` CLI; print the scheduler address.
#
#   infra/dask/start.sh            # scheduler :8786 (dashboard :8787) + 2 workers x 1 thread
#   DASK_WORKERS=1 DASK_THREADS=2 infra/dask/start.sh
#
# Point a job at it with --set engine.address=tcp://127.0.0.1:8786; stop it with infra/dask/stop.sh.
# Settings (environment): DASK_PORT (8786), DASK_DASHBOARD_PORT (8787), DASK_WORKERS (2),
# DASK_THREADS (1 per worker), DASK_MEMORY (memory per worker, default auto),
# DASK_STATE_DIR (pid and log files, default /tmp/scaleclf-dask-$DASK_PORT).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${DASK_BIN:-$REPO/.venv/bin}"
PORT="${DASK_PORT:-8786}"
DASHBOARD="${DASK_DASHBOARD_PORT:-8787}"
WORKERS="${DASK_WORKERS:-2}"
THREADS="${DASK_THREADS:-1}"
MEMORY="${DASK_MEMORY:-auto}"
STATE="${DASK_STATE_DIR:-/tmp/scaleclf-dask-$PORT}"
ADDRESS="tcp://127.0.0.1:$PORT"

mkdir -p "$STATE"
if [[ -f "$STATE/scheduler.pid" ]] && kill -0 "$(cat "$STATE/scheduler.pid")" 2>/dev/null; then
  echo "a scheduler started from $STATE is already running at $ADDRESS; stop it with infra/dask/stop.sh" >&2
  exit 1
fi
if "$BIN/python" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PORT)) != 0)"; then
  echo "port $PORT on 127.0.0.1 is already in use; set DASK_PORT" >&2
  exit 1
fi

cd "$REPO"  # workers import scaleclf's modules from here
"$BIN/dask" scheduler --host 127.0.0.1 --port "$PORT" --dashboard-address "127.0.0.1:$DASHBOARD" \
  >"$STATE/scheduler.log" 2>&1 &
echo $! >"$STATE/scheduler.pid"
"$BIN/dask" worker "$ADDRESS" --host 127.0.0.1 --nworkers "$WORKERS" --nthreads "$THREADS" \
  --memory-limit "$MEMORY" --no-dashboard --local-directory "$STATE/workers" \
  >"$STATE/workers.log" 2>&1 &
echo $! >"$STATE/workers.pid"

# Ready when the scheduler answers and every worker has joined (at most 60 s).
if ! "$BIN/python" - "$ADDRESS" "$WORKERS" <<'PY'
import sys
from distributed import Client
with Client(sys.argv[1], timeout=60) as client:
    client.wait_for_workers(int(sys.argv[2]), timeout=60)
PY
then
  echo "the Dask cluster did not come up; logs in $STATE" >&2
  "$(dirname "$0")/stop.sh" >/dev/null 2>&1 || true
  exit 1
fi
echo "$ADDRESS"
