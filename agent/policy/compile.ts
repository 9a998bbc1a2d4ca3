import { objectComment, stableId } from "./names.js";
import type { DropCounter, EnforcedPod, NftChain, NftSet, PodMap, PolicyPlan } from "./plan.js";
import { REJECT_CHAIN } from "./ruleset.js";
import { DIRECTIONS, FAMILIES, SHORT, compilePolicy, policyChainName, type CompiledPolicy, type SetDef } from "./policy-chains.js";
import { byKey, firstByKey, fixedElements, likelierOwner, policySelects, readPod, setElementsOf, setNamespaces, type NamespaceLabels, type ReadPod } from "./set-members.js";
import type { Direction, PolicySnapshot } from "./types.js";

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
 * - Names of sets, chains and counters depend only on what they stand for (see stableId): a
 *   set is named after its peers, not its elements, so a pod event changes elements only.
 * - A pod chain jumps to the chain of every policy that selects the pod, in that direction,
 *   and denies (counts, optionally logs, then rejects or drops) what none accepted. Policies
 *   add up.
 * - A policy chain has a rule per (rule, port kind, family), matching peers through named
 *   address sets and ports through named port sets (policy-chains.ts); named ports resolve on
 *   the pods that have them, and a pod without the name gets nothing for it.
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
  /**
   * Hand dropped packets to nflog group `nflogGroup` (what `twilld flows` reads), at most this
   * many per second per pod and direction, each prefixed with its pod's drop counter's name.
   */
  logDropsPerSecond?: number;
  /** Default {@link DROP_NFLOG_GROUP}. */
  nflogGroup?: number;
  /** What a denied packet gets: {@link DenyMode}; default "reject". */
  deny?: DenyMode;
}

/**
 * "reject": a TCP reset, or ICMP administratively prohibited, so a denied client fails at once
 * (kube-router, and k3s which embeds it, do the same). "drop": silence; the client waits for
 * its timeout, and a scanner learns nothing (Calico's default).
 */
export type DenyMode = "reject" | "drop";

/**
 * The nflog group dropped packets go to. Groups are per network namespace, and a group has one
 * reader: twilld, while someone watches its flows. With no reader the kernel discards the copy.
 */
export const DROP_NFLOG_GROUP = 1024;

/** The rules ending a pod chain: count what no policy accepted, then deny it. */
export function denyRules(counter: string, mode: DenyMode): string[] {
  return [`counter name "${counter}" ${mode === "drop" ? "drop" : `goto ${REJECT_CHAIN}`}`];
}

/**
 * The whole compile: every policy, pod and set from the snapshot. At start-up, as the repair,
 * and as the reference the incremental compile (incremental.ts) must equal, element for
 * element; the order of everything in the plan is fixed (sorted), so equal plans render as
 * equal text.
 */
export function compilePolicies(snapshot: PolicySnapshot, opts: CompileOptions): PolicyPlan {
  const nsLabels: NamespaceLabels = new Map(snapshot.namespaces.map((n) => [n.name, n.labels]));
  const pods = [...firstByKey(snapshot.pods).values()]
    .map((p) => readPod(p, opts.nodeName))
    .filter((p): p is ReadPod => p !== null)
    .sort((a, b) => byKey(a.info, b.info));
  const local = pods.filter((p) => p.local);
  const policies = [...firstByKey(snapshot.policies).values()].sort(byKey);

  const plan: PolicyPlan = { sets: [], chains: [], maps: [], counters: [], pods: [], policies: [], refused: [] };
  const isolatedBy = new Map<string, Record<Direction, CompiledPolicy[]>>();
  const sets = new Map<string, SetDef>();
  /** A named-port set's candidates: the pods its policy selects, as no other pod puts anything in it. */
  const selectedFor = new Map<string, ReadPod[]>();
  const policyChains: NftChain[] = [];
  for (const policy of policies) {
    const compiled = compilePolicy(policy);
    const selected = local.filter((p) => policySelects(compiled, p));
    if (selected.length === 0) continue;
    const keys = selected.map((p) => p.key);
    // A policy that cannot be compiled isolates its pods and allows nothing (a deny-all in its
    // directions): its pods fail closed, and every other policy and pod is compiled as usual.
    if (compiled.refusal !== undefined) plan.refused.push({ policy: compiled.key, reason: compiled.refusal, pods: keys });
    plan.policies.push({ policy: compiled.key, types: compiled.types, pods: keys });
    policyChains.push(...compiled.chains);
    for (const s of compiled.sets) {
      sets.set(s.name, s);
      if (s.kind === "named-in") selectedFor.set(s.name, selected);
    }
    if (compiled.types.length === 0) continue;
    for (const p of selected) {
      const by = isolatedBy.get(p.key) ?? { ingress: [], egress: [] };
      for (const d of compiled.types) by[d].push(compiled);
      isolatedBy.set(p.key, by);
    }
  }
  const byNamespace = new Map<string, ReadPod[]>();
  for (const p of pods) {
    if (!byNamespace.has(p.info.namespace)) byNamespace.set(p.info.namespace, []);
    byNamespace.get(p.info.namespace)!.push(p);
  }
  plan.sets = [...sets.values()].sort(byName).map((def) => fillSet(def, selectedFor.get(def.name) ?? candidatesOf(def, pods, byNamespace, nsLabels), nsLabels));

  const owners = new Map<string, ReadPod>();
  for (const p of local) {
    for (const k of p.keys) {
      const other = owners.get(k);
      owners.set(k, other ? likelierOwner(other, p) : p);
    }
  }
  const maps: Record<string, PodMap> = {};
  for (const d of DIRECTIONS) for (const f of FAMILIES) maps[`${d}${f}`] = { name: `${d}${f}`, family: f, elements: [] };
  const podChains: NftChain[] = [];
  for (const p of local) {
    const by = isolatedBy.get(p.key);
    if (!by) continue;
    const owned = p.addrs.flatMap((a, i) => (owners.get(p.keys[i]!) === p ? [{ a, ip: p.info.ips[i]! }] : []));
    const enforced: EnforcedPod = { pod: p.key, ips: owned.map((o) => o.ip) };
    for (const d of DIRECTIONS) {
      if (by[d].length === 0) continue;
      const chain = podChain(p.key, d, by[d], opts);
      podChains.push(chain);
      plan.counters.push(podCounter(p.key, d));
      for (const { a, ip } of owned) maps[`${d}${a.family}`]!.elements.push([ip, chain.name]);
      enforced[d] = by[d].map((c) => c.key);
    }
    plan.pods.push(enforced);
  }
  plan.chains = [...policyChains.sort(byName), ...podChains.sort(byName)];
  plan.maps = Object.values(maps);
  for (const m of plan.maps) m.elements.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  return plan;
}

/** The pods that may put elements in the set: those of the namespaces it takes pods from, or all. */
function candidatesOf(def: SetDef, pods: readonly ReadPod[], byNamespace: Map<string, ReadPod[]>, nsLabels: NamespaceLabels): readonly ReadPod[] {
  const namespaces = setNamespaces(def, nsLabels);
  return namespaces ? [...namespaces].flatMap((n) => byNamespace.get(n) ?? []) : pods;
}

/** A set with its elements: its fixed ones, and what each candidate pod puts there; sorted. */
function fillSet(def: SetDef, candidates: readonly ReadPod[], nsLabels: NamespaceLabels): NftSet {
  const elements = new Set(fixedElements(def));
  for (const p of candidates) for (const e of setElementsOf(def, p, nsLabels)) elements.add(e);
  return { name: def.name, type: def.type, interval: def.interval, elements: [...elements].sort() };
}

/**
 * A pod's chain of one direction: a jump to the chain of every policy isolating it, in the
 * policies' order, then the deny of what none accepted (logged when asked).
 */
export function podChain(pod: string, d: Direction, policies: readonly CompiledPolicy[], opts: CompileOptions): NftChain {
  const rules = policies.map((c) => `jump ${policyChainName(c.key, d)}`);
  if (opts.logDropsPerSecond) {
    // The prefix is the counter's name, a hash: it carries no tenant's text, and the plan
    // says which pod, direction and policies it stands for.
    const rate = opts.logDropsPerSecond;
    rules.push(`limit rate ${rate}/second burst ${rate} packets log group ${opts.nflogGroup ?? DROP_NFLOG_GROUP} prefix "${podCounter(pod, d).name}"`);
  }
  rules.push(...denyRules(podCounter(pod, d).name, opts.deny ?? "reject"));
  return { name: podChainName(pod, d), comment: objectComment(pod, d), rules };
}

export const podChainName = (pod: string, d: Direction): string => `pod_${stableId(pod)}_${SHORT[d]}`;

export function podCounter(pod: string, direction: Direction): DropCounter {
  return { name: `drop_${stableId(pod)}_${SHORT[direction]}`, pod, direction, comment: objectComment(pod, direction) };
}

const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
