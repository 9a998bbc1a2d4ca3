import type { Family } from "../../shared/net/cidr.js";
import { errorMessage } from "../errors.js";
import { formatIntervals, ipBlockIntervals, normalize, type Interval, type Intervals } from "./addresses.js";
import { objectComment, stableId } from "./names.js";
import type { NftChain, NftSet } from "./plan.js";
import { checkSelector } from "./selector.js";
import type { Direction, LabelSelector, NetworkPolicy, PolicyPeer, PolicyPort, PolicyRule, Protocol } from "./types.js";
import { podKey } from "./types.js";

/**
 * A policy's chains, compiled from the policy alone: a rule per (rule, port kind, family),
 * matching peers through named sets, so the rule count grows with policies, never with peers
 * or pods. A set is named after what it stands for (these peers, this family), never after its
 * elements: a pod that starts, stops or is relabelled changes the elements of the sets that
 * select it, and no rule (issue 26). So a rule whose peers are selectors uses its set even
 * while the set is empty, and matches nothing then. Which pods a set holds is
 * set-members.ts's; the whole compile (compile.ts) and the incremental one (incremental.ts)
 * both fill the sets from there.
 *
 * Pod addresses are single elements of a hash set (nft handles interval sets far more
 * slowly); only ipBlocks make interval sets, and a pod address inside a set's blocks is left
 * to the block, as an interval set refuses overlapping elements. Named ports resolve on the
 * selected pod for ingress (a set of pod address . protocol . port), on the destination pods
 * for egress.
 */

export const FAMILIES = [4, 6] as const;
export const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };
export const DIRECTIONS = ["ingress", "egress"] as const;
export const SHORT: Record<Direction, string> = { ingress: "in", egress: "eg" };

const addrKeyword = (f: Family): string => (f === 4 ? "ip" : "ip6");
const addrType = (f: Family): NftSet["type"] => (f === 4 ? "ipv4_addr" : "ipv6_addr");
const portTupleType = (f: Family): NftSet["type"] => (f === 4 ? "ipv4_addr . inet_proto . inet_service" : "ipv6_addr . inet_proto . inet_service");
export const familyOf = (ip: string): Family => (ip.includes(":") ? 6 : 4);

/** A rule's peers: pods by selector, addresses by ipBlock. */
export interface PeersDef {
  /** The policy's namespace: where a peer with a podSelector alone takes its pods. */
  namespace: string;
  /** The peers that select pods (a podSelector, a namespaceSelector or both). */
  selectors: { podSelector?: LabelSelector; namespaceSelector?: LabelSelector }[];
  /** The ipBlocks less their excepts, merged, per family. */
  blocks: Intervals;
  hasBlocks: boolean;
  /** What the set is named after: the same peers in any policy share one set. */
  key: string;
}

/** A named port a rule allows. */
export interface NamedPort {
  proto: Protocol;
  name: string;
}

/**
 * A set a policy's rules use, by what it stands for:
 * - "peers": the addresses of a rule's peers, of one family;
 * - "named-in": `address . protocol . port` of this node's pods a policy selects, for the
 *   named ports of an ingress rule;
 * - "named-out": the same for the destination pods of an egress rule (every pod when the
 *   rule allows any peer);
 * - "ports": a rule's protocols, or protocol . port pairs (numbers and ranges), the same for
 *   every pod: no pod puts anything in it.
 */
export type SetDef =
  | { kind: "peers"; name: string; family: Family; type: NftSet["type"]; interval: boolean; peers: PeersDef; blockElements: string[] }
  | { kind: "named-in"; name: string; family: Family; type: NftSet["type"]; interval: false; namespace: string; podSelector: LabelSelector; named: NamedPort[] }
  | { kind: "named-out"; name: string; family: Family; type: NftSet["type"]; interval: false; peers: PeersDef | null; named: NamedPort[] }
  | { kind: "ports"; name: string; type: "inet_proto" | "inet_proto . inet_service"; interval: boolean; elements: string[] };

/** A policy compiled from itself alone. */
export interface CompiledPolicy {
  key: string;
  namespace: string;
  podSelector: LabelSelector;
  types: Direction[];
  /** Why it cannot be compiled: it then isolates its pods and allows nothing (no rules, no sets). */
  refusal?: string;
  /** Its podSelector cannot be evaluated: it selects every pod of its namespace, which fail closed. */
  selectsAll: boolean;
  /** A chain per direction in `types`. */
  chains: NftChain[];
  /** The sets its rules use, each once. */
  sets: SetDef[];
}

export const policyChainName = (key: string, d: Direction): string => `pol_${stableId(key)}_${SHORT[d]}`;

/**
 * A policy's chains and the sets they use. Everything that can be refused (a selector, a CIDR,
 * a port) is read before any rule is made, so a refused policy has no rules and no sets, and
 * the refusal depends on the policy alone, never on which pods exist.
 */
export function compilePolicy(policy: NetworkPolicy): CompiledPolicy {
  const key = podKey(policy);
  const types = DIRECTIONS.filter((d) => policy.policyTypes.includes(d));
  const out: CompiledPolicy = { key, namespace: policy.namespace, podSelector: policy.podSelector, types, selectsAll: false, chains: [], sets: [] };
  const rules: Record<Direction, string[]> = { ingress: [], egress: [] };
  try {
    try {
      checkSelector(policy.podSelector);
    } catch (err) {
      out.selectsAll = true;
      throw new Error(`podSelector: ${errorMessage(err)}`);
    }
    const prepared = types.map((direction) => {
      const list = direction === "ingress" ? policy.ingress : policy.egress;
      return { direction, rules: list.map((rule, i) => prepareRule(policy.namespace, rule, `${direction}[${i}]`)) };
    });
    const sets = new Map<string, SetDef>();
    for (const { direction, rules: list } of prepared) {
      for (const r of list) rules[direction].push(...compileRule(policy, direction, r, sets));
    }
    out.sets = [...sets.values()];
  } catch (err) {
    out.refusal = errorMessage(err);
    rules.ingress = [];
    rules.egress = [];
  }
  out.chains = types.map((d) => ({ name: policyChainName(key, d), comment: objectComment(key, d), rules: rules[d] }));
  return out;
}

/** A rule read and checked: its peers resolved, its ports split by kind. */
export interface PreparedRule {
  /** Null: any peer. */
  peers: PeersDef | null;
  /** Null: any port and protocol. */
  ports: Ports | null;
}

export interface Ports {
  protoOnly: Protocol[];
  numeric: { proto: Protocol; from: number; to: number }[];
  named: NamedPort[];
}

/**
 * Reads one rule; throws, naming the rule (`ingress[0]`) and the value, what cannot be compiled.
 * Also what agent/flows/decide.ts evaluates a connection against, so it reads a rule as the
 * compiler does.
 */
export function prepareRule(namespace: string, rule: PolicyRule, where: string): PreparedRule {
  try {
    return {
      peers: rule.peers && rule.peers.length > 0 ? readPeers(namespace, rule.peers) : null,
      ports: rule.ports && rule.ports.length > 0 ? splitPorts(rule.ports) : null,
    };
  } catch (err) {
    throw new Error(`${where}: ${errorMessage(err)}`);
  }
}

/** The nft rules of one ingress/egress rule, for a policy chain; adds the sets they use to `sets`. */
function compileRule(policy: NetworkPolicy, direction: Direction, { peers, ports }: PreparedRule, sets: Map<string, SetDef>): string[] {
  const side = direction === "ingress" ? "saddr" : "daddr";
  const use = (def: SetDef): string => {
    sets.set(def.name, def);
    return def.name;
  };
  const out: string[] = [];

  // The address match per family: "" for any peer, null when the rule allows no peer of the family.
  const match = (f: Family | null): string | null => {
    if (f === null || !peers) return "";
    if (peers.selectors.length === 0 && peers.blocks[f].length === 0) return null;
    return `${addrKeyword(f)} ${side} @${use(peersSet(peers, f))} `;
  };
  // Rules that do not depend on a family are written once when the rule allows any peer.
  const families: (Family | null)[] = peers ? [...FAMILIES] : [null];

  if (!ports) {
    for (const f of families) {
      const m = match(f);
      if (m !== null) out.push(`${m}accept`);
    }
    return out;
  }
  const protocols = portsSet("inet_proto", ports.protoOnly.map((p) => PROTO[p]));
  const numbers = portsSet("inet_proto . inet_service", ports.numeric.map((n) => `${PROTO[n.proto]} . ${n.from === n.to ? n.from : `${n.from}-${n.to}`}`));
  for (const f of families) {
    const m = match(f);
    if (m === null) continue;
    if (protocols) out.push(`${m}meta l4proto @${use(protocols)} accept`);
    if (numbers) out.push(`${m}meta l4proto . th dport @${use(numbers)} accept`);
  }
  if (ports.named.length > 0) {
    for (const f of FAMILIES) {
      const m = match(f);
      if (m === null) continue;
      // Ingress: the selected pod's own ports; egress: the ports of the destination pods.
      const def: SetDef =
        direction === "ingress"
          ? { kind: "named-in", ...namedSet(`in|${f}|${policy.namespace}|${JSON.stringify(policy.podSelector)}|${JSON.stringify(ports.named)}`, f), namespace: policy.namespace, podSelector: policy.podSelector, named: ports.named }
          : { kind: "named-out", ...namedSet(`out|${f}|${peers?.key ?? "*"}|${JSON.stringify(ports.named)}`, f), peers, named: ports.named };
      out.push(`${direction === "ingress" ? m : ""}${addrKeyword(f)} daddr . meta l4proto . th dport @${use(def)} accept`);
    }
  }
  return out;
}

/**
 * The protocols, or protocol . port pairs, of a rule, as a named set (null for none), named
 * after its elements, which never change: every rule with the same ports shares it. Never an
 * inline (anonymous) set: the kernel binds each anonymous set to its rule by walking the whole
 * transaction, so a table with one per policy rule took time quadratic in its size to apply.
 */
function portsSet(type: "inet_proto" | "inet_proto . inet_service", list: string[]): SetDef | null {
  if (list.length === 0) return null;
  const elements = [...new Set(list)].sort();
  return { kind: "ports", name: `ports_${stableId(`${type}|${elements.join(", ")}`)}`, type, interval: elements.some((e) => e.includes("-")), elements };
}

const namedSet = (key: string, family: Family) => ({ name: `set_${stableId(key)}`, family, type: portTupleType(family), interval: false as const });

function peersSet(peers: PeersDef, family: Family): SetDef {
  return {
    kind: "peers",
    name: `set_${stableId(`peers|${family}|${peers.key}`)}`,
    family,
    type: addrType(family),
    interval: peers.hasBlocks,
    peers,
    blockElements: formatIntervals(family, peers.blocks[family]),
  };
}

/** A rule's peers, read: selectors checked, ipBlocks made intervals. */
function readPeers(namespace: string, list: PolicyPeer[]): PeersDef {
  const blocks: Record<Family, Interval[]> = { 4: [], 6: [] };
  const selectors: PeersDef["selectors"] = [];
  let hasBlocks = false;
  let ownNamespace = false;
  for (const peer of list) {
    if (peer.ipBlock) {
      hasBlocks = true;
      const block = ipBlockIntervals(peer.ipBlock.cidr, peer.ipBlock.except ?? []);
      blocks[block.family].push(...block.intervals);
      continue;
    }
    if (!peer.podSelector && !peer.namespaceSelector) continue;
    if (peer.podSelector) checkSelector(peer.podSelector);
    if (peer.namespaceSelector) checkSelector(peer.namespaceSelector);
    if (!peer.namespaceSelector) ownNamespace = true;
    selectors.push({ ...(peer.podSelector ? { podSelector: peer.podSelector } : {}), ...(peer.namespaceSelector ? { namespaceSelector: peer.namespaceSelector } : {}) });
  }
  // Peers that never look at the policy's namespace are the same peers in every namespace.
  const key = JSON.stringify([ownNamespace ? namespace : null, list]);
  return { namespace, selectors, blocks: { 4: normalize(blocks[4]), 6: normalize(blocks[6]) }, hasBlocks, key };
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
