#!/usr/bin/env bash
# Run one Dask node of a cluster that spans machines, in the foreground (one per machine, e.g.
# under systemd, or inside a simulated host: infra/hosts/exec.sh h1 infra/dask/node.sh ...).
#
#   infra/dask/node.sh scheduler --host 10.77.0.11 [--port 8786] [--tls CERTDIR NAME]
#   infra/dask/node.sh worker tls://10.77.0.11:8786 --host 10.77.0.12 [--tls CERTDIR NAME]
#                                                    [--nworkers 1] [--nthreads 1] [--memory auto]
#
# Every listener (scheduler, dashboard, worker, nanny, worker HTTP) binds --host, the machine's own
# address, never 0.0.0.0. --tls CERTDIR NAME uses CERTDIR/ca.pem and CERTDIR/NAME.pem/.key
# (infra/tls/make-certs.sh): the node speaks tls:// and accepts only peers whose certificate the
# CA signed. Without --tls the node speaks plain tcp://, for a trusted network only.
# The job connects with --set engine.address=tls://HOST:PORT plus engine.options.tls_ca_file,
# tls_cert, tls_key (docs/engines/dask.md).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${DASK_BIN:-$REPO/.venv/bin}"
usage() { echo "usage: node.sh scheduler --host ADDR [--port N] [--tls CERTDIR NAME] | node.sh worker SCHEDULER --host ADDR [--tls CERTDIR NAME] [--nworkers N] [--nthreads N] [--memory SIZE]" >&2; exit 2; }
role="${1:-}"; shift || true
scheduler=""
if [[ "$role" == worker ]]; then scheduler="${1:-}"; shift || true; [[ -n "$scheduler" ]] || usage; fi
case "$role" in
  scheduler) ;;
  worker) ;;
  *) usage ;;
esac
host="" port=8786 certs="" name="" nworkers=1 nthreads=1 memory=auto
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --tls) certs="$2"; name="$3"; shift 3 ;;
    --nworkers) nworkers="$2"; shift 2 ;;
    --nthreads) nthreads="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    *) echo "error: node.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ -n "$host" ]] || { echo "error: node.sh: --host ADDR is required (the machine's own address; never 0.0.0.0)" >&2; exit 2; }
[[ "$host" != 0.0.0.0 && "$host" != "::" ]] || { echo "error: node.sh: --host $host listens on every interface; give the machine's own address" >&2; exit 2; }

tls=(--protocol tcp)
if [[ -n "$certs" ]]; then
  for f in ca.pem "$name.pem" "$name.key"; do
    [[ -r "$certs/$f" ]] || { echo "error: node.sh: --tls: cannot read $certs/$f (infra/tls/make-certs.sh $certs $name)" >&2; exit 2; }
  done
  tls=(--protocol tls --tls-ca-file "$certs/ca.pem" --tls-cert "$certs/$name.pem" --tls-key "$certs/$name.key")
  # Every connection this node opens (worker -> scheduler, worker -> worker) is TLS too.
  export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True
fi

cd "$REPO"  # workers import scaleclf's modules from this checkout
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [[ "$role" == scheduler ]]; then
  exec "$BIN/dask" scheduler --host "$host" --port "$port" --dashboard-address "$host:$((port + 1))" "${tls[@]}"
fi
exec "$BIN/dask" worker "$scheduler" --host "$host" --nworkers "$nworkers" --nthreads "$nthreads" \
  --memory-limit "$memory" --no-dashboard --dashboard-address "$host:0" \
  --local-directory "${DASK_LOCAL_DIR:-/tmp/scaleclf-dask-worker-$host}" "${tls[@]}"
