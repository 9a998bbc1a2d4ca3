#!/usr/bin/env bash
# Drives the reference bridge + portmap plugins through twill-libcni inside a throw-away node
# namespace, to show the client does what a runtime does: ADD result, CHECK, DEL, the result
# cache, capability args, and GC of stale cached attachments. Needs root; exits non-zero on the
# first failure and deletes its namespaces and files whatever happens.
set -euo pipefail
cd "$(dirname "$0")/../.."

prefix="t$$"
node="$prefix-node"
pod="$prefix-pod"
work="$(mktemp -d)"
cleanup() {
  ip netns del "$pod" 2>/dev/null || true
  ip netns del "$node" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "smoke: FAIL: $*" >&2
  exit 1
}
step() { echo "smoke: $*"; }
json() { node -e 'const v = new Function("d", "return " + process.argv[1])(JSON.parse(require("fs").readFileSync(0, "utf8"))); console.log(typeof v === "string" ? v : JSON.stringify(v))' "$1"; }

bin="$(scripts/build-libcni)"
export CNI_PATH=/usr/lib/cni
cache="$work/cache"
netns="/var/run/netns/$pod"
cat >"$work/net.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "smoke",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true,
      "ipam": { "type": "host-local", "subnet": "10.99.0.0/24", "dataDir": "$work/ipam" }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
caps='{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]}'

ip netns add "$node"
ip netns add "$pod"
ip -n "$node" link set lo up
in_node() { ip netns exec "$node" "$@"; }
libcni() { in_node "$bin" "$@" --conflist "$work/net.conflist" --cache-dir "$cache"; }

step "ADD"
result="$(libcni add "$netns" --cap-args "$caps")" || fail "ADD exited non-zero"
ip_cidr="$(json 'd.ips[0].address' <<<"$result")"
[[ "$ip_cidr" == 10.99.0.* ]] || fail "ADD result has no 10.99.0.0/24 address: $result"
step "  result address $ip_cidr"

pod_addrs="$(ip -n "$pod" -j addr show dev eth0)"
pod_ip="$(json 'd[0].addr_info.filter(a => a.family === "inet").map(a => a.local + "/" + a.prefixlen)[0]' <<<"$pod_addrs")"
[ "$pod_ip" = "$ip_cidr" ] || fail "pod eth0 has $pod_ip, result says $ip_cidr"
step "  pod eth0 has $pod_ip"

cid="$(ls "$cache/results")"
[[ "$cid" == smoke-cnitool-*-eth0 ]] || fail "unexpected cache entries: $cid"
in_node iptables -t nat -S | grep -q -- "--dport 18080" || fail "portmap did not get portMappings"
step "  cache entry $cid; portmap DNAT for 18080 present"

# Reference portmap 1.1.x cannot CHECK its own rules: it looks for them in ip6tables as well
# (containernetworking/plugins#819), so CHECK goes without portMappings, which portmap then skips,
# and bridge + host-local do the checking.
step "CHECK"
libcni check "$netns" || fail "CHECK after ADD failed"

step "CHECK without the pod's interface fails with a CNI error"
ip -n "$pod" link set eth0 name gone0
if libcni check "$netns" 2>"$work/check.err"; then fail "CHECK passed with eth0 missing"; fi
json 'd.msg' <"$work/check.err" >/dev/null || fail "CHECK error is not JSON: $(cat "$work/check.err")"
step "  $(cat "$work/check.err")"
ip -n "$pod" link set gone0 name eth0

step "DEL"
libcni del "$netns" --cap-args "$caps" || fail "DEL failed"
[ -z "$(ls -A "$cache/results")" ] || fail "cache entry left after DEL: $(ls "$cache/results")"
! ip -n "$pod" link show eth0 >/dev/null 2>&1 || fail "pod eth0 left after DEL"
! in_node iptables -t nat -S | grep -q -- "--dport 18080" || fail "portmap DNAT left after DEL"
[ ! -e "$work/ipam/smoke/${ip_cidr%/*}" ] || fail "host-local reservation left after DEL"
step "  cache entry, eth0, DNAT and reservation gone"

step "GC deletes a cached attachment that is not listed as valid"
libcni add "$netns" >/dev/null || fail "second ADD failed"
libcni gc --valid-attachments '[{"containerID":"other","ifname":"eth0"}]' || fail "GC failed"
[ -z "$(ls -A "$cache/results")" ] || fail "cache entry left after GC: $(ls "$cache/results")"
[ -z "$(ls "$work/ipam/smoke" | grep '^10\.')" ] || fail "host-local reservation left after GC"
step "  cache entry and reservation gone"

# The reference plugins stop at spec 1.0.0, so STATUS and GC of a 1.1.0 list go to a recording
# plugin that writes what it was given and answers "not ready" while $work/not-ready exists.
mkdir -p "$work/bin"
cat >"$work/bin/record" <<'PLUGIN'
#!/bin/sh
dir="$(dirname "$0")/.."
cat >"$dir/$CNI_COMMAND.stdin"
echo "netns=$CNI_NETNS containerid=$CNI_CONTAINERID" >"$dir/$CNI_COMMAND.env"
if [ -e "$dir/not-ready" ]; then
  echo '{"cniVersion":"1.1.0","code":50,"msg":"not ready"}'
  exit 1
fi
PLUGIN
chmod +x "$work/bin/record"
echo '{"cniVersion":"1.1.0","name":"rec","plugins":[{"type":"record"}]}' >"$work/rec.conflist"
rec() { "$bin" "$@" --conflist "$work/rec.conflist" --cni-path "$work/bin" --cache-dir "$cache"; }

step "STATUS and GC of a 1.1.0 list reach the plugin"
rec status || fail "STATUS failed"
[ "$(json 'd.name + " " + d.cniVersion' <"$work/STATUS.stdin")" = "rec 1.1.0" ] || fail "STATUS stdin: $(cat "$work/STATUS.stdin")"
[ "$(cat "$work/STATUS.env")" = "netns= containerid=" ] || fail "STATUS env: $(cat "$work/STATUS.env")"
touch "$work/not-ready"
if rec status 2>"$work/status.err"; then fail "STATUS passed while the plugin is not ready"; fi
[ "$(json 'd.code' <"$work/status.err")" = 50 ] || fail "STATUS error lost its code: $(cat "$work/status.err")"
rm "$work/not-ready"
rec gc --valid-attachments '[{"containerID":"c1","ifname":"eth0"}]' || fail "GC failed"
got="$(json 'd["cni.dev/valid-attachments"]' <"$work/GC.stdin")"
[ "$got" = '[{"containerID":"c1","ifname":"eth0"}]' ] || fail "GC valid-attachments: $got"
step "  STATUS code 50 passed through; GC got $got"

step "PASS"
