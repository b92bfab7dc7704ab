#!/usr/bin/env bash
# Stop the master and worker that start-cluster.sh started (by their recorded pids only).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

for name in worker master; do
  pidfile="$SCALECLF_SPARK_DIR/$name.pid"
  [[ -f "$pidfile" ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -- "-$pid" 2>/dev/null || kill "$pid"  # setsid made it a group leader: stop its children too
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 -- "-$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
  echo "stopped Spark $name (pid $pid)" >&2
done
