#!/usr/bin/env bash
# Kill a simulated host: SIGKILL every process in its network namespace, as a power cut would.
# The namespace and its address stay, so the host can be "rebooted" by starting processes again.
#
#   infra/hosts/kill.sh h2
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_root
ns="$(ns_name "${1:?usage: kill.sh HOST}")"
ip netns list | awk '{print $1}' | grep -qx "$ns" || exit 0
for _ in $(seq 1 50); do
  pids="$(ip netns pids "$ns" 2>/dev/null || true)"
  [[ -z "$pids" ]] && exit 0
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.1
done
echo "error: processes still alive in $ns: $(ip netns pids "$ns" | tr '\n' ' ')" >&2
exit 1
