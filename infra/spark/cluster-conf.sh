#!/usr/bin/env bash
# Write a cluster's Spark configuration directory: conf/spark-defaults.conf plus authentication
# (spark.authenticate with a new random shared secret) and AES-encrypted RPC
# (spark.network.crypto.enabled). Give every master, worker and driver this directory as
# SPARK_CONF_DIR; a driver without the secret is refused by the master.
#
#   infra/spark/cluster-conf.sh OUTDIR [EXTRA spark-defaults LINES...]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:?usage: cluster-conf.sh OUTDIR [\"key value\"...]}"
shift
mkdir -p "$out"
umask 077
secret="$(openssl rand -hex 32)"
{
  cat "$repo/conf/spark-defaults.conf"
  echo
  echo "# Written by infra/spark/cluster-conf.sh: authentication and encrypted RPC between all nodes."
  echo "spark.authenticate                                  true"
  echo "spark.authenticate.secret                           $secret"
  echo "spark.network.crypto.enabled                        true"
  echo "spark.authenticate.enableSaslEncryption           false"
  for line in "$@"; do echo "$line"; done
} >"$out/spark-defaults.conf"
cp "$repo/conf/log4j2.properties" "$out/" 2>/dev/null || true
echo "$out"
