# The scenarios of scripts/fault-test, sourced by it after observe.sh: scenario_NAME SDIR does
# the fault while the traffic flows and records its own checks and facts (observe.sh);
# run_scenario does what every scenario shares. faulty is the traffic node the faults hit,
# spare the third node (node-removed).

# twilld SIGKILLed on the faulty node every $kill_every s for $kill_for s (by its PID, found
# in its container's cgroup; skipped while kubelet holds it in restart back-off), while pods
# are made there one after another, each checked and deleted.
scenario_twilld_kill() {
  local sdir="$1" end i=0 ok=0 failed=0 killer t0 pid
  end=$(($(date +%s) + kill_for))
  (
    while (($(date +%s) < end)); do
      pid="$(twilld_pid "$faulty")"
      if [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; then
        echo "$(stamp) killed $pid" >>"$sdir/kills.log"
      else
        echo "$(stamp) not running" >>"$sdir/kills.log"
      fi
      sleep "$kill_every"
    done
  ) &
  killer=$!
  started_pids+=("$killer")
  while (($(date +%s) < end)); do
    i=$((i + 1))
    if try_pod "$sdir" "churn-$i" "$faulty"; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
    sleep 2
  done
  wait "$killer" || true
  fact "$sdir" "SIGKILLs of twilld on $faulty" "$(grep -c killed "$sdir/kills.log" || true) (every ${kill_every} s for ${kill_for} s; $(grep -c 'not running' "$sdir/kills.log" || true) times it was not running)"
  fact "$sdir" "pods made and deleted on $faulty meanwhile" "$i: $ok got both addresses and reached $(other "$faulty"), $failed did not"
  check "$sdir" "$( ((failed == 0)) && echo ok || echo FAIL)" "every pod made on $faulty while twilld was being killed got addresses and reach ($ok of $i)"
  log "twilld on $faulty: waiting out kubelet's restart back-off"
  t0=$SECONDS
  check_that "$sdir" "twilld on $faulty Ready again after the last kill" \
    quiet kc -n kube-system wait --for=condition=Ready pod -l app.kubernetes.io/name=twill --field-selector "spec.nodeName=$faulty" --timeout=330s
  fact "$sdir" "twilld Ready again after the last kill" "$((SECONDS - t0)) s (kubelet's CrashLoopBackOff)"
}

# containerd on the faulty node restarted (SIGTERM; node-boot starts it again), a pod made
# there; then its kubelet restarted, a pod made there.
scenario_runtime_restart() {
  local sdir="$1" r t0
  r="$("$cluster" restart "$faulty" containerd)"
  t0=$SECONDS
  check_that "$sdir" "containerd on $faulty answers again" \
    until_true 60 "containerd on $faulty" "$cluster" node "$faulty" ctr -a /run/containerd/containerd.sock version
  fact "$sdir" "containerd restarted (old, new PID)" "${r#containerd } (answering after $((SECONDS - t0)) s)"
  sleep 10
  check_that "$sdir" "a pod made on $faulty after containerd's restart: addresses and reach" try_pod "$sdir" "after-containerd" "$faulty"
  r="$("$cluster" restart "$faulty" kubelet)"
  t0=$SECONDS
  check_that "$sdir" "kubelet on $faulty healthy again" \
    until_true 60 "kubelet on $faulty" "$cluster" node "$faulty" curl -sf http://127.0.0.1:10248/healthz
  fact "$sdir" "kubelet restarted (old, new PID)" "${r#kubelet } (healthy after $((SECONDS - t0)) s)"
  sleep 10
  check_that "$sdir" "a pod made on $faulty after kubelet's restart: addresses and reach" try_pod "$sdir" "after-kubelet" "$faulty"
}

has_address() { [ -n "$(pod_ip "$1" 0)" ]; }
# same_address BEFORE AFTER DURING: the API's addresses unchanged, the IPv4 one on eth0 in the pod's namespace during the window.
same_address() { [ "$1" = "$2" ] && grep -q "${1%%,*}/" <<<"$3"; }
# kept_through SDIR NODE SNAPSHOT...: NODE's datapath entries and store in each SNAPSHOT as in SDIR/cut.
kept_through() {
  local sdir="$1" n="$2" w rc=0
  shift 2
  for w in "$@"; do
    same_files "$sdir/cut" "$sdir/$w" "routes-$n.txt" "fdb-neigh-$n.txt" "store-$n.txt" 2>>"$sdir/diffs.txt" || rc=1
  done
  return "$rc"
}

# crasher_ids: the IDs of the crasher pod's containers on the faulty node, from containerd.
crasher_ids() {
  "$cluster" node "$faulty" ctr -a /run/containerd/containerd.sock -n k8s.io containers ls -q \
    'labels."io.kubernetes.pod.name"==crasher,labels."io.kubernetes.container.name"==crasher' 2>/dev/null || true
}

# The apiserver unreachable from every node for $away_for s: an nft table in each node's
# network namespace drops what the node sends or forwards to the apiserver's address and port
# (kubelet, kube-proxy and twilld reach it there, twilld through the kubernetes Service, which
# kube-proxy DNATs there before the output hook's filter). The control plane keeps running,
# as when a network between it and the nodes fails.
scenario_apiserver_away() {
  local sdir="$1" n live half ip ip_during ids restarts_before restarts_after t0
  read -ra live <<<"$NODES"
  # A pod whose container exits every 20 s (restartPolicy Always): kubelet must restart it
  # while it cannot reach the apiserver, in the same sandbox, with the same addresses.
  kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: { name: crasher, namespace: $WORKLOAD_NS, labels: { role: crasher } }
spec:
  nodeName: $faulty
  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  containers:
    - { name: crasher, image: k8s.gcr.io/e2e-test-images/agnhost:2.21, imagePullPolicy: Never, command: [sh, -c, "sleep 20; exit 1"] }
YAML
  until_true 90 "the crasher's address" has_address crasher
  ip="$(pod_ip crasher 0),$(pod_ip crasher 1)"
  restarts_before="$(kc -n "$WORKLOAD_NS" get pod crasher -o jsonpath='{.status.containerStatuses[0].restartCount}')"
  datapath "$sdir/cut" "${live[@]}"
  log "apiserver unreachable from ${live[*]} for $away_for s"
  for n in "${live[@]}"; do
    "$cluster" node "$n" nft -f - <<NFT
table inet twill-fault-test {
  chain output { type filter hook output priority 0; ip daddr $CP_IP tcp dport $APISERVER_PORT drop; }
  chain forward { type filter hook forward priority 0; ip daddr $CP_IP tcp dport $APISERVER_PORT drop; }
}
NFT
  done
  stamp >"$sdir/cut.time"
  half=$((away_for / 2))
  t0=$SECONDS
  : >"$sdir/crasher-ids.txt"
  while ((SECONDS - t0 < away_for)); do
    crasher_ids >>"$sdir/crasher-ids.txt"
    if ((SECONDS - t0 >= half)) && [ ! -d "$sdir/during" ]; then
      datapath "$sdir/during" "${live[@]}"
      # twilld's own report while it cannot reach the apiserver (kubectl exec goes from the
      # apiserver to kubelet, which the nft table leaves alone).
      kc -n kube-system exec "$(twill_pod "$faulty")" -c twilld -- /opt/twill/bin/twilld status \
        >"$sdir/during/twilld-status-$faulty.txt" 2>&1 || true
      ip_during="$(nsenter --net="/proc/$(pod_pid crasher)/ns/net" ip -br addr show eth0 2>&1 || true)"
      echo "$ip_during" >"$sdir/during/crasher-addresses.txt"
    fi
    sleep 20
  done
  datapath "$sdir/cut-end" "${live[@]}"
  for n in "${live[@]}"; do "$cluster" node "$n" nft delete table inet twill-fault-test; done
  stamp >"$sdir/back.time"
  log "apiserver reachable again"
  t0=$SECONDS
  check_that "$sdir" "every node Ready again" quiet kc wait --for=condition=Ready node --all --timeout=180s
  fact "$sdir" "nodes Ready again after" "$((SECONDS - t0)) s"
  sleep 15
  datapath "$sdir/back" "${live[@]}"
  ids="$(sort -u "$sdir/crasher-ids.txt" | grep -c . || true)"
  fact "$sdir" "crasher containers seen by containerd during the window" "$ids"
  check "$sdir" "$( ((ids >= 2)) && echo ok || echo FAIL)" "kubelet restarted the crashing container while the apiserver was away ($ids containers seen)"
  restarts_after="$(kc -n "$WORKLOAD_NS" get pod crasher -o jsonpath='{.status.containerStatuses[0].restartCount}')"
  fact "$sdir" "crasher restartCount before, after" "$restarts_before, $restarts_after"
  local ip_after
  ip_after="$(pod_ip crasher 0),$(pod_ip crasher 1)"
  fact "$sdir" "crasher addresses before, during (in its namespace), after" "$ip; $(tr -s ' ' <<<"$ip_during"); $ip_after"
  check_that "$sdir" "the crashing container kept its addresses" same_address "$ip" "$ip_after" "$ip_during"
  for n in "${live[@]}"; do
    check_that "$sdir" "$n: twill's routes, FDB and neighbour entries and the IPAM store the same before the cut, during it, at its end and after (diffs.txt)" \
      kept_through "$sdir" "$n" during cut-end back
  done
  kc -n "$WORKLOAD_NS" delete pod crasher --wait=true --timeout=90s >/dev/null
  # The node lifecycle controller marks the pods of NotReady nodes NotReady, which empties the
  # Services' endpoints until each kubelet reports again: new connections through a Service
  # fail for that long after the apiserver is back. That is Kubernetes', not twill's.
  echo "pod-ipv4 pod-ipv6" >"$sdir/strict-flows"
}

no_entries() { [ -z "$(entries_of "$@")" ]; }
# untouched SDIR NODE CIDR...: NODE's datapath entries and store in SDIR/removed as in
# SDIR/before, but for those of the spare node (its CIDRs, its underlay address).
untouched() {
  local sdir="$1" n="$2" pattern="dst $(node_ip "$spare")( |$)" c f rc=0
  shift 2
  for c in "$@"; do pattern="$pattern|^${c%/*}[ /]"; done
  for f in "routes-$n.txt" "fdb-neigh-$n.txt" "store-$n.txt"; do
    diff -u <(grep -Ev "$pattern" "$sdir/before/$f") <(grep -Ev "$pattern" "$sdir/removed/$f") >>"$sdir/diffs.txt" || rc=1
  done
  return "$rc"
}
no_pods_on() { [ -z "$(kc get pods -A --field-selector "spec.nodeName=$1" -o name)" ]; }
record_is() { [ "$(node_record "$1")" = "$2" ]; }
no_line() { ! grep -q "$1" "$2"; }

# entries_of NODE CIDR...: the lines of NODE's twill routes, FDB and neighbour entries naming
# one of the CIDRs' network addresses, or the spare node's underlay address.
entries_of() {
  local n="$1" pattern="dst $(node_ip "$spare")( |$)" c
  shift
  for c in "$@"; do pattern="$pattern|^${c%/*}[ /]"; done
  "$cluster" node "$n" sh -c 'ip -4 route show proto 150; ip -6 route show proto 150
    for d in $(ls /sys/class/net | grep "^twill\."); do bridge fdb show dev "$d"; ip neigh show dev "$d"; done' |
    grep -E "$pattern" || true
}

# The spare node gone for good (scripts/cluster remove-node): its processes and pods stopped,
# its namespace removed, its Node deleted.
scenario_node_removed() {
  local sdir="$1" cidrs n t0 left
  cidrs="$(kc get node "$spare" -o 'jsonpath={.spec.podCIDRs[*]}')"
  fact "$sdir" "$spare's pod CIDRs" "$cidrs"
  for n in "${nodes[@]}"; do
    # shellcheck disable=SC2086
    entries_of "$n" $cidrs >"$sdir/spare-entries-before-$n.txt"
  done
  t0=$SECONDS
  "$cluster" remove-node "$spare" 2>>"$sdir/remove-node.log"
  fact "$sdir" "remove-node took" "$((SECONDS - t0)) s"
  stamp >"$sdir/removed.time"
  for n in "${nodes[@]}"; do
    # shellcheck disable=SC2086
    check_that "$sdir" "$n dropped $spare's routes, FDB and neighbour entries ($(grep -c . "$sdir/spare-entries-before-$n.txt" || true) before)" \
      until_true 60 "$n to drop $spare's entries" no_entries "$n" $cidrs
    fact "$sdir" "$n: $spare's entries gone after" "$((SECONDS - t0)) s"
  done
  datapath "$sdir/removed" "${nodes[@]}"
  for n in "${nodes[@]}"; do
    # shellcheck disable=SC2086
    check_that "$sdir" "$n: every other route, FDB and neighbour entry of twill's, and the IPAM store, as before (diffs.txt)" \
      untouched "$sdir" "$n" $cidrs
  done
  # Its pods stay in the API until the pod garbage collector deletes those of a Node gone.
  check_that "$sdir" "$spare's pods deleted from the API" until_true 180 "the pods of $spare to be deleted" no_pods_on "$spare"
  fact "$sdir" "$spare's pods gone from the API after" "$((SECONDS - t0)) s"
  left="$(kc get nodes -o 'jsonpath={.items[*].spec.podCIDRs[*]}')"
  local taken=""
  for c in $cidrs; do [[ " $left " != *" $c "* ]] || taken="$taken $c"; done
  check_that "$sdir" "$spare's pod CIDRs ($cidrs) held by no Node (free for the controller-manager to give again)${taken:+: still held:$taken}" test -z "$taken"
  check_that "$sdir" "no twill Lease (this cluster's subnets are spec.podCIDRs)" test -z "$(kc -n twill-system get leases -o name 2>/dev/null)"
}

# node_record NODE: NODE's twill.dev/* annotations, one per line, sorted.
node_record() {
  kc get node "$1" -o json | node -e '
    const a = JSON.parse(require("fs").readFileSync(0, "utf8")).metadata.annotations ?? {};
    for (const k of Object.keys(a).filter((k) => k.startsWith("twill.dev/")).sort()) console.log(`${k}=${a[k]}`);'
}

# route_watch SDIR CIDR FILE: every half second, whether the other traffic node has its route to
# CIDR; a line per change into FILE.
route_watch() {
  local sdir="$1" cidr="$2" file="$3" was="" now routes
  while [ ! -e "$sdir/route-watch.stop" ]; do
    routes="$("$cluster" node "$(other "$faulty")" ip route show proto 150 || true)"
    if grep -q "^$cidr " <<<"$routes"; then now=present; else now=ABSENT; fi
    [ "$now" = "$was" ] || echo "$(stamp) $now" >>"$file"
    was="$now"
    sleep 0.5
  done
}

# The faulty node's record torn while it runs: its twill.dev/* annotations deleted, then (once
# restored) its backend data garbled. The watch of $(other) node's route to it tells whether
# peers dropped it meanwhile.
scenario_lease_deleted() {
  local sdir="$1" before cidr watcher t0 peer
  peer="$(other "$faulty")"
  before="$(node_record "$faulty")"
  echo "$before" >"$sdir/record-before.txt"
  cidr="$(kc get node "$faulty" -o 'jsonpath={.spec.podCIDRs[0]}')"
  fact "$sdir" "$faulty's record (Node annotations; its subnets are spec.podCIDRs $(kc get node "$faulty" -o 'jsonpath={.spec.podCIDRs[*]}'))" "$(tr '\n' ' ' <<<"$before")"
  # Peers drop a node whose record is gone (as after `twilld leave`) until it is published
  # again: new connections to and from it fail meanwhile. Its twilld publishes it again as soon
  # as its watch shows it gone; what must not happen is waiting for the next renewal (60 s).
  echo "" >"$sdir/strict-flows"
  echo 10000 >"$sdir/max-window-ms"
  for what in deleted garbled; do
    rm -f "$sdir/route-watch.stop"
    route_watch "$sdir" "$cidr" "$sdir/route-watch-$what.log" &
    watcher=$!
    started_pids+=("$watcher")
    sleep 2
    t0=$SECONDS
    if [ "$what" = deleted ]; then
      kc annotate node "$faulty" twill.dev/public-ip- twill.dev/backend-type- twill.dev/backend-data- >/dev/null
    else
      kc annotate node "$faulty" --overwrite 'twill.dev/backend-data={"vtepMAC": 5' >/dev/null
    fi
    stamp >"$sdir/$what.time"
    check_that "$sdir" "$faulty's record restored by its twilld after it was $what" \
      until_true 150 "$faulty's record to be restored" record_is "$faulty" "$before"
    fact "$sdir" "record $what: restored after" "$((SECONDS - t0)) s"
    sleep 5
    touch "$sdir/route-watch.stop"
    wait "$watcher" || true
    fact "$sdir" "record $what: $peer's route to $cidr" "$(tr '\n' ' ' <"$sdir/route-watch-$what.log")"
    check_that "$sdir" "$peer kept its route to $faulty's $cidr while the record was $what" \
      no_line ABSENT "$sdir/route-watch-$what.log"
  done
}

# twill's own files and kernel objects on NODE, one per line: nothing once it is uninstalled.
twill_leftovers() {
  "$cluster" node "$1" sh -c '
    ip -o link show | grep -Eo ": (twill[^:@ ]*|cni0)[:@]" | tr -d ":@ " | sed "s/^/link /"
    ip -4 route show proto 150 | sed "s/^/route /"; ip -6 route show proto 150 | sed "s/^/route /"
    nft list tables | grep -E " twill" | sed "s/^/nft /"
    for f in /opt/cni/bin/twill /opt/cni/bin/twill-ipam /opt/cni/net.d/10-twill.conflist /run/twill \
      /var/lib/cni/networks/twill /var/log/twill /var/lib/twill; do [ ! -e "$f" ] || echo "file $f"; done'
}

# After the faults, destructive: twill deleted as the README says (kubectl delete of the
# manifest; deploy/uninstall.yaml's DaemonSet until every node says done; then deleted), the
# workload drained first (twilld uninstall refuses while pods are on cni0). Nothing of twill's
# may be left on a node; the reference bridge + host-local with a static conflist in each node's
# CNI directory then give new pods addresses, reachable on their node (across nodes they would
# need routes a user adds: nothing programs them).
scenario_uninstall() {
  local sdir="$1" n live pods t0 a b
  read -ra live <<<"$NODES"
  stop_clients "$sdir"
  kc delete namespace "$WORKLOAD_NS" --wait=true --timeout=120s >/dev/null
  "$cluster" manifest | kc delete -f - --wait=true >"$sdir/delete.log" 2>&1 || true
  check_that "$sdir" "twill's DaemonSet pods gone" \
    until_true 120 "twill's pods to go" no_twill_pods
  sed -e "s|registry.example/twill:[0-9.]*|$image|g" -e "s|/etc/cni/net.d|/opt/cni/net.d|g" "$repo/deploy/uninstall.yaml" >"$sdir/uninstall.yaml"
  kc apply -f "$sdir/uninstall.yaml" >/dev/null
  t0=$SECONDS
  check_that "$sdir" "twilld uninstall said it was done on every node" \
    until_true 180 "every node's done lines" uninstall_done "${#live[@]}"
  fact "$sdir" "deploy/uninstall.yaml done on every node after" "$((SECONDS - t0)) s"
  kc -n kube-system logs -l app.kubernetes.io/name=twill-uninstall --prefix --tail=-1 >"$sdir/uninstall.log" 2>&1 || true
  kc delete -f "$sdir/uninstall.yaml" --wait=true >/dev/null
  for n in "${live[@]}"; do
    twill_leftovers "$n" >"$sdir/leftovers-$n.txt" 2>&1 || true
    check_that "$sdir" "$n: no twill link, route (proto 150), FDB/neighbour entry (its device gone), nft table, CNI file, /run/twill, IPAM store or log left" \
      test ! -s "$sdir/leftovers-$n.txt"
  done
  for n in "${live[@]}"; do
    "$cluster" node "$n" sh -c 'cat >/opt/cni/net.d/.10-bridge.conflist.tmp && mv /opt/cni/net.d/.10-bridge.conflist.tmp /opt/cni/net.d/10-bridge.conflist' <<JSON
{ "cniVersion": "0.4.0", "name": "bridge", "plugins": [
  { "type": "bridge", "bridge": "cnibr0", "isGateway": true, "ipMasq": true,
    "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.88.${n#node-}.0/24" }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
  { "type": "portmap", "capabilities": { "portMappings": true } } ] }
JSON
  done
  kc apply -f - >/dev/null <<YAML
$(echo "apiVersion: v1"; echo "kind: Namespace"; echo "metadata: { name: $WORKLOAD_NS }"; pod_yaml ref-a "${nodes[0]}" ref; pod_yaml ref-b "${nodes[0]}" ref)
YAML
  check_that "$sdir" "two pods on ${nodes[0]} Ready with the reference bridge + host-local" \
    quiet kc -n "$WORKLOAD_NS" wait --for=condition=Ready pod ref-a ref-b --timeout=120s
  a="$(pod_ip ref-a 0)"
  b="$(pod_ip ref-b 0)"
  fact "$sdir" "reference bridge pods' addresses" "ref-a $a, ref-b $b"
  nsenter --net="$(netns_of ref-a)" node "$traffic" serve --port 7000 >"$sdir/ref-server.jsonl" 2>&1 &
  started_pids+=($!)
  sleep 1
  check_that "$sdir" "ref-b reaches ref-a on the same node ($a)" \
    nsenter --net="$(netns_of ref-b)" node "$traffic" probe --dial "ref=$a:7000"
  kill "$!" 2>/dev/null || true
}

no_twill_pods() { [ -z "$(kc -n kube-system get pods -l app.kubernetes.io/name=twill -o name)" ]; }
# uninstall_done COUNT: the uninstall DaemonSet's pods, COUNT of them, each said it is done.
uninstall_done() {
  [ "$(kc -n kube-system logs -l app.kubernetes.io/name=twill-uninstall --prefix --tail=-1 2>/dev/null |
    grep -c 'twill is off this node')" -ge "$1" ]
}
