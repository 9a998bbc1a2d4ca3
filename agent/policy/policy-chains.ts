import type { Family } from "../../shared/net/cidr.js";
import { errorMessage } from "../errors.js";
import { emptyIntervals, formatIntervals, inSorted, ipBlockIntervals, normalize, type Interval, type Intervals } from "./addresses.js";
import { stableId } from "./names.js";
import type { NftSet, PolicyPlan } from "./plan.js";
import { matchesSelector } from "./selector.js";
import type { Direction, NetworkPolicy, PodInfo, PolicyPeer, PolicyPort, PolicyRule, Protocol } from "./types.js";

/**
 * The rules of a policy's chains (compile.ts makes the chains and the pods' chains around
 * them): a rule per (rule, port kind, family), matching peers through named address sets, so
 * the rule count grows with policies and pods, never with peers. Rules with the same peers
 * share one set, and a set of single addresses is a hash set (nft handles interval sets far
 * more slowly); only ipBlocks make interval sets. Named ports resolve on the selected pod for
 * ingress (a set of pod address . protocol . port), on the destination pods for egress.
 */

export const FAMILIES = [4, 6] as const;
export const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };

const addrKeyword = (f: Family): string => (f === 4 ? "ip" : "ip6");
const addrType = (f: Family): NftSet["type"] => (f === 4 ? "ipv4_addr" : "ipv6_addr");
const portTupleType = (f: Family): NftSet["type"] => (f === 4 ? "ipv4_addr . inet_proto . inet_service" : "ipv6_addr . inet_proto . inet_service");
export const familyOf = (ip: string): Family => (ip.includes(":") ? 6 : 4);

/** A pod address, parsed. */
export type PodAddress = { family: Family; interval: Interval };

export interface RuleContext {
  /** Every pod with an address, this node's or not: the peers. */
  pods: PodInfo[];
  byNamespace: Map<string, PodInfo[]>;
  /** Each pod's addresses, parsed once. */
  addrs: Map<PodInfo, PodAddress[]>;
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

/** The context every policy's rules are compiled in; the plan is where they add their sets. */
export function ruleContext(
  pods: PodInfo[],
  addrs: Map<PodInfo, PodAddress[]>,
  nsLabels: Map<string, Record<string, string>>,
  plan: PolicyPlan,
): RuleContext {
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
  return ctx;
}

/**
 * The rules of each direction's policy chain. Everything that can be refused (a CIDR, a port)
 * is read before any set is added to the plan, so a refused policy leaves nothing behind.
 */
export function compilePolicyRules(ctx: RuleContext, policy: NetworkPolicy, types: Direction[], selected: PodInfo[]): Record<Direction, string[]> {
  const prepared = types.map((direction) => {
    const list = direction === "ingress" ? policy.ingress : policy.egress;
    return { direction, rules: list.map((rule, i) => prepareRule(ctx, policy, rule, `${direction}[${i}]`)) };
  });
  const out: Record<Direction, string[]> = { ingress: [], egress: [] };
  for (const { direction, rules } of prepared) out[direction] = rules.flatMap((r) => compileRule(ctx, { direction, selected, ...r }));
  return out;
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
