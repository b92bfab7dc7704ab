#!/usr/bin/env bash
# Start / stop the Flower SuperLink in simulation mode that `flwr run . local-simulation` uses,
# on 127.0.0.1 only, with its state, logs and pid under $FLWR_HOME/scaleclf-superlink.
#   infra/flower/superlink.sh start|stop|status
# The simulation it runs starts its own local Ray per run (RAY_ADDRESS=local), never a `ray start` cluster.
set -euo pipefail
home="${FLWR_HOME:-$HOME/.flwr}"
dir="$home/scaleclf-superlink"
control_port="${SCALECLF_FLWR_CONTROL_PORT:-39293}"
http_port="${SCALECLF_FLWR_HTTP_PORT:-39291}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/.venv/bin"
[ -x "$bin/flower-superlink" ] || bin="$(dirname "$(command -v flower-superlink)")"
pidfile="$dir/superlink.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  start)
    mkdir -p "$dir"
    if running; then echo "SuperLink already running (pid $(cat "$pidfile"))"; exit 0; fi
    RAY_ADDRESS=local FLWR_DISABLE_UPDATE_CHECK=1 nohup "$bin/flower-superlink" --insecure --simulation \
      --isolation subprocess --disable-runtime-dependency-installation \
      --host 127.0.0.1 --port "$http_port" --control-api-address "127.0.0.1:$control_port" \
      --database "$dir/state.db" --log-file "$dir/superlink.log" >"$dir/stdout.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 150); do
      if (echo >"/dev/tcp/127.0.0.1/$control_port") 2>/dev/null; then echo "SuperLink up (pid $(cat "$pidfile"), control 127.0.0.1:$control_port)"; exit 0; fi
      if ! running; then echo "SuperLink exited; see $dir/stdout.log" >&2; tail -5 "$dir/stdout.log" >&2; exit 1; fi
      sleep 0.2
    done
    echo "SuperLink did not open 127.0.0.1:$control_port within 30 s; see $dir/stdout.log" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid="$(cat "$pidfile")"
      # The SuperLink's own children (flwr-simulation and its Ray) share its process group.
      kill -TERM -- "-$(ps -o pgid= "$pid" | tr -d ' ')" 2>/dev/null || kill -TERM "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
      echo "SuperLink stopped"
    fi
    rm -f "$pidfile"
    ;;
  status)
    if running; then echo "running (pid $(cat "$pidfile"))"; else echo "stopped"; exit 1; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
