#!/usr/bin/env bash
# Stop the scheduler and workers that infra/dask/start.sh started (by their saved process ids).
set -uo pipefail
PORT="${DASK_PORT:-8786}"
STATE="${DASK_STATE_DIR:-/tmp/scaleclf-dask-$PORT}"
for name in workers scheduler; do
  pidfile="$STATE/$name.pid"
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
echo "stopped the Dask cluster on 127.0.0.1:$PORT"
