#!/usr/bin/env bash
# Create N simulated hosts: network namespaces sclf-h1..hN on a private bridge sclf-br0.
#
#   infra/hosts/up.sh 4        # sclf-h1 = 10.77.0.11 ... sclf-h4 = 10.77.0.14, bridge 10.77.0.1
#
# Idempotent: hosts and links that already exist are kept. Prints "hI ADDRESS" per host.
# Run commands inside a host with exec.sh, kill a host with kill.sh, remove all with down.sh.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_root
N="${1:?usage: up.sh N}"
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 200 ]] || { echo "error: N must be 1..200, got '$N'" >&2; exit 2; }

if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
fi
ip addr replace "$BRIDGE_ADDR/24" dev "$BRIDGE"
ip link set "$BRIDGE" up

for i in $(seq 1 "$N"); do
  ns="$HOSTS_PREFIX-h$i"
  veth="$HOSTS_PREFIX-v$i"
  addr="$(host_addr "$ns")"
  ip netns list | awk '{print $1}' | grep -qx "$ns" || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  ip link set "$veth" master "$BRIDGE"
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  echo "h$i $addr"
done
