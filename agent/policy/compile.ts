import { errorMessage } from "../errors.js";
import { addressInterval } from "./addresses.js";
import { dropLogPrefix, objectComment, stableId } from "./names.js";
import type { EnforcedPod, PodMap, PolicyPlan } from "./plan.js";
import { FAMILIES, PROTO, compilePolicyRules, familyOf, ruleContext, type PodAddress } from "./policy-chains.js";
import { matchesSelector } from "./selector.js";
import { podKey, type Direction, type NetworkPolicy, type PodInfo, type PolicySnapshot } from "./types.js";

/**
 * NetworkPolicy (networking.k8s.io/v1) for the pods of one node, compiled to an nftables
 * ruleset description. Pure: (policies, pods, namespaces, node) -> plan; rendering the plan
 * as an `nft -f` transaction is ruleset.ts, applying it is the engine's.
 *
 * Shape, per node:
 * - Two base chains on the forward hook, `ingress` and `egress`. Each first accepts replies
 *   (conntrack established/related), then dispatches by the packet's pod address through a
 *   verdict map to that pod's chain. A pod no policy isolates has no map entry: allowed.
 *   Separate base chains because `accept` ends only its own base chain: a packet from one
 *   local pod to another passes the sender's egress chain and then the receiver's ingress
 *   chain. A deny in either is final.
 * - Egress applies to a pod's traffic to its own node too (its addresses, hostNetwork pods,
 *   kubelet's port), as Calico applies egress before host traffic: a third base chain, on
 *   the input hook, dispatches by source address through the same egress maps after
 *   accepting replies. Traffic from the node to its own pods (kubelet probes) is output
 *   traffic and passes no chain of this table; the pod's replies come back through input as
 *   established.
 * - Names of sets, chains and counters depend only on what they stand for (see stableId).
 * - A pod chain jumps to the chain of every policy that selects the pod, in that direction,
 *   and denies (counts, optionally logs, then rejects or drops) what none accepted. Policies
 *   add up.
 * - A policy chain has a rule per (rule, port kind, family), matching peers through named
 *   address sets (policy-chains.ts); named ports resolve on the pods that have them, and a pod
 *   without the name gets nothing for it.
 * - Anything the apiserver accepts compiles: ipBlocks are read as the apiserver reads them
 *   (addresses.ts), tenant names reach the ruleset's text only fitted to nft's limits
 *   (names.ts). A policy that still cannot be compiled is refused alone, as allowing nothing
 *   (its pods fail closed); a pod's unreadable address is left out for that pod alone.
 *
 * Bridged traffic between pods of one node reaches the forward hook through br_netfilter,
 * which the engine turns on for the pod bridge.
 */

export interface CompileOptions {
  nodeName: string;
  /** Log dropped packets (nft `log`), at most this many per second per pod and direction. */
  logDropsPerSecond?: number;
  /** What a denied packet gets: {@link DenyMode}; default "reject". */
  deny?: DenyMode;
}

/**
 * "reject": a TCP reset, or ICMP administratively prohibited, so a denied client fails at once
 * (kube-router, and k3s which embeds it, do the same). "drop": silence; the client waits for
 * its timeout, and a scanner learns nothing (Calico's default).
 */
export type DenyMode = "reject" | "drop";

/** The rules ending a pod chain: count what no policy accepted, then deny it. */
export function denyRules(counter: string, mode: DenyMode): string[] {
  if (mode === "drop") return [`counter name "${counter}" drop`];
  return [`meta l4proto tcp counter name "${counter}" reject with tcp reset`, `counter name "${counter}" reject with icmpx type admin-prohibited`];
}

const SHORT: Record<Direction, string> = { ingress: "in", egress: "eg" };
const DIRECTIONS = ["ingress", "egress"] as const;

export function compilePolicies(snapshot: PolicySnapshot, opts: CompileOptions): PolicyPlan {
  const nsLabels = new Map(snapshot.namespaces.map((n) => [n.name, n.labels]));
  const { pods, addrs } = readPods(snapshot.pods);
  const local = pods.filter((p) => p.nodeName === opts.nodeName);
  const policies = uniqueByKey([...snapshot.policies].sort(byKey));

  const plan: PolicyPlan = { sets: [], chains: [], maps: [], counters: [], pods: [], policies: [], refused: [] };
  const isolatedBy = new Map<string, { ingress: string[]; egress: string[] }>();
  const ctx = ruleContext(pods, addrs, nsLabels, plan);

  for (const policy of policies) {
    const key = podKey(policy);
    const types = DIRECTIONS.filter((d) => policy.policyTypes.includes(d));
    const { selected, refusal: unselectable } = selectedPods(policy, local);
    if (selected.length === 0) continue;
    // A policy that cannot be compiled isolates its pods and allows nothing (a deny-all in its
    // directions): its pods fail closed, and every other policy and pod is compiled as usual.
    let refusal = unselectable;
    let rules: Record<Direction, string[]> = { ingress: [], egress: [] };
    if (refusal === undefined) {
      try {
        rules = compilePolicyRules(ctx, policy, types, selected);
      } catch (err) {
        refusal = errorMessage(err);
      }
    }
    if (refusal !== undefined) {
      rules = { ingress: [], egress: [] };
      plan.refused.push({ policy: key, reason: refusal, pods: selected.map(podKey) });
    }
    plan.policies.push({ policy: key, types, pods: selected.map(podKey) });
    for (const direction of types) {
      const chain = `pol_${stableId(key)}_${SHORT[direction]}`;
      plan.chains.push({ name: chain, comment: objectComment(key, direction), rules: rules[direction] });
      for (const p of selected) {
        const entry = isolatedBy.get(podKey(p)) ?? { ingress: [], egress: [] };
        entry[direction].push(`${key}\u0000${chain}`);
        isolatedBy.set(podKey(p), entry);
      }
    }
  }

  const owners = addressOwners(local, addrs);
  const maps: Record<string, PodMap> = {};
  for (const d of DIRECTIONS) for (const f of FAMILIES) maps[`${d}${f}`] = { name: `${d}${f}`, family: f, elements: [] };
  for (const p of local) {
    const by = isolatedBy.get(podKey(p));
    if (!by) continue;
    const owned = p.ips.filter((_, i) => owners.get(addressKey(addrs.get(p)![i]!)) === p);
    const enforced: EnforcedPod = { pod: podKey(p), ips: owned };
    for (const d of DIRECTIONS) {
      if (by[d].length === 0) continue;
      const chain = `pod_${stableId(podKey(p))}_${SHORT[d]}`;
      const counter = `drop_${stableId(podKey(p))}_${SHORT[d]}`;
      const names = by[d].map((x) => x.split("\u0000")[0]!);
      const rules = by[d].map((x) => `jump ${x.split("\u0000")[1]!}`);
      if (opts.logDropsPerSecond) {
        rules.push(`limit rate ${opts.logDropsPerSecond}/second burst ${opts.logDropsPerSecond} packets log prefix "${dropLogPrefix(d, podKey(p), names)}" level info`);
      }
      rules.push(...denyRules(counter, opts.deny ?? "reject"));
      plan.chains.push({ name: chain, comment: objectComment(podKey(p), d), rules });
      plan.counters.push({ name: counter, pod: podKey(p), direction: d, comment: objectComment(podKey(p), d) });
      for (const ip of owned) maps[`${d}${familyOf(ip)}`]!.elements.push([ip, chain]);
      enforced[d] = names;
    }
    plan.pods.push(enforced);
  }
  plan.maps = Object.values(maps);
  return plan;
}

/**
 * The pods the compiler can use, each with the addresses and container ports it can read, and
 * those addresses parsed once. A pod's unreadable address or port is left out for that pod
 * alone (it reaches the ruleset's text, where one bad item fails the whole transaction); a pod
 * with no address left takes no part, as one the runtime has not reported yet.
 */
function readPods(list: readonly PodInfo[]): { pods: PodInfo[]; addrs: Map<PodInfo, PodAddress[]> } {
  const pods: PodInfo[] = [];
  const addrs = new Map<PodInfo, PodAddress[]>();
  for (const p of uniqueByKey([...list].sort(byKey))) {
    const parsed: PodAddress[] = [];
    const ips: string[] = [];
    for (const ip of p.ips) {
      let a: PodAddress;
      try {
        a = addressInterval(ip);
      } catch {
        continue;
      }
      // The same address twice (in two spellings, say) would be one map key twice.
      if (parsed.some((b) => b.family === a.family && b.interval[0] === a.interval[0])) continue;
      parsed.push(a);
      ips.push(ip);
    }
    if (ips.length === 0) continue;
    const ports = p.ports.filter((c) => Number.isInteger(c.port) && c.port >= 1 && c.port <= 65535 && Object.hasOwn(PROTO, c.protocol));
    const pod = ips.length === p.ips.length && ports.length === p.ports.length ? p : { ...p, ips, ports };
    pods.push(pod);
    addrs.set(pod, parsed);
  }
  return { pods, addrs };
}

const addressKey = (a: PodAddress): string => `${a.family}/${a.interval[0]}`;

/**
 * Which of this node's pods each address is: nft refuses a verdict map with one key twice, and
 * two pods may list one address for a while (a Terminating pod whose sandbox is gone keeps its
 * status.podIPs while a new pod gets the address from IPAM). The address is the new pod's: a
 * pod not being deleted wins over one that is, then the one created last, then the first name,
 * so every compile picks the same.
 */
function addressOwners(local: readonly PodInfo[], addrs: Map<PodInfo, PodAddress[]>): Map<string, PodInfo> {
  const owners = new Map<string, PodInfo>();
  for (const p of local) {
    for (const a of addrs.get(p)!) {
      const key = addressKey(a);
      const other = owners.get(key);
      owners.set(key, other ? likelierOwner(other, p) : p);
    }
  }
  return owners;
}

function likelierOwner(a: PodInfo, b: PodInfo): PodInfo {
  if (Boolean(a.terminating) !== Boolean(b.terminating)) return a.terminating ? b : a;
  const [ta, tb] = [a.createdAt ?? 0, b.createdAt ?? 0];
  if (ta !== tb) return ta > tb ? a : b;
  return byKey(a, b) <= 0 ? a : b;
}

/**
 * This node's pods a policy selects. A selector that cannot be evaluated selects every pod of
 * the policy's namespace (a policy selects nothing outside it): they fail closed.
 */
function selectedPods(policy: NetworkPolicy, local: readonly PodInfo[]): { selected: PodInfo[]; refusal?: string } {
  const own = local.filter((p) => p.namespace === policy.namespace);
  try {
    return { selected: own.filter((p) => matchesSelector(policy.podSelector, p.labels)) };
  } catch (err) {
    return { selected: own, refusal: `podSelector: ${errorMessage(err)}` };
  }
}

function byKey(a: { namespace: string; name: string }, b: { namespace: string; name: string }): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The first of each namespace/name in a list sorted by key: one chain and one counter per name. */
function uniqueByKey<T extends { namespace: string; name: string }>(sorted: T[]): T[] {
  return sorted.filter((x, i) => i === 0 || byKey(sorted[i - 1]!, x) !== 0);
}
