#!/usr/bin/env bash
# Make a private CA and one certificate + key per host, for the engines' TLS (Dask tls://, Ray TLS).
#
#   infra/tls/make-certs.sh OUTDIR HOST...
#   infra/tls/make-certs.sh /tmp/certs h1 h2 h3 client        # simulated hosts (infra/hosts)
#   infra/tls/make-certs.sh /tmp/certs node-a=10.0.0.5 node-b=10.0.0.6
#
# HOST is hN (the simulated host's address, 10.77.0.(10+N) by default, see infra/hosts/env.sh),
# NAME=IP, or a bare NAME. Every certificate has SAN IPs 127.0.0.1 and the host's address (if
# any), SAN DNS NAME and localhost, and both serverAuth and clientAuth: every node of a Dask or Ray
# cluster is a server and a client of the others. Writes OUTDIR/ca.pem, ca.key and NAME.pem,
# NAME.key (keys mode 600). An existing CA in OUTDIR is reused, so hosts can be added later.
set -euo pipefail
OUT="${1:?usage: make-certs.sh OUTDIR HOST...}"
shift
[[ $# -ge 1 ]] || { echo "usage: make-certs.sh OUTDIR HOST..." >&2; exit 2; }
command -v openssl >/dev/null || { echo "error: make-certs.sh needs openssl" >&2; exit 2; }
HOSTS_NET="${HOSTS_NET:-10.77.0}"
DAYS="${CERT_DAYS:-30}"
mkdir -p "$OUT"
umask 077

if [[ ! -f "$OUT/ca.pem" || ! -f "$OUT/ca.key" ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$DAYS" \
    -subj "/CN=scaleclf test CA" -keyout "$OUT/ca.key" -out "$OUT/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

for spec in "$@"; do
  name="${spec%%=*}"
  ip=""
  if [[ "$spec" == *=* ]]; then
    ip="${spec#*=}"
  elif [[ "$name" =~ ^h([0-9]+)$ ]]; then
    ip="$HOSTS_NET.$((10 + BASH_REMATCH[1]))"
  fi
  [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "error: host name '$name' has characters other than A-Z a-z 0-9 . _ -" >&2; exit 2; }
  san="DNS:$name,DNS:localhost,IP:127.0.0.1"
  [[ -n "$ip" ]] && san="$san,IP:$ip"
  ext="$(mktemp)"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
    -keyout "$OUT/$name.key" -out "$OUT/$name.csr" 2>/dev/null
  openssl x509 -req -in "$OUT/$name.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial \
    -days "$DAYS" -extfile "$ext" -out "$OUT/$name.pem" 2>/dev/null
  rm -f "$OUT/$name.csr" "$ext"
  chmod 644 "$OUT/$name.pem"
  echo "$OUT/$name.pem ($san)"
done
chmod 644 "$OUT/ca.pem"
