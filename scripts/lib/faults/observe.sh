# What scripts/fault-test measures around each scenario, sourced by it after
# scripts/lib/cluster/workload.sh. A scenario's directory SDIR collects:
#
#   checks.tsv      ok|FAIL <tab> what was checked (report.mjs fails on a FAIL)
#   facts.tsv       name <tab> value, shown in the scenario's table
#   pods.tsv        each pod made during it: name, node, Ready, seconds to Ready, IPv4, IPv6, reach
#   strict-flows    the traffic flows that must see no failed new connection
#   before/ after/  snapshots (workload.sh's snapshot, and datapath below)
#   twilld-NODE.log twilld's log lines of the scenario's time (of the containers kubelet still keeps)

# check SDIR ok|FAIL TEXT
check() {
  printf '%s\t%s\n' "$2" "$3" >>"$1/checks.tsv"
  if [ "$2" != ok ]; then log "FAIL: $3"; fi
}
# fact SDIR NAME VALUE
fact() { printf '%s\t%s\n' "$2" "$3" >>"$1/facts.tsv"; }
# check_that SDIR TEXT CMD...: whether CMD succeeds, as a check.
check_that() {
  local sdir="$1" text="$2"
  shift 2
  if "$@"; then check "$sdir" ok "$text"; else check "$sdir" FAIL "$text"; fi
}
quiet() { "$@" >/dev/null 2>&1; }

# datapath DIR NODE...: per node, twill's routes (protocol 150), the VXLAN device's FDB and
# permanent neighbour entries, the nftables tables, the IPAM store's addresses and twilld's
# metrics, read inside the node (no API needed).
datapath() {
  local dir="$1" n
  shift
  mkdir -p "$dir"
  for n in "$@"; do
    "$cluster" node "$n" sh -c 'ip -4 route show proto 150; ip -6 route show proto 150' >"$dir/routes-$n.txt" 2>&1 || true
    "$cluster" node "$n" sh -c 'for d in $(ls /sys/class/net | grep "^twill\."); do
        bridge fdb show dev "$d"; ip neigh show dev "$d" nud permanent; done' >"$dir/fdb-neigh-$n.txt" 2>&1 || true
    "$cluster" node "$n" nft list tables >"$dir/nft-tables-$n.txt" 2>&1 || true
    "$cluster" node "$n" sh -c 'ls /var/lib/cni/networks/twill | grep "^[0-9a-f.:]*$" | sort' >"$dir/store-$n.txt" 2>&1 || true
    { "$cluster" node "$n" curl -s --max-time 5 http://127.0.0.1:9402/metrics || true; } | grep '^twill_' >"$dir/metrics-$n.txt" || true
  done
}

# same_files A B NAME...: whether each A/NAME equals B/NAME; the differences to stderr.
same_files() {
  local a="$1" b="$2" f rc=0
  shift 2
  for f in "$@"; do
    if ! diff -u "$a/$f" "$b/$f" >&2; then rc=1; fi
  done
  return "$rc"
}

# twilld_pid NODE: the PID (in this machine's PID namespace) of twilld in twill's pod on NODE:
# PID 1 of its container's PID namespace, among the processes of the container's cgroup.
twilld_pid() {
  local pod id dir h p
  pod="$(twill_pod "$1")"
  id="$(kc -n kube-system get pod "$pod" -o jsonpath='{.status.containerStatuses[?(@.name=="twilld")].containerID}' 2>/dev/null || true)"
  id="${id#containerd://}"
  [ -n "$id" ] || return 0
  h="$(cgroup_hierarchies | head -1)"
  dir="$(find "$h/$CGROUP_ROOT/$1" -type d -name "$id" 2>/dev/null | head -1 || true)"
  [ -n "$dir" ] || return 0
  for p in $(cat "$dir/cgroup.procs" 2>/dev/null); do
    if [ "$(awk '/^NSpid/ { print $NF }' "/proc/$p/status" 2>/dev/null)" = 1 ] && grep -aq twilld "/proc/$p/cmdline" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
}

# try_pod SDIR NAME NODE: a new pod on NODE: Ready within 90 s, an address of each family, and
# the server on the other traffic node reached from it over both (traffic.mjs probe in its
# network namespace); then deleted, and the deletion awaited. A line in SDIR/pods.tsv; fails
# when any of that did not happen.
try_pod() {
  local sdir="$1" name="$2" n="$3" t0=$SECONDS ready=no secs=- v4="" v6="" reach=- peer netns
  pod_yaml "$name" "$n" probe | kc apply -f - >/dev/null
  if kc -n "$WORKLOAD_NS" wait --for=condition=Ready pod "$name" --timeout=90s >/dev/null 2>&1; then
    ready=yes
    secs=$((SECONDS - t0))
    v4="$(pod_ip "$name" 0)"
    v6="$(pod_ip "$name" 1)"
    peer="$(other "$n")"
    reach=FAILED
    if netns="$(netns_of "$name")" && nsenter --net="$netns" node "$traffic" probe \
      --dial "ipv4=$(pod_ip "server-$peer" 0):7000" --dial "ipv6=[$(pod_ip "server-$peer" 1)]:7000" >>"$sdir/probes.jsonl" 2>&1; then
      reach=ok
    fi
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$ready" "$secs" "${v4:--}" "${v6:--}" "$reach" >>"$sdir/pods.tsv"
  kc -n "$WORKLOAD_NS" delete pod "$name" --wait=true --timeout=90s >/dev/null 2>&1 || true
  [ "$ready" = yes ] && [ -n "$v4" ] && [ -n "$v6" ] && [ "$reach" = ok ]
}

# twilld_logs SDIR FROM NODE...: twilld's lines since FROM (RFC 3339) on each NODE, from the
# node's container logs (kubelet keeps the current container's and the one before).
twilld_logs() {
  local sdir="$1" from="$2" n
  shift 2
  for n in "$@"; do
    "$cluster" node "$n" sh -c 'cat /var/log/pods/kube-system_twill-*/twilld/*.log 2>/dev/null' |
      awk -v from="$from" '$1 >= from' | sort >"$sdir/twilld-$n.log" || true
  done
}

# run_scenario NAME: a new client per node, snapshots before, the scenario (scenario_NAME in
# scenarios.sh), a new pod per traffic node, the clients stopped, snapshots after.
run_scenario() {
  local s="$1" sdir="$out/$1" live from n
  mkdir -p "$sdir"
  log "scenario $s"
  echo "pod-ipv4 pod-ipv6 service" >"$sdir/strict-flows"
  read -ra live <<<"$NODES"
  start_clients "$sdir"
  sleep 5
  snapshot "$sdir/before" "${live[@]}"
  datapath "$sdir/before" "${live[@]}"
  echo "${live[*]}" >"$sdir/before/nodes.txt"
  from="$(stamp)"
  echo "$from" >"$sdir/start.time"
  "scenario_${s//-/_}" "$sdir"
  stamp >"$sdir/end.time"
  load_env
  read -ra live <<<"$NODES"
  if [ "$s" = uninstall ]; then
    # The scenario stopped the clients and removed the workload; twill is gone.
    datapath "$sdir/after" "${live[@]}"
    return
  fi
  sleep 5
  for n in "${nodes[@]}"; do
    check_that "$sdir" "a new pod on $n after the scenario: Ready, an address of each family, the server on $(other "$n") reached" \
      try_pod "$sdir" "after-$s-$n" "$n"
  done
  stop_clients "$sdir"
  snapshot "$sdir/after" "${live[@]}"
  datapath "$sdir/after" "${live[@]}"
  echo "${live[*]}" >"$sdir/after/nodes.txt"
  twilld_logs "$sdir" "$from" "${live[@]}"
}
