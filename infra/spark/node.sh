#!/usr/bin/env bash
# Run one node of a standalone Spark cluster that spans machines, in the foreground (one per
# machine, or inside a simulated host: infra/hosts/exec.sh h1 infra/spark/node.sh master ...).
#
#   infra/spark/node.sh master --host 10.77.0.11 [--port 7077] [--webui-port 8080]
#   infra/spark/node.sh worker spark://10.77.0.11:7077 --host 10.77.0.12 [--cores N] [--memory 2g]
#
# The node binds --host, the machine's own address (RPC and web UI), never 0.0.0.0, and reads
# the cluster's spark-defaults.conf from $SPARK_CONF_DIR: make one with
# infra/spark/cluster-conf.sh (spark.authenticate with a shared secret, encrypted RPC) and give
# every node and the driver the same file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
usage() { echo "usage: node.sh master --host ADDR [--port N] [--webui-port N] | node.sh worker MASTER_URL --host ADDR [--cores N] [--memory SIZE]" >&2; exit 2; }
role="${1:-}"; shift || true
master_url=""
if [[ "$role" == worker ]]; then master_url="${1:-}"; shift || true; [[ -n "$master_url" ]] || usage; fi
case "$role" in
  master) ;;
  worker) ;;
  *) usage ;;
esac
host="" port=7077 webui=8080 cores="$(nproc)" memory=2g
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --webui-port) webui="$2"; shift 2 ;;
    --cores) cores="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    *) echo "error: node.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ -n "$host" && "$host" != 0.0.0.0 ]] || { echo "error: node.sh: --host ADDR (the machine's own address, never 0.0.0.0) is required" >&2; exit 2; }
export SPARK_LOCAL_IP="$host" SPARK_PUBLIC_DNS="$host"
work="$SCALECLF_SPARK_DIR/$host"
mkdir -p "$work/work" "$work/local"
export SPARK_LOCAL_DIRS="$work/local"
if [[ "$role" == master ]]; then
  exec "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master --host "$host" --port "$port" --webui-port "$webui"
fi
exec "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker --host "$host" --webui-port 0 \
  --cores "$cores" --memory "$memory" --work-dir "$work/work" "$master_url"
