# Shared by scripts/cluster and the programs it starts inside the cluster's namespaces.
#
# A cluster is a state directory ($TWILL_CLUSTER_DIR, default /var/tmp/twill-cluster) whose
# cluster.env names everything it made: the namespace prefix, the cgroup directory every one
# of its processes lives under, the node names. `down` works from that file alone, so it also
# cleans up after an `up` that failed half way.

KUBE_BIN="${TWILL_KUBE_CACHE:-/var/cache/twill/kube}/bin"
KUBE_IMAGES="${TWILL_KUBE_CACHE:-/var/cache/twill/kube}/images"
CLUSTER_DIR="${TWILL_CLUSTER_DIR:-/var/tmp/twill-cluster}"
CLUSTER_ENV="$CLUSTER_DIR/cluster.env"

# The underlay: one switch namespace with a bridge; the control plane and every node hang off it.
# A dual-stack cluster (IP_FAMILY=dual in cluster.env) gives the bridge, the control plane and
# every node an IPv6 address too, in a ULA prefix whose host part repeats the IPv4 one.
# With two racks (RACKS=2 in cluster.env) the switch namespace is also the router between two
# bridges: rack a (UNDERLAY_NET, the control plane and the first half of the nodes) and rack b
# (UNDERLAY_NET_B, the other half); each rack's .1 / ::1 is its nodes' gateway.
UNDERLAY_NET=192.168.90
UNDERLAY_NET6=fd00:90:
UNDERLAY_NET_B=192.168.91
UNDERLAY_NET6_B=fd00:91:
# The racks' router speaks BGP (FRR) to every node in the bgp backend's routers mode; node-N's
# own AS is ROUTER_AS + N.
ROUTER_AS=65000
CP_IP="$UNDERLAY_NET.2"
CP_IP6="$UNDERLAY_NET6:2"
# Stands in for the Internet the machine does not reach: an HTTP server that `google.com`
# resolves to in the cluster's DNS (e2e's [sig-network] Networking tests first GET
# http://google.com from the test runner and fail without an answer).
OUTSIDE_IP="$UNDERLAY_NET.3"
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
# The IPv6 halves of a dual-stack cluster: a /64 per node out of the /56 (kube-controller-manager
# allows at most 16 bits between the two), and Services from a /112 (the apiserver's IPv6 range
# may hold at most 2^20 addresses).
CLUSTER_CIDR6=fd00:10:244::/56
SERVICE_CIDR6=fd00:10:96::/112
KUBERNETES_SVC_IP=10.96.0.1
CLUSTER_DNS_IP=10.96.0.10
APISERVER_PORT=6443

# rack_of NODE: a or b. Rack a holds node-1 up to half the nodes (rounded up), rack b the rest.
rack_of() {
  local count
  count="$(wc -w <<<"${NODES:-}")"
  if [ "${RACKS:-1}" = 2 ] && ((${1#node-} > (count + 1) / 2)); then echo b; else echo a; fi
}
racks() { if [ "${RACKS:-1}" = 2 ]; then echo a b; else echo a; fi; }
# rack_net RACK / rack_net6 RACK: the rack's prefix, as UNDERLAY_NET and UNDERLAY_NET6 spell it.
rack_net() { if [ "$1" = b ]; then echo "$UNDERLAY_NET_B"; else echo "$UNDERLAY_NET"; fi; }
rack_net6() { if [ "$1" = b ]; then echo "$UNDERLAY_NET6_B"; else echo "$UNDERLAY_NET6"; fi; }
# node-N is .10+N (::10+N) in its rack's prefix.
node_ip() { echo "$(rack_net "$(rack_of "$1")").$((10 + ${1#node-}))"; }
node_ip6() { echo "$(rack_net6 "$(rack_of "$1")"):$((10 + ${1#node-}))"; }
# node_routers NODE: the node's BGP routers as twilld's --bgp-routers and the Node annotation
# twill.dev/bgp-routers take them: its rack's gateway of each family, AS ROUTER_AS.
node_routers() {
  local rack
  rack="$(rack_of "$1")"
  if dual; then echo "$(rack_net "$rack").1@$ROUTER_AS,$(rack_net6 "$rack"):1@$ROUTER_AS"; else echo "$(rack_net "$rack").1@$ROUTER_AS"; fi
}

# The cluster's CIDRs as the control plane's flags take them: IPv4 first (the primary family,
# which pods' status.podIP and Services without ipFamilies get), then IPv6 when dual-stack.
dual() { [ "${IP_FAMILY:-4}" = dual ]; }
cluster_cidrs() { if dual; then echo "$CLUSTER_CIDR,$CLUSTER_CIDR6"; else echo "$CLUSTER_CIDR"; fi; }
service_cidrs() { if dual; then echo "$SERVICE_CIDR,$SERVICE_CIDR6"; else echo "$SERVICE_CIDR"; fi; }
node_ips() { if dual; then echo "$(node_ip "$1"),$(node_ip6 "$1")"; else node_ip "$1"; fi; }
# kube-apiserver, kube-controller-manager, kubelet and kube-proxy 1.20 need the alpha gate for
# two families (dual-stack Services, a podCIDR per family, two node IPs, both proxiers).
feature_gates() { if dual; then echo "--feature-gates=IPv6DualStack=true"; fi; }

say() { printf 'cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

load_env() {
  [ -f "$CLUSTER_ENV" ] || return 1
  # shellcheck disable=SC1090
  . "$CLUSTER_ENV"
}

ns_of() { echo "${PREFIX}$1"; }
in_ns() { local ns="$1"; shift; nsenter --net="/run/netns/$ns" "$@"; }

# Every cgroup v1 hierarchy (and the v2 one beside them) mounted under /sys/fs/cgroup.
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts | grep '^/sys/fs/cgroup/' || true
}

# cgroup_join PATH PID: creates PATH (relative to each hierarchy's root) everywhere and moves
# PID into it. cpuset needs its cpus and mems set at each level before a task can join.
cgroup_join() {
  local rel="$1" pid="$2" h dir part
  for h in $(cgroup_hierarchies); do
    dir="$h"
    for part in ${rel//\// }; do
      dir="$dir/$part"
      if [ ! -d "$dir" ]; then
        mkdir "$dir"
        if [ -f "$dir/cpuset.cpus" ]; then
          cat "$(dirname "$dir")/cpuset.cpus" >"$dir/cpuset.cpus"
          cat "$(dirname "$dir")/cpuset.mems" >"$dir/cpuset.mems"
        fi
      fi
    done
    echo "$pid" >"$dir/cgroup.procs"
  done
}

# The PIDs of every process in the cgroup subtree REL (any hierarchy sees them all).
cgroup_pids() {
  local rel="$1" h
  for h in $(cgroup_hierarchies); do
    [ -d "$h/$rel" ] && find "$h/$rel" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# Stops every process in the subtree (TERM, then KILL after `grace` seconds), then removes
# the directories, deepest first.
cgroup_stop_and_remove() {
  local rel="$1" grace="${2:-5}" pids i h
  pids="$(cgroup_pids "$rel")"
  if [ -n "$pids" ]; then
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < grace * 5; i++)); do
      [ -z "$(cgroup_pids "$rel")" ] && break
      sleep 0.2
    done
  fi
  for ((i = 0; i < 50; i++)); do
    pids="$(cgroup_pids "$rel")"
    [ -z "$pids" ] && break
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  for h in $(cgroup_hierarchies); do
    [ -d "$h/$rel" ] && find "$h/$rel" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  for h in $(cgroup_hierarchies); do
    if [ -d "$h/$rel" ]; then say "could not remove cgroup $h/$rel"; return 1; fi
  done
}

# until_true SECONDS WHAT CMD...: runs CMD every half second until it succeeds.
until_true() {
  local secs="$1" what="$2" end
  shift 2
  end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then say "timed out after ${secs}s waiting for $what"; return 1; fi
    sleep 0.5
  done
}
