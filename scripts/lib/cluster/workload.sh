# Pods with traffic between them on a cluster of scripts/cluster, and snapshots of what twill
# keeps on its nodes: shared by scripts/upgrade-test and scripts/fault-test. Sourced after
# common.sh and load_env, with these set by the script:
#
#   cluster        scripts/cluster
#   WORKLOAD_NS    the namespace of the workload's pods
#   nodes          an array of the node names traffic runs between (two)
#   started_pids   an array the script stops by PID at exit
#
# The traffic is scripts/lib/upgrade/traffic.mjs run in the pods' network namespaces (entered
# with nsenter, so nothing done to the cluster can restart it): an echo server per node, and a
# client per node holding 4 connections per flow and dialling one new connection per 100 ms per
# flow to the server on the other node over IPv4, IPv6 and through a ClusterIP Service.

traffic="$repo/scripts/lib/upgrade/traffic.mjs"
kc() { "$cluster" kubectl "$@"; }
stamp() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }

# pod_yaml NAME NODE ROLE: an agnhost pod pinned to NODE.
pod_yaml() {
  cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: { name: $1, namespace: $WORKLOAD_NS, labels: { role: $3, node: $2 } }
spec:
  nodeName: $2
  terminationGracePeriodSeconds: 1
  containers:
    - { name: agnhost, image: k8s.gcr.io/e2e-test-images/agnhost:2.21, imagePullPolicy: Never, args: [pause] }
YAML
}

# workload_yaml NODE...: the namespace, and per node a server, a client, two idle pods and the
# Service in front of its server.
workload_yaml() {
  local n
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata: { name: $WORKLOAD_NS }"
  for n in "$@"; do
    pod_yaml "server-$n" "$n" server
    pod_yaml "client-$n" "$n" client
    pod_yaml "idle-$n-a" "$n" idle
    pod_yaml "idle-$n-b" "$n" idle
    cat <<YAML
---
apiVersion: v1
kind: Service
metadata: { name: echo-$n, namespace: $WORKLOAD_NS }
spec:
  selector: { role: server, node: $n }
  ports: [{ port: 7000, targetPort: 7000, protocol: TCP }]
YAML
  done
}

# pod_pid POD: a process of the pod (its sandbox's or container's), whose network namespace
# is the pod's. kubelet (cgroupfs driver) puts the pod under <node cgroup root>/kubepods/...
pod_pid() {
  local uid
  uid="$(kc -n "$WORKLOAD_NS" get pod "$1" -o jsonpath='{.metadata.uid}')"
  cgroup_dir_pid "pod$uid"
}

# cgroup_dir_pid NAME: the first process in the cluster's cgroup directory NAME (a pod's
# pod<uid>, a container's ID), or nothing.
cgroup_dir_pid() {
  local dir h
  # Not every hierarchy holds the pod (find fails there): pipefail must not end the script.
  for h in $(cgroup_hierarchies); do
    dir="$(find "$h/$CGROUP_ROOT" -type d -name "$1" 2>/dev/null | head -1 || true)"
    if [ -n "$dir" ]; then
      find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | head -1 || true
      return
    fi
  done
}
pod_ip() { kc -n "$WORKLOAD_NS" get pod "$1" -o jsonpath="{.status.podIPs[$2].ip}"; }

# nsenter execs node: $! is the traffic process itself, stopped by that PID.
netns_of() {
  local pid
  pid="$(pod_pid "$1")"
  [ -n "$pid" ] || { log "no process of pod $1 found under cgroup $CGROUP_ROOT"; return 1; }
  echo "/proc/$pid/ns/net"
}
other() { if [ "$1" = "${nodes[0]}" ]; then echo "${nodes[1]}"; else echo "${nodes[0]}"; fi; }

# start_servers LOGDIR: an echo server in each server pod, for as long as the script runs.
start_servers() {
  local n netns
  for n in "${nodes[@]}"; do
    netns="$(netns_of "server-$n")"
    nsenter --net="$netns" node "$traffic" serve --port 7000 >"$1/server-$n.jsonl" 2>&1 &
    started_pids+=($!)
  done
  sleep 1
}

# start_clients LOGDIR: a client in each client pod, logging to LOGDIR/client-NODE.jsonl, its
# PID in client-NODE.pid.
start_clients() {
  local n peer v4 v6 svc netns
  for n in "${nodes[@]}"; do
    peer="$(other "$n")"
    v4="$(pod_ip "server-$peer" 0)"
    v6="$(pod_ip "server-$peer" 1)"
    svc="$(kc -n "$WORKLOAD_NS" get service "echo-$peer" -o jsonpath='{.spec.clusterIP}')"
    netns="$(netns_of "client-$n")"
    nsenter --net="$netns" node "$traffic" client \
      --hold "pod-ipv4=$v4:7000:4" --hold "pod-ipv6=[$v6]:7000:4" --hold "service=$svc:7000:4" \
      --dial "pod-ipv4=$v4:7000" --dial "pod-ipv6=[$v6]:7000" --dial "service=$svc:7000" \
      >"$1/client-$n.jsonl" 2>&1 &
    started_pids+=($!)
    echo "$!" >"$1/client-$n.pid"
  done
}

# stop_clients LOGDIR: SIGTERM to the clients start_clients started there, then their summaries awaited.
stop_clients() {
  local n
  for n in "${nodes[@]}"; do kill -TERM "$(cat "$1/client-$n.pid")"; done
  for n in "${nodes[@]}"; do
    for _ in $(seq 50); do grep -q '"event":"summary"' "$1/client-$n.jsonl" && break; sleep 0.2; done
  done
}

# twill_pod NODE: the name of twill's DaemonSet pod on NODE.
twill_pod() {
  kc -n kube-system get pods -l app.kubernetes.io/name=twill --field-selector "spec.nodeName=$1" \
    -o jsonpath='{.items[0].metadata.name}'
}

# snapshot DIR NODE...: what twill wrote and what it reports, on each NODE.
snapshot() {
  local dir="$1" n pod cmd
  shift
  mkdir -p "$dir"
  kc get pods -A -o json >"$dir/pods.json"
  kc get nodes -o json >"$dir/nodes.json"
  kc get leases -A -o json >"$dir/leases.json"
  for n in "$@"; do
    "$cluster" node "$n" cat /run/twill/subnet.json >"$dir/subnet-$n.json" 2>&1 || true
    # host-local's layout: a file per address naming its container and interface.
    "$cluster" node "$n" sh -c 'cd /var/lib/cni/networks/twill && for f in *; do printf "%s\t%s\n" "$f" "$(tr "\n" " " <"$f")"; done' \
      >"$dir/ipam-store-$n.tsv" 2>&1 || true
    pod="$(twill_pod "$n")"
    for cmd in "status" "ipam list" "ipam check"; do
      # shellcheck disable=SC2086
      kc -n kube-system exec "$pod" -c twilld -- /opt/twill/bin/twilld $cmd --ipam-store=/var/lib/cni/networks/twill \
        >"$dir/twilld-${cmd// /-}-$n.txt" 2>&1 || echo "(exit $?)" >>"$dir/twilld-${cmd// /-}-$n.txt"
    done
  done
}
