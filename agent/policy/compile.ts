import type { Family } from "../../shared/net/cidr.js";
import { errorMessage } from "../errors.js";
import { addressInterval, emptyIntervals, formatIntervals, inSorted, ipBlockIntervals, normalize, type Intervals } from "./addresses.js";
import { dropLogPrefix, objectComment, stableId } from "./names.js";
import { matchesSelector } from "./selector.js";
import { podKey, type Direction, type NetworkPolicy, type PodInfo, type PolicyPeer, type PolicyPort, type PolicyRule, type PolicySnapshot, type Protocol } from "./types.js";

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
 *   address sets: the rule count grows with policies and pods, never with peers. Rules with
 *   the same peers share one set, and a set of single addresses is a hash set (nft handles
 *   interval sets far more slowly); only ipBlocks make interval sets.
 * - Named ports: ingress resolves them on the selected pod (a set of pod address . protocol
 *   . port), egress on the destination pods; a pod without the name gets nothing for it.
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

export interface NftSet {
  name: string;
  type: "ipv4_addr" | "ipv6_addr" | "ipv4_addr . inet_proto . inet_service" | "ipv6_addr . inet_proto . inet_service";
  interval: boolean;
  elements: string[];
}

export interface NftChain {
  name: string;
  comment: string;
  rules: string[];
}

/** A verdict map from a pod address to its pod chain. */
export interface PodMap {
  name: `${Direction}${Family}`;
  family: Family;
  elements: [address: string, chain: string][];
}

export interface EnforcedPod {
  pod: string;
  ips: string[];
  /** Policies isolating the pod, per direction; absent: that direction is open. */
  ingress?: string[];
  egress?: string[];
}

export interface DropCounter {
  name: string;
  pod: string;
  direction: Direction;
  comment: string;
}

/** A policy selecting this node's pods that could not be compiled, and why. */
export interface RefusedPolicy {
  policy: string;
  reason: string;
  pods: string[];
}

export interface PolicyPlan {
  sets: NftSet[];
  chains: NftChain[];
  maps: PodMap[];
  counters: DropCounter[];
  /** This node's pods that at least one policy isolates. */
  pods: EnforcedPod[];
  /** Policies selecting at least one of this node's pods. */
  policies: { policy: string; types: Direction[]; pods: string[] }[];
  /** Compiled as allowing nothing: their pods are isolated in their directions, fail closed. */
  refused: RefusedPolicy[];
}

const FAMILIES = [4, 6] as const;
const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };
const SHORT: Record<Direction, string> = { ingress: "in", egress: "eg" };
const DIRECTIONS = ["ingress", "egress"] as const;

const addrKeyword = (f: Family): string => (f === 4 ? "ip" : "ip6");
const addrType = (f: Family): NftSet["type"] => (f === 4 ? "ipv4_addr" : "ipv6_addr");
const portTupleType = (f: Family): NftSet["type"] => (f === 4 ? "ipv4_addr . inet_proto . inet_service" : "ipv6_addr . inet_proto . inet_service");
const familyOf = (ip: string): Family => (ip.includes(":") ? 6 : 4);

export function compilePolicies(snapshot: PolicySnapshot, opts: CompileOptions): PolicyPlan {
  const nsLabels = new Map(snapshot.namespaces.map((n) => [n.name, n.labels]));
  const { pods, addrs } = readPods(snapshot.pods);
  const local = pods.filter((p) => p.nodeName === opts.nodeName);
  const policies = uniqueByKey([...snapshot.policies].sort(byKey));

  const plan: PolicyPlan = { sets: [], chains: [], maps: [], counters: [], pods: [], policies: [], refused: [] };
  const isolatedBy = new Map<string, { ingress: string[]; egress: string[] }>();
  const byNamespace = new Map<string, PodInfo[]>();
  for (const p of pods) byNamespace.set(p.namespace, [...(byNamespace.get(p.namespace) ?? []), p]);
  const ctx: RuleContext = {
    pods,
    byNamespace,
    addrs,
    addrText: { 4: new Map(), 6: new Map() },
    nsLabels,
    plan,
    setsByContent: new Map(),
    peerCache: new Map(),
  };
  for (const p of pods) for (const [i, a] of addrs.get(p)!.entries()) ctx.addrText[a.family].set(a.interval[0], p.ips[i]!);

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

type Address = { family: Family; interval: [bigint, bigint] };

/**
 * The pods the compiler can use, each with the addresses and container ports it can read, and
 * those addresses parsed once. A pod's unreadable address or port is left out for that pod
 * alone (it reaches the ruleset's text, where one bad item fails the whole transaction); a pod
 * with no address left takes no part, as one the runtime has not reported yet.
 */
function readPods(list: readonly PodInfo[]): { pods: PodInfo[]; addrs: Map<PodInfo, Address[]> } {
  const pods: PodInfo[] = [];
  const addrs = new Map<PodInfo, Address[]>();
  for (const p of uniqueByKey([...list].sort(byKey))) {
    const parsed: Address[] = [];
    const ips: string[] = [];
    for (const ip of p.ips) {
      let a: Address;
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

const addressKey = (a: Address): string => `${a.family}/${a.interval[0]}`;

/**
 * Which of this node's pods each address is: nft refuses a verdict map with one key twice, and
 * two pods may list one address for a while (a Terminating pod whose sandbox is gone keeps its
 * status.podIPs while a new pod gets the address from IPAM). The address is the new pod's: a
 * pod not being deleted wins over one that is, then the one created last, then the first name,
 * so every compile picks the same.
 */
function addressOwners(local: readonly PodInfo[], addrs: Map<PodInfo, Address[]>): Map<string, PodInfo> {
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

/**
 * The rules of each direction's policy chain. Everything that can be refused (a CIDR, a port)
 * is read before any set is added to the plan, so a refused policy leaves nothing behind.
 */
function compilePolicyRules(ctx: RuleContext, policy: NetworkPolicy, types: Direction[], selected: PodInfo[]): Record<Direction, string[]> {
  const prepared = types.map((direction) => {
    const list = direction === "ingress" ? policy.ingress : policy.egress;
    return { direction, rules: list.map((rule, i) => prepareRule(ctx, policy, rule, `${direction}[${i}]`)) };
  });
  const out: Record<Direction, string[]> = { ingress: [], egress: [] };
  for (const { direction, rules } of prepared) out[direction] = rules.flatMap((r) => compileRule(ctx, { direction, selected, ...r }));
  return out;
}

interface RuleContext {
  /** Every pod with an address, this node's or not: the peers. */
  pods: PodInfo[];
  byNamespace: Map<string, PodInfo[]>;
  /** Each pod's addresses, parsed once. */
  addrs: Map<PodInfo, { family: Family; interval: [bigint, bigint] }[]>;
  /** Pod addresses' own texts by value, per family: formatting thousands of them again is slow. */
  addrText: Record<Family, Map<bigint, string>>;
  nsLabels: Map<string, Record<string, string>>;
  plan: PolicyPlan;
  /** Set content -> name: policies with the same peers share one set. */
  setsByContent: Map<string, string>;
  /** (policy namespace, peers) -> resolved peers: a selector is matched against the pods once. */
  peerCache: Map<string, Peers>;
}

/** A rule's peers: merged address intervals per family, and the pods among them. */
interface Peers {
  intervals: Intervals;
  /** Pods the selectors chose (ipBlocks add none). */
  pods: PodInfo[];
  hasBlocks: boolean;
  /** The address set made of them, per family, once made. */
  setNames: Partial<Record<Family, string>>;
}

/** A rule read and checked: its peers resolved, its ports split by kind. */
interface PreparedRule {
  /** Null: any peer. */
  peers: Peers | null;
  /** Null: any port and protocol. */
  ports: Ports | null;
}

interface RuleInput extends PreparedRule {
  direction: Direction;
  /** This node's pods the policy selects. */
  selected: PodInfo[];
}

interface Ports {
  protoOnly: Protocol[];
  numeric: { proto: Protocol; from: number; to: number }[];
  named: { proto: Protocol; name: string }[];
}

/** Reads one rule; throws, naming the rule (`ingress[0]`) and the value, what cannot be compiled. */
function prepareRule(ctx: RuleContext, policy: NetworkPolicy, rule: PolicyRule, where: string): PreparedRule {
  try {
    return {
      peers: rule.peers && rule.peers.length > 0 ? resolvePeers(ctx, policy, rule.peers) : null,
      ports: rule.ports && rule.ports.length > 0 ? splitPorts(rule.ports) : null,
    };
  } catch (err) {
    throw new Error(`${where}: ${errorMessage(err)}`);
  }
}

/** Adds a set with these contents unless an identical one exists; its name either way. */
function internSet(ctx: RuleContext, type: NftSet["type"], interval: boolean, elements: string[]): string {
  const key = `${type}|${interval}|${elements.join(",")}`;
  const known = ctx.setsByContent.get(key);
  if (known) return known;
  const name = `set_${stableId(key)}`;
  ctx.plan.sets.push({ name, type, interval, elements });
  ctx.setsByContent.set(key, name);
  return name;
}

/** The nft rules of one ingress/egress rule, for a policy chain; adds the sets they use to the plan. */
function compileRule(ctx: RuleContext, input: RuleInput): string[] {
  const { peers, ports, direction } = input;
  const side = direction === "ingress" ? "saddr" : "daddr";
  const out: string[] = [];

  // The address match per family: "" for any peer, null when the rule allows no peer of the family.
  const addrMatch = (f: Family): string | null => {
    if (!peers) return "";
    const list = peers.intervals[f];
    if (list.length === 0) return null;
    // Plain hash sets when every element is one address: far cheaper for nft than intervals.
    peers.setNames[f] ??= internSet(ctx, addrType(f), list.some(([a, b]) => a !== b), formatIntervals(f, list, ctx.addrText[f]));
    return `${addrKeyword(f)} ${side} @${peers.setNames[f]} `;
  };
  // Rules that do not depend on a family are written once when the rule allows any peer.
  const families: (Family | null)[] = peers ? [...FAMILIES] : [null];
  const match = (f: Family | null) => (f === null ? "" : addrMatch(f));

  if (!ports) {
    for (const f of families) {
      const m = match(f);
      if (m !== null) out.push(`${m}accept`);
    }
    return out;
  }
  for (const f of families) {
    const m = match(f);
    if (m === null) continue;
    if (ports.protoOnly.length > 0) out.push(`${m}meta l4proto { ${ports.protoOnly.map((p) => PROTO[p]).join(", ")} } accept`);
    if (ports.numeric.length > 0) {
      const elems = ports.numeric.map((n) => `${PROTO[n.proto]} . ${n.from === n.to ? n.from : `${n.from}-${n.to}`}`);
      out.push(`${m}meta l4proto . th dport { ${elems.join(", ")} } accept`);
    }
  }
  if (ports.named.length > 0) {
    for (const f of FAMILIES) {
      // Ingress: the selected pod's own ports; egress: the ports of the destination pods.
      const owners = direction === "ingress" ? input.selected : egressOwners(ctx, peers, f);
      const elements = namedPortTuples(owners, ports.named, f);
      if (elements.length === 0) continue;
      const m = match(f);
      if (m === null) continue;
      const name = internSet(ctx, portTupleType(f), false, elements);
      out.push(`${direction === "ingress" ? m : ""}${addrKeyword(f)} daddr . meta l4proto . th dport @${name} accept`);
    }
  }
  return out;
}

/** Destination pods an egress rule's named ports resolve on: the peers' pods, or any pod in its blocks. */
function egressOwners(ctx: RuleContext, peers: Peers | null, f: Family): PodInfo[] {
  if (!peers) return ctx.pods;
  if (!peers.hasBlocks) return peers.pods;
  const list = peers.intervals[f];
  return ctx.pods.filter((p) => ctx.addrs.get(p)!.some((a) => a.family === f && inSorted(list, a.interval[0])));
}

/** `address . proto . port` for every address of `family` of each pod that has a port of that name. */
function namedPortTuples(pods: PodInfo[], named: Ports["named"], family: Family): string[] {
  const out = new Set<string>();
  for (const p of pods) {
    for (const want of named) {
      const port = p.ports.find((c) => c.name === want.name && c.protocol === want.proto);
      if (!port) continue;
      for (const ip of p.ips) if (familyOf(ip) === family) out.add(`${ip} . ${PROTO[want.proto]} . ${port.port}`);
    }
  }
  return [...out].sort();
}

/** A rule's ports by kind; a protocol or number nft could not take is refused. */
function splitPorts(list: readonly PolicyPort[]): Ports {
  const out: Ports = { protoOnly: [], numeric: [], named: [] };
  for (const p of list) {
    const proto = p.protocol ?? "TCP";
    if (!Object.hasOwn(PROTO, proto)) throw new Error(`unknown protocol ${JSON.stringify(proto)}`);
    if (p.port === undefined) {
      if (!out.protoOnly.includes(proto)) out.protoOnly.push(proto);
    } else if (typeof p.port === "number") {
      if (!isPortNumber(p.port)) throw new Error(`invalid port ${JSON.stringify(p.port)}`);
      if (p.endPort !== undefined && !isPortNumber(p.endPort)) throw new Error(`invalid endPort ${JSON.stringify(p.endPort)}`);
      out.numeric.push({ proto, from: p.port, to: p.endPort !== undefined && p.endPort > p.port ? p.endPort : p.port });
    } else if (typeof p.port === "string") {
      out.named.push({ proto, name: p.port });
    } else {
      throw new Error(`invalid port ${JSON.stringify(p.port)}`);
    }
  }
  return out;
}

const isPortNumber = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;

/** The addresses and pods a rule's peers stand for, merged per family. */
function resolvePeers(ctx: RuleContext, policy: NetworkPolicy, peers: PolicyPeer[]): Peers {
  const key = `${policy.namespace}|${JSON.stringify(peers)}`;
  const cached = ctx.peerCache.get(key);
  if (cached) return cached;
  const acc = emptyIntervals();
  const pods = new Set<PodInfo>();
  let hasBlocks = false;
  for (const peer of peers) {
    if (peer.ipBlock) {
      hasBlocks = true;
      const block = ipBlockIntervals(peer.ipBlock.cidr, peer.ipBlock.except ?? []);
      acc[block.family].push(...block.intervals);
      continue;
    }
    if (!peer.podSelector && !peer.namespaceSelector) continue;
    for (const namespace of peerNamespaces(ctx, policy, peer)) {
      for (const p of ctx.byNamespace.get(namespace) ?? []) {
        if (pods.has(p) || (peer.podSelector && !matchesSelector(peer.podSelector, p.labels))) continue;
        pods.add(p);
        for (const a of ctx.addrs.get(p)!) acc[a.family].push([...a.interval]);
      }
    }
  }
  const resolved: Peers = { intervals: { 4: normalize(acc[4]), 6: normalize(acc[6]) }, pods: [...pods], hasBlocks, setNames: {} };
  ctx.peerCache.set(key, resolved);
  return resolved;
}

/**
 * The namespaces a peer's pods come from. podSelector alone: the policy's own; a
 * namespaceSelector (with or without a podSelector): every namespace it matches.
 */
function peerNamespaces(ctx: RuleContext, policy: NetworkPolicy, peer: PolicyPeer): string[] {
  if (!peer.namespaceSelector) return [policy.namespace];
  return [...ctx.nsLabels].filter(([, labels]) => matchesSelector(peer.namespaceSelector!, labels)).map(([name]) => name);
}

function byKey(a: { namespace: string; name: string }, b: { namespace: string; name: string }): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The first of each namespace/name in a list sorted by key: one chain and one counter per name. */
function uniqueByKey<T extends { namespace: string; name: string }>(sorted: T[]): T[] {
  return sorted.filter((x, i) => i === 0 || byKey(sorted[i - 1]!, x) !== 0);
}
