# Shared names for the simulated hosts (sourced by up.sh, exec.sh, kill.sh, down.sh).
# HOSTS_PREFIX (sclf) names the bridge ($HOSTS_PREFIX-br0), the namespaces ($HOSTS_PREFIX-h1..)
# and the root-side veth ends ($HOSTS_PREFIX-v1..); HOSTS_NET (10.77.0) is the /24 they live on:
# the bridge is .1, host hI is .(10+I). No default route: hosts reach each other, the bridge
# address and their own loopback, nothing else.
HOSTS_PREFIX="${HOSTS_PREFIX:-sclf}"
HOSTS_NET="${HOSTS_NET:-10.77.0}"
BRIDGE="$HOSTS_PREFIX-br0"
BRIDGE_ADDR="$HOSTS_NET.1"

need_root() {
  if ! command -v ip >/dev/null 2>&1; then
    echo "error: simulated hosts need the 'ip' command (iproute2)" >&2
    exit 2
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "error: simulated hosts need root (network namespaces, veth, bridge)" >&2
    exit 2
  fi
}

# h3 / sclf-h3 / 3 -> sclf-h3
ns_name() {
  local h="$1"
  h="${h#"$HOSTS_PREFIX"-}"
  [[ "$h" =~ ^h?([0-9]+)$ ]] || { echo "error: host '$1' is not hN (e.g. h1)" >&2; exit 2; }
  echo "$HOSTS_PREFIX-h${BASH_REMATCH[1]}"
}

host_addr() {  # sclf-h3 -> 10.77.0.13
  local n="${1##*-h}"
  echo "$HOSTS_NET.$((10 + n))"
}

our_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$HOSTS_PREFIX-h[0-9]+$" || true
}
