import { createHash } from "node:crypto";
import type { Family } from "../../shared/net/cidr.js";
import { addressInterval, emptyIntervals, formatIntervals, inSorted, ipBlockIntervals, normalize, type Intervals } from "./addresses.js";
import { matchesSelector } from "./selector.js";
import { podKey, type Direction, type NetworkPolicy, type PodInfo, type PolicyPeer, type PolicyRule, type PolicySnapshot, type Protocol } from "./types.js";

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
 *
 * Traffic from the node to its own pods (kubelet probes) never reaches the forward hook: it
 * is output traffic. Bridged traffic between pods of one node reaches it through
 * br_netfilter, which the engine turns on for the pod bridge.
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
}

const FAMILIES = [4, 6] as const;
const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };
const SHORT: Record<Direction, string> = { ingress: "in", egress: "eg" };
/** NF_LOG_PREFIXLEN is 128 with the terminating NUL. */
const LOG_PREFIX_MAX = 127;

const addrKeyword = (f: Family): string => (f === 4 ? "ip" : "ip6");
const addrType = (f: Family): NftSet["type"] => (f === 4 ? "ipv4_addr" : "ipv6_addr");
const portTupleType = (f: Family): NftSet["type"] => (f === 4 ? "ipv4_addr . inet_proto . inet_service" : "ipv6_addr . inet_proto . inet_service");
const familyOf = (ip: string): Family => (ip.includes(":") ? 6 : 4);

export function compilePolicies(snapshot: PolicySnapshot, opts: CompileOptions): PolicyPlan {
  const nsLabels = new Map(snapshot.namespaces.map((n) => [n.name, n.labels]));
  const pods = [...snapshot.pods].filter((p) => p.ips.length > 0).sort(byKey);
  const local = pods.filter((p) => p.nodeName === opts.nodeName);
  const policies = [...snapshot.policies].sort(byKey);

  const plan: PolicyPlan = { sets: [], chains: [], maps: [], counters: [], pods: [], policies: [] };
  const isolatedBy = new Map<string, { ingress: string[]; egress: string[] }>();
  const byNamespace = new Map<string, PodInfo[]>();
  for (const p of pods) byNamespace.set(p.namespace, [...(byNamespace.get(p.namespace) ?? []), p]);
  const ctx: RuleContext = {
    pods,
    byNamespace,
    addrs: new Map(pods.map((p) => [p, p.ips.map(addressInterval)])),
    addrText: { 4: new Map(), 6: new Map() },
    nsLabels,
    plan,
    setsByContent: new Map(),
    peerCache: new Map(),
  };
  for (const p of pods) for (const ip of p.ips) {
    const a = addressInterval(ip);
    ctx.addrText[a.family].set(a.interval[0], ip);
  }

  for (const policy of policies) {
    const selected = local.filter((p) => p.namespace === policy.namespace && matchesSelector(policy.podSelector, p.labels));
    if (selected.length === 0) continue;
    const key = podKey(policy);
    plan.policies.push({ policy: key, types: [...policy.policyTypes], pods: selected.map(podKey) });
    for (const direction of policy.policyTypes) {
      const chain = `pol_${stableId(key)}_${SHORT[direction]}`;
      const rules = (direction === "ingress" ? policy.ingress : policy.egress).flatMap((rule) =>
        compileRule(ctx, { policy, direction, rule, selected }),
      );
      plan.chains.push({ name: chain, comment: `${key} ${direction}`, rules });
      for (const p of selected) {
        const entry = isolatedBy.get(podKey(p)) ?? { ingress: [], egress: [] };
        entry[direction].push(`${key}\u0000${chain}`);
        isolatedBy.set(podKey(p), entry);
      }
    }
  }

  const maps: Record<string, PodMap> = {};
  for (const d of ["ingress", "egress"] as const) for (const f of FAMILIES) maps[`${d}${f}`] = { name: `${d}${f}`, family: f, elements: [] };
  for (const p of local) {
    const by = isolatedBy.get(podKey(p));
    if (!by) continue;
    const enforced: EnforcedPod = { pod: podKey(p), ips: p.ips };
    for (const d of ["ingress", "egress"] as const) {
      if (by[d].length === 0) continue;
      const chain = `pod_${stableId(podKey(p))}_${SHORT[d]}`;
      const counter = `drop_${stableId(podKey(p))}_${SHORT[d]}`;
      const names = by[d].map((x) => x.split("\u0000")[0]!);
      const rules = by[d].map((x) => `jump ${x.split("\u0000")[1]!}`);
      if (opts.logDropsPerSecond) {
        const prefix = `twill-policy drop ${d} ${podKey(p)} by ${names.join(",")}`.slice(0, LOG_PREFIX_MAX - 2) + ": ";
        rules.push(`limit rate ${opts.logDropsPerSecond}/second burst ${opts.logDropsPerSecond} packets log prefix "${prefix}" level info`);
      }
      rules.push(...denyRules(counter, opts.deny ?? "reject"));
      plan.chains.push({ name: chain, comment: `${podKey(p)} ${d}`, rules });
      plan.counters.push({ name: counter, pod: podKey(p), direction: d });
      for (const ip of p.ips) maps[`${d}${familyOf(ip)}`]!.elements.push([ip, chain]);
      enforced[d] = names;
    }
    plan.pods.push(enforced);
  }
  plan.maps = Object.values(maps);
  return plan;
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

interface RuleInput {
  policy: NetworkPolicy;
  direction: Direction;
  rule: PolicyRule;
  /** This node's pods the policy selects. */
  selected: PodInfo[];
}

interface Ports {
  protoOnly: Protocol[];
  numeric: { proto: Protocol; from: number; to: number }[];
  named: { proto: Protocol; name: string }[];
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
  const { rule, direction } = input;
  const peers = rule.peers && rule.peers.length > 0 ? resolvePeers(ctx, input.policy, rule.peers) : null;
  const ports = rule.ports && rule.ports.length > 0 ? splitPorts(rule) : null;
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

function splitPorts(rule: PolicyRule): Ports {
  const out: Ports = { protoOnly: [], numeric: [], named: [] };
  for (const p of rule.ports ?? []) {
    const proto = p.protocol ?? "TCP";
    if (p.port === undefined) {
      if (!out.protoOnly.includes(proto)) out.protoOnly.push(proto);
    } else if (typeof p.port === "number") {
      out.numeric.push({ proto, from: p.port, to: p.endPort !== undefined && p.endPort > p.port ? p.endPort : p.port });
    } else {
      out.named.push({ proto, name: p.port });
    }
  }
  return out;
}

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
      const block = ipBlockIntervals(peer.ipBlock.cidr, peer.ipBlock.except);
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

/**
 * A name part that depends only on what it names (a pod, a policy, a set's contents): a change
 * elsewhere renames nothing, so an update touches only what changed and counters survive it.
 */
function stableId(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

function byKey(a: { namespace: string; name: string }, b: { namespace: string; name: string }): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
