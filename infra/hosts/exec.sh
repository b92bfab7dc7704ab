#!/usr/bin/env bash
# Run a command inside a simulated host (its network namespace; same files and users).
#
#   infra/hosts/exec.sh h1 ip -brief addr
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_root
[[ $# -ge 2 ]] || { echo "usage: exec.sh HOST CMD [ARG...]" >&2; exit 2; }
ns="$(ns_name "$1")"
shift
ip netns list | awk '{print $1}' | grep -qx "$ns" || { echo "error: host $ns does not exist (infra/hosts/up.sh)" >&2; exit 2; }
exec ip netns exec "$ns" "$@"
