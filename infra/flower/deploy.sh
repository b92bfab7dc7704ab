#!/usr/bin/env bash
# Flower deployment mode: a SuperLink and N SuperNodes as separate processes, TLS on every
# connection (a private CA, infra/tls/make-certs.sh) and SuperNode authentication (each node's
# P-384 key registered with `flwr supernode register` before it starts; unregistered keys are refused).
#
#   infra/flower/deploy.sh up N        # SuperLink + N SuperNodes, node I gets partition-id=I num-partitions=N
#   flwr run . scaleclf-deploy --stream --run-config "spec='$PWD/conf/federated_deploy.yaml' overrides='output.dir=$PWD/runs'"
#   infra/flower/deploy.sh node I N [KEY]   # one more SuperNode (partition I of N), with KEY instead of its registered key
#   infra/flower/deploy.sh down
#   infra/flower/deploy.sh status
#
# Where: on 127.0.0.1 by default; with SCALECLF_FLWR_HOSTS=1 (root, after infra/hosts/up.sh N+1) the
# SuperLink runs on simulated host h1 and SuperNode I on host h(I+2), each in its own network namespace.
# State (certificates, node keys, logs, pids, the SuperLink's database) lives in $FLWR_HOME/scaleclf-deploy;
# `up` writes the federation `scaleclf-deploy` (address + CA, no `insecure`) into $FLWR_HOME/config.toml.
# Port: SCALECLF_FLWR_DEPLOY_PORT (default 29391) serves the SuperLink's Fleet, Control and Runtime APIs;
# on loopback SuperNode I's local runtime API takes port +10+I.
set -euo pipefail
home="${FLWR_HOME:-$HOME/.flwr}"
export FLWR_HOME="$home" FLWR_DISABLE_UPDATE_CHECK=1
dir="$home/scaleclf-deploy"
port="${SCALECLF_FLWR_DEPLOY_PORT:-29391}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/.venv/bin"
if [ ! -x "$bin/flower-superlink" ]; then
  command -v flower-superlink >/dev/null || { echo "error: flower-superlink not found (make .venv, or put flwr on PATH)" >&2; exit 2; }
  bin="$(dirname "$(command -v flower-superlink)")"
fi
hosts="${SCALECLF_FLWR_HOSTS:-0}"
source "$root/infra/hosts/env.sh"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Run a command on a simulated host (hosts mode) or here; the command's pid goes to $pidfile.
launch() {
  local where="$1" log="$2" pidfile="$3"
  shift 3
  if [ "$hosts" = 1 ]; then
    PATH="$bin:$PATH" nohup "$root/infra/hosts/exec.sh" "$where" "$@" >"$log" 2>&1 &
  else
    PATH="$bin:$PATH" nohup "$@" >"$log" 2>&1 &
  fi
  echo $! >"$pidfile"
}

link_addr() { if [ "$hosts" = 1 ]; then host_addr "$HOSTS_PREFIX-h1"; else echo 127.0.0.1; fi; }

write_federation() {
  "$bin/python" - "$home/config.toml" "$1" "$2" <<'PY'
import sys
from pathlib import Path

import tomli
import tomli_w

path, address, ca = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
data = tomli.loads(path.read_text()) if path.exists() else {}
data.setdefault("superlink", {})["scaleclf-deploy"] = {"address": address, "root-certificates": ca}
path.write_text(tomli_w.dumps(data))
PY
}

wait_listening() {  # wait until the SuperLink answers TLS on its port
  local addr="$1" pidfile="$2"
  for _ in $(seq 1 150); do
    alive "$pidfile" || { echo "error: SuperLink exited; see $dir/superlink.log" >&2; tail -5 "$dir/superlink.log" >&2; exit 1; }
    if "$bin/python" - "$addr" "$port" "$dir/certs/ca.pem" <<'PY' 2>/dev/null; then return 0; fi
import socket
import ssl
import sys

ctx = ssl.create_default_context(cafile=sys.argv[3])
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1) as s:
    ctx.wrap_socket(s, server_hostname=sys.argv[1]).close()
PY
    sleep 0.2
  done
  echo "error: SuperLink did not answer on $addr:$port within 30 s; see $dir/superlink.log" >&2
  exit 1
}

wait_online() {  # wait until N SuperNodes are online at the SuperLink
  local online=0
  for _ in $(seq 1 60); do
    online="$("$bin/flwr" supernode ls scaleclf-deploy --format json 2>/dev/null | "$bin/python" -c \
      'import json, sys; print(sum(n["status"] == "online" for n in json.load(sys.stdin)["nodes"]))' 2>/dev/null || echo 0)"
    [ "$online" -ge "$1" ] && return 0
    sleep 1
  done
  echo "error: only $online of $1 SuperNodes came online; see $dir/node-*.log" >&2
  exit 1
}

up() {
  local n="${1:?usage: deploy.sh up N}"
  [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 ]] || { echo "error: N must be a positive number of SuperNodes, got '$n'" >&2; exit 2; }
  if alive "$dir/superlink.pid"; then echo "error: a deployment is already up ($dir); run deploy.sh down" >&2; exit 2; fi
  command -v ssh-keygen >/dev/null || { echo "error: deploy.sh needs ssh-keygen (SuperNode keys)" >&2; exit 2; }
  [ "$hosts" = 1 ] && need_root
  local addr
  addr="$(link_addr)"
  rm -rf "$dir" && mkdir -p "$dir/certs" "$dir/keys"
  "$root/infra/tls/make-certs.sh" "$dir/certs" "superlink=$addr" >/dev/null
  for i in $(seq 0 $((n - 1))); do
    ssh-keygen -q -t ecdsa -b 384 -N "" -C "scaleclf-node-$i" -f "$dir/keys/node-$i"
  done
  launch h1 "$dir/superlink.log" "$dir/superlink.pid" "$bin/flower-superlink" \
    --ssl-ca-certfile "$dir/certs/ca.pem" --ssl-certfile "$dir/certs/superlink.pem" \
    --ssl-keyfile "$dir/certs/superlink.key" --enable-supernode-auth \
    --isolation subprocess --disable-runtime-dependency-installation \
    --host "$addr" --port "$port" --database "$dir/state.db"
  wait_listening "$addr" "$dir/superlink.pid"
  write_federation "$addr:$port" "$dir/certs/ca.pem"
  for i in $(seq 0 $((n - 1))); do
    "$bin/flwr" supernode register "$dir/keys/node-$i.pub" scaleclf-deploy --name "node-$i" >>"$dir/register.log" 2>&1 \
      || { echo "error: registering node-$i failed; see $dir/register.log" >&2; exit 1; }
    start_node "$i" "$n"
  done
  wait_online "$n"
  echo "SuperLink https://$addr:$port (TLS, SuperNode auth), $n SuperNodes; federation scaleclf-deploy in $home/config.toml"
}

# start_node I N [KEY]: SuperNode I (partition I of N) with KEY (default: its registered key).
start_node() {
  local i="$1" n="$2" key="${3:-$dir/keys/node-$1}" where="h$(($1 + 2))"
  local rport=$((port + 10 + i))
  [ "$hosts" = 1 ] && rport=9094
  launch "$where" "$dir/node-$i.log" "$dir/node-$i.pid" "$bin/flower-supernode" \
    --superlink "$(link_addr):$port" --root-certificates "$dir/certs/ca.pem" \
    --auth-supernode-private-key "$key" --node-config "partition-id=$i num-partitions=$n" \
    --port "$rport" --max-retries 5
}

down() {
  descendants() { for c in $(ps -o pid= --ppid "$1"); do descendants "$c"; echo "$c"; done; }
  for pidfile in "$dir"/node-*.pid "$dir/superlink.pid"; do
    [ -f "$pidfile" ] || continue
    if alive "$pidfile"; then
      local pid children
      pid="$(cat "$pidfile")"
      children="$(descendants "$pid")"
      # shellcheck disable=SC2086
      kill -TERM "$pid" $children 2>/dev/null || true
      for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      # shellcheck disable=SC2086
      kill -KILL "$pid" $children 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  echo "deployment stopped"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  node) start_node "${2:?usage: deploy.sh node I N [KEY]}" "${3:?usage: deploy.sh node I N [KEY]}" "${4:-}" ;;
  down) down ;;
  status)
    alive "$dir/superlink.pid" || { echo "stopped"; exit 1; }
    echo "SuperLink running (pid $(cat "$dir/superlink.pid"))"
    for f in "$dir"/node-*.pid; do [ -f "$f" ] && { alive "$f" && echo "$(basename "$f" .pid) running" || echo "$(basename "$f" .pid) exited"; }; done
    ;;
  *) echo "usage: $0 up N | node I N [KEY] | down | status" >&2; exit 2 ;;
esac
