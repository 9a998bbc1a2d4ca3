import { formatIp, type Family } from "../../shared/net/cidr.js";
import { addressInterval, inSorted, type Interval } from "./addresses.js";
import { PROTO, type CompiledPolicy, type PeersDef, type SetDef } from "./policy-chains.js";
import { matchesSelector } from "./selector.js";
import { podKey, type PodInfo } from "./types.js";

/**
 * Which pods a policy selects and what each pod puts in each set: one pod at a time, so the
 * whole compile (every pod against every set) and the incremental one (one changed pod against
 * every set) share the answer. Pure.
 */

/** A pod address, parsed. */
export type PodAddress = { family: Family; interval: Interval };

/** A pod as the compiler uses it: readable addresses and ports only, parsed once. */
export interface ReadPod {
  key: string;
  info: PodInfo;
  addrs: PodAddress[];
  /** Each address as a set element writes it: one spelling per address, whichever pod lists it. */
  texts: string[];
  /** Each address's addressKey. */
  keys: string[];
  /** Scheduled on the node compiled for. */
  local: boolean;
}

/**
 * The pod with the addresses and container ports the compiler can use, or null when no address
 * is left (as a pod the runtime has not reported yet). A pod's unreadable address or port is
 * left out for that pod alone: it would reach the ruleset's text, where one bad item fails the
 * whole transaction.
 */
export function readPod(p: PodInfo, nodeName: string): ReadPod | null {
  const addrs: PodAddress[] = [];
  const ips: string[] = [];
  for (const ip of p.ips) {
    let a: PodAddress;
    try {
      a = addressInterval(ip);
    } catch {
      continue;
    }
    // The same address twice (in two spellings, say) would be one map key twice.
    if (addrs.some((b) => b.family === a.family && b.interval[0] === a.interval[0])) continue;
    addrs.push(a);
    ips.push(ip);
  }
  if (ips.length === 0) return null;
  const ports = p.ports.filter((c) => Number.isInteger(c.port) && c.port >= 1 && c.port <= 65535 && Object.hasOwn(PROTO, c.protocol));
  const info = ips.length === p.ips.length && ports.length === p.ports.length ? p : { ...p, ips, ports };
  return { key: podKey(p), info, addrs, texts: addrs.map(addressText), keys: addrs.map(addressKey), local: p.nodeName === nodeName };
}

/** Does the policy select this pod (one of this node's, in its namespace)? */
export function policySelects(policy: CompiledPolicy, pod: ReadPod): boolean {
  if (!pod.local || pod.info.namespace !== policy.namespace) return false;
  return policy.selectsAll || matchesSelector(policy.podSelector, pod.info.labels);
}

export type NamespaceLabels = ReadonlyMap<string, Record<string, string>>;

/** Is the pod among the peers' selected pods (ipBlocks aside)? */
export function peersSelect(peers: PeersDef, pod: ReadPod, namespaces: NamespaceLabels): boolean {
  const { namespace, labels } = pod.info;
  for (const s of peers.selectors) {
    if (s.namespaceSelector) {
      const nsLabels = namespaces.get(namespace);
      if (!nsLabels || !matchesSelector(s.namespaceSelector, nsLabels)) continue;
    } else if (namespace !== peers.namespace) {
      continue;
    }
    if (s.podSelector && !matchesSelector(s.podSelector, labels)) continue;
    return true;
  }
  return false;
}

/** The elements `pod` puts in the set (none when the set does not take it). */
export function setElementsOf(def: SetDef, pod: ReadPod, namespaces: NamespaceLabels): string[] {
  switch (def.kind) {
    case "peers": {
      if (!peersSelect(def.peers, pod, namespaces)) return [];
      const blocks = def.peers.blocks[def.family];
      return pod.addrs.flatMap((a, i) => (a.family === def.family && !inSorted(blocks, a.interval[0]) ? [pod.texts[i]!] : []));
    }
    case "named-in":
      if (!pod.local || pod.info.namespace !== def.namespace || !matchesSelector(def.podSelector, pod.info.labels)) return [];
      return namedPortTuples(pod, def);
    case "named-out":
      if (def.peers && !peersSelect(def.peers, pod, namespaces) && !inBlocks(def.peers, pod, def.family)) return [];
      return namedPortTuples(pod, def);
    case "ports":
      return [];
  }
}

/** The elements a set holds whatever the pods: its ipBlocks, or its ports. */
export function fixedElements(def: SetDef): readonly string[] {
  return def.kind === "peers" ? def.blockElements : def.kind === "ports" ? def.elements : [];
}

/** Does the set's content depend on namespaces' labels? */
export function setReadsNamespaces(def: SetDef): boolean {
  const peers = def.kind === "named-in" || def.kind === "ports" ? null : def.peers;
  return peers !== null && peers.selectors.some((s) => s.namespaceSelector);
}

/**
 * The namespaces whose pods may be in the set, or null for every namespace (a set that takes
 * pods by address, or any pod).
 */
export function setNamespaces(def: SetDef, namespaces: NamespaceLabels): Set<string> | null {
  if (def.kind === "named-in") return new Set([def.namespace]);
  if (def.kind === "ports") return new Set();
  const peers = def.peers;
  if (!peers || (def.kind === "named-out" && peers.hasBlocks)) return null;
  const out = new Set<string>();
  for (const s of peers.selectors) {
    if (!s.namespaceSelector) out.add(peers.namespace);
    else for (const [name, labels] of namespaces) if (matchesSelector(s.namespaceSelector, labels)) out.add(name);
  }
  return out;
}

const inBlocks = (peers: PeersDef, pod: ReadPod, family: Family): boolean =>
  pod.addrs.some((a) => a.family === family && inSorted(peers.blocks[family], a.interval[0]));

/** `address . proto . port` for every address of the set's family, for each named port the pod has. */
function namedPortTuples(pod: ReadPod, def: { family: Family; named: { proto: keyof typeof PROTO; name: string }[] }): string[] {
  const out: string[] = [];
  for (const want of def.named) {
    const port = pod.info.ports.find((c) => c.name === want.name && c.protocol === want.proto);
    if (!port) continue;
    for (const [i, a] of pod.addrs.entries()) if (a.family === def.family) out.push(`${pod.texts[i]} . ${PROTO[want.proto]} . ${port.port}`);
  }
  return out;
}

/**
 * An address as set elements write it. One spelling per address, whichever pod lists it and
 * however: an element added for one pod is then the element deleted for another. Formatting
 * thousands of IPv6 addresses again on every compile is slow, so the texts are kept (bounded,
 * as churn would otherwise grow them for ever).
 */
function addressText(a: PodAddress): string {
  const known = texts[a.family];
  let t = known.get(a.interval[0]);
  if (t === undefined) {
    if (known.size >= TEXTS_KEPT) known.clear();
    t = formatIp(a.family, a.interval[0]);
    known.set(a.interval[0], t);
  }
  return t;
}

const TEXTS_KEPT = 200_000;
const texts: Record<Family, Map<bigint, string>> = { 4: new Map(), 6: new Map() };

/** Namespace, then name: the order of pods and policies in the plan. */
export function byKey(a: { namespace: string; name: string }, b: { namespace: string; name: string }): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The first of each namespace/name, in the order given: one chain and one counter per name.
 * (The watch never hands two; a test may.)
 */
export function firstByKey<T extends { namespace: string; name: string }>(list: readonly T[]): Map<string, T> {
  const out = new Map<string, T>();
  for (const x of list) {
    const key = podKey(x);
    if (!out.has(key)) out.set(key, x);
  }
  return out;
}

/**
 * Which of two of this node's pods listing one address it is: nft refuses a verdict map with
 * one key twice, and two pods may list one address for a while (a Terminating pod whose
 * sandbox is gone keeps its status.podIPs while a new pod gets the address from IPAM). The
 * address is the new pod's: a pod not being deleted wins over one that is, then the one created
 * last, then the first name. A total order, so every compile picks the same, in any order.
 */
export function likelierOwner(a: ReadPod, b: ReadPod): ReadPod {
  if (Boolean(a.info.terminating) !== Boolean(b.info.terminating)) return a.info.terminating ? b : a;
  const [ta, tb] = [a.info.createdAt ?? 0, b.info.createdAt ?? 0];
  if (ta !== tb) return ta > tb ? a : b;
  return byKey(a.info, b.info) <= 0 ? a : b;
}

export const addressKey = (a: PodAddress): string => `${a.family}/${a.interval[0]}`;
