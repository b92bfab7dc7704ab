#!/usr/bin/env bash
# Start / stop the Flower SuperLink in simulation mode that `flwr run . local-simulation` uses,
# on 127.0.0.1 only, with its state, logs and pid under $FLWR_HOME/scaleclf-superlink.
#   infra/flower/superlink.sh start|stop|status
# The simulation it runs starts its own local Ray per run (RAY_ADDRESS=local), never a `ray start` cluster.
set -euo pipefail
home="${FLWR_HOME:-$HOME/.flwr}"
dir="$home/scaleclf-superlink"
port="${SCALECLF_FLWR_PORT:-29291}"  # below the ephemeral range, so no random listener takes it
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/.venv/bin"
[ -x "$bin/flower-superlink" ] || bin="$(dirname "$(command -v flower-superlink)")"
pidfile="$dir/superlink.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  start)
    mkdir -p "$dir"
    if running; then echo "SuperLink already running (pid $(cat "$pidfile"))"; exit 0; fi
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray treats the node as single-node and keeps the
    # simulation's Ray on 127.0.0.1 instead of the machine's network address.
    PATH="$bin:$PATH" RAY_ADDRESS=local RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 FLWR_DISABLE_UPDATE_CHECK=1 nohup "$bin/flower-superlink" --insecure --simulation \
      --isolation subprocess --disable-runtime-dependency-installation \
      --host 127.0.0.1 --port "$port" \
      --database "$dir/state.db" --log-file "$dir/superlink.log" >"$dir/stdout.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 150); do
      if ! running; then echo "SuperLink exited; see $dir/stdout.log" >&2; tail -5 "$dir/stdout.log" >&2; exit 1; fi
      if ss -ltnp 2>/dev/null | grep -q "127.0.0.1:$port .*pid=$(cat "$pidfile"),"; then echo "SuperLink up (pid $(cat "$pidfile"), 127.0.0.1:$port)"; exit 0; fi
      sleep 0.2
    done
    echo "SuperLink did not open 127.0.0.1:$port within 30 s; see $dir/stdout.log" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid="$(cat "$pidfile")"
      # The SuperLink's children (flower-superexec, flwr-simulation and its Ray) go first, by pid.
      descendants() { for c in $(ps -o pid= --ppid "$1"); do descendants "$c"; echo "$c"; done; }
      children="$(descendants "$pid")"
      kill -TERM "$pid" $children 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" $children 2>/dev/null || true
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
