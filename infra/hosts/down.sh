#!/usr/bin/env bash
# Remove every simulated host: kill their processes, delete the namespaces, veths and the bridge.
# Leaves nothing behind; safe to run when nothing is up.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_root
here="$(dirname "$0")"
status=0
for ns in $(our_namespaces); do
  "$here/kill.sh" "$ns" || status=1
  ip netns delete "$ns" 2>/dev/null || true
done
for veth in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^$HOSTS_PREFIX-v[0-9]+$" || true); do
  ip link delete "$veth" 2>/dev/null || true
done
ip link delete "$BRIDGE" 2>/dev/null || true
exit $status
