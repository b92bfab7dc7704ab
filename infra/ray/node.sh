#!/usr/bin/env bash
# Run one Ray node of a cluster that spans machines, in the foreground (one per machine, e.g.
# under systemd, or inside a simulated host: infra/hosts/exec.sh h1 infra/ray/node.sh ...).
#
#   infra/ray/node.sh token FILE                   # make a random token (mode 600) unless FILE exists
#   infra/ray/node.sh head --host 10.77.0.11 [--port 6379] [--tls CERTDIR NAME] [--token FILE]
#                          [--cpus N] [--object-store-mb MB]
#   infra/ray/node.sh worker 10.77.0.11:6379 --host 10.77.0.12 [--tls CERTDIR NAME] [--token FILE] [...]
#   eval "$(infra/ray/node.sh env --tls CERTDIR client --token FILE)"   # the same settings for a
#                                                  # driver, `ray job submit` or `ray status`
#
# --tls CERTDIR NAME turns on Ray's TLS (RAY_USE_TLS with CERTDIR/ca.pem and CERTDIR/NAME.pem/.key,
# from infra/tls/make-certs.sh): every gRPC connection between Ray processes, and from drivers, is
# mutually authenticated TLS. --token FILE turns on Ray's token authentication (RAY_AUTH_MODE=token,
# Ray 2.52+): every node, driver and job client must present the token, the dashboard and Jobs
# API included. Every process of the cluster and every client needs the same settings.
#
# The head has 0 CPUs unless --cpus says otherwise: training and data tasks run on the workers.
# Listeners that take an address bind --host (dashboard and Jobs API :8265, Ray Client :10001,
# runtime-env and dashboard agents); Ray 2.55's own gRPC servers (GCS, raylet, object manager,
# workers), the dashboard agent's gRPC port and the Prometheus metrics endpoints (every node's
# :44230, the head's autoscaler :44217 and dashboard :44227, plain HTTP, read-only) listen on every
# interface and cannot be bound (docs/deploy.md); the gRPC ones speak TLS only and want the token.
# Each node keeps its session under RAY_NODE_TEMP_DIR (default /tmp/scaleclf-ray-ADDR), so nodes
# sharing a file system do not share a session directory.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${RAY_BIN_DIR:-$REPO/.venv/bin}"
usage() {
  echo "usage: node.sh token FILE | node.sh env [--tls CERTDIR NAME] [--token FILE] |" \
    "node.sh head --host ADDR [--port N] [options] | node.sh worker HEAD:PORT --host ADDR [options]" >&2
  exit 2
}
role="${1:-}"; shift || true
case "$role" in
  token)
    file="${1:-}"; [[ -n "$file" ]] || usage
    [[ -s "$file" ]] || (umask 077; openssl rand -hex 32 >"$file")
    echo "$file"; exit 0 ;;
  env | head) ;;
  worker) head="${1:-}"; shift || true; [[ "$head" == *:* ]] || usage ;;
  *) usage ;;
esac
host="" port=6379 certs="" name="" token="" cpus="" store_mb=1024
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --tls) certs="$2"; name="$3"; shift 3 ;;
    --token) token="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --object-store-mb) store_mb="$2"; shift 2 ;;
    *) echo "error: node.sh: unknown option $1" >&2; usage ;;
  esac
done

settings=()
if [[ -n "$certs" ]]; then
  for f in ca.pem "$name.pem" "$name.key"; do
    [[ -r "$certs/$f" ]] || { echo "error: node.sh: --tls: cannot read $certs/$f (infra/tls/make-certs.sh $certs $name)" >&2; exit 2; }
  done
  certs="$(cd "$certs" && pwd)"
  settings+=(RAY_USE_TLS=1 "RAY_TLS_SERVER_CERT=$certs/$name.pem" "RAY_TLS_SERVER_KEY=$certs/$name.key"
    "RAY_TLS_CA_CERT=$certs/ca.pem")
fi
if [[ -n "$token" ]]; then
  [[ -f "$token" && -s "$token" && -r "$token" ]] || { echo "error: node.sh: --token: cannot read $token (infra/ray/node.sh token $token)" >&2; exit 2; }
  settings+=(RAY_AUTH_MODE=token "RAY_AUTH_TOKEN_PATH=$(cd "$(dirname "$token")" && pwd)/$(basename "$token")")
fi
if [[ "$role" == env ]]; then
  for s in "${settings[@]}"; do printf 'export %q\n' "$s"; done
  exit 0
fi

if [[ ! -x "$BIN/ray" ]]; then
  command -v ray >/dev/null || { echo "error: node.sh: no ray in $BIN or on PATH (make install, or set RAY_BIN_DIR)" >&2; exit 2; }
  BIN="$(dirname "$(command -v ray)")"
fi
[[ -n "$host" ]] || { echo "error: node.sh: --host ADDR is required (the machine's own address; never 0.0.0.0)" >&2; exit 2; }
[[ "$host" != 0.0.0.0 && "$host" != "::" ]] || { echo "error: node.sh: --host $host listens on every interface; give the machine's own address" >&2; exit 2; }
for s in "${settings[@]}"; do export "${s?}"; done
unset RAY_ADDRESS  # never join another cluster by accident
export PATH="$BIN:$PATH"  # job drivers and workers run the Python Ray came with
cd "$REPO"  # `ray job submit` without --working-dir imports scaleclf from this checkout
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
common=(--node-ip-address="$host" --object-store-memory="$((store_mb * 1024 * 1024))"
  --temp-dir="${RAY_NODE_TEMP_DIR:-/tmp/scaleclf-ray-$host}" --metrics-export-port=44230
  --disable-usage-stats --block)
if [[ "$role" == head ]]; then
  exec "$BIN/ray" start --head --port="$port" --num-cpus="${cpus:-0}" \
    --dashboard-host="$host" --dashboard-port=8265 --include-dashboard=true "${common[@]}"
fi
exec "$BIN/ray" start --address="$head" ${cpus:+--num-cpus="$cpus"} "${common[@]}"
