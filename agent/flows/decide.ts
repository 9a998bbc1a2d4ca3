import type { Family } from "../../shared/net/cidr.js";
import { addressInterval, inSorted } from "../policy/addresses.js";
import { compilePolicy, prepareRule, type PeersDef, type PreparedRule } from "../policy/policy-chains.js";
import { matchesSelector } from "../policy/selector.js";
import { addressKey, byKey, firstByKey, peersSelect, readPod, type NamespaceLabels, type PodAddress, type ReadPod } from "../policy/set-members.js";
import type { Direction, LabelSelector, PodInfo, PolicySnapshot } from "../policy/types.js";
import type { FlowProtocol } from "../../shared/kernel/netlink/flow-events.js";

/**
 * Which policies admit a connection: NetworkPolicy read as the compiler (agent/policy) enforces
 * it, evaluated on one connection instead of written as rules. It reads policies, rules and pods
 * with the compiler's own readers (compilePolicy, prepareRule, readPod, peersSelect), so a
 * policy the compiler refuses admits nothing here either, and a pod address the compiler leaves
 * out of its sets matches nothing. decide.test.ts checks it against the compiled plan.
 */

/** One connection, as seen from `pod`, one of this node's pods. */
export interface FlowQuery {
  direction: Direction;
  pod: PodInfo;
  /** Ingress: the source; egress: the destination (after a Service's DNAT). */
  peerIp: string;
  peerPod: PodInfo | null;
  protocol: FlowProtocol;
  /** The destination port: ingress, `pod`'s; egress, the peer's. */
  port: number | null;
}

export interface Decision {
  /** Some policy selecting the pod has this direction in its policyTypes. */
  isolated: boolean;
  /** `ns/name` of the policies isolating the pod whose rules admit the connection, in the plan's order. */
  admittedBy: string[];
}

/** A snapshot's policies, read once, to decide many connections by. */
export type Decider = (q: FlowQuery) => Decision;

/** Reads the snapshot's policies once; the decider answers for connections under that snapshot. */
export function decider(snapshot: PolicySnapshot): Decider {
  const namespaces: NamespaceLabels = new Map(snapshot.namespaces.map((n) => [n.name, n.labels]));
  const policies = [...firstByKey(snapshot.policies).values()].sort(byKey).map(readPolicy);
  return (q) => {
    const pod = readPod(q.pod, "");
    // The compiler isolates only pods with an address it can read.
    if (!pod) return { isolated: false, admittedBy: [] };
    const peer = readAddress(q.peerIp);
    const conn: Connection = { ...q, pod, peer, peerPod: q.peerPod && peer ? readPeer(q.peerPod, peer) : null };
    let isolated = false;
    const admittedBy: string[] = [];
    for (const p of policies) {
      if (!p.types.includes(q.direction) || !selects(p, q.pod)) continue;
      isolated = true;
      if (p.rules[q.direction].some((r) => admits(r, conn, namespaces))) admittedBy.push(p.key);
    }
    return { isolated, admittedBy };
  };
}

/** {@link decider} for one connection. */
export const decide = (snapshot: PolicySnapshot, q: FlowQuery): Decision => decider(snapshot)(q);

interface ReadPolicy {
  key: string;
  namespace: string;
  podSelector: LabelSelector;
  selectsAll: boolean;
  types: Direction[];
  /** Per direction of `types`; none for a refused policy, which admits nothing. */
  rules: Record<Direction, PreparedRule[]>;
}

function readPolicy(policy: PolicySnapshot["policies"][number]): ReadPolicy {
  const compiled = compilePolicy(policy);
  const rules: ReadPolicy["rules"] = { ingress: [], egress: [] };
  if (compiled.refusal === undefined) {
    for (const d of compiled.types) rules[d] = policy[d].map((rule, i) => prepareRule(policy.namespace, rule, `${d}[${i}]`));
  }
  return { key: compiled.key, namespace: compiled.namespace, podSelector: compiled.podSelector, selectsAll: compiled.selectsAll, types: compiled.types, rules };
}

const selects = (p: ReadPolicy, pod: PodInfo): boolean => pod.namespace === p.namespace && (p.selectsAll || matchesSelector(p.podSelector, pod.labels));

interface Connection {
  direction: Direction;
  pod: ReadPod;
  /** Null when the kernel's text is no address: nothing matches it. */
  peer: PodAddress | null;
  /** Null also when the pod does not hold the address: the compiler's sets hold only a pod's own. */
  peerPod: ReadPod | null;
  protocol: FlowProtocol;
  port: number | null;
}

function readAddress(ip: string): PodAddress | null {
  try {
    return addressInterval(ip);
  } catch {
    return null;
  }
}

function readPeer(info: PodInfo, address: PodAddress): ReadPod | null {
  const pod = readPod(info, "");
  return pod && pod.keys.includes(addressKey(address)) ? pod : null;
}

/** Does one ingress/egress rule admit the connection? As compileRule writes it. */
function admits({ peers, ports }: PreparedRule, c: Connection, namespaces: NamespaceLabels): boolean {
  const fromPeers = peers === null || peerIn(peers, c, namespaces);
  if (!ports) return fromPeers;
  if (fromPeers && ports.protoOnly.some((p) => p === c.protocol)) return true;
  if (fromPeers && ports.numeric.some((n) => n.proto === c.protocol && c.port !== null && c.port >= n.from && c.port <= n.to)) return true;
  const target = namedPortPod(peers, fromPeers, c, namespaces);
  return target !== null && ports.named.some((n) => n.proto === c.protocol && target.info.ports.find((p) => p.name === n.name && p.protocol === n.proto)?.port === c.port);
}

/**
 * The pod a rule's named ports resolve on, when the rule may admit the connection by them.
 * Ingress: this pod, for a peer among the rule's peers. Egress: the peer pod, when the rule's
 * peers take it by selector or by any of its addresses of the family being in their blocks (the
 * compiler's "named-out" set, which its rule matches with no other address test).
 */
function namedPortPod(peers: PeersDef | null, fromPeers: boolean, c: Connection, namespaces: NamespaceLabels): ReadPod | null {
  if (c.direction === "ingress") return fromPeers ? c.pod : null;
  const to = c.peerPod;
  if (!to || !c.peer) return null;
  return peers === null || peersSelect(peers, to, namespaces) || inBlocks(peers, to, c.peer.family) ? to : null;
}

/** Is the peer's address in the rule's peers set: in its blocks, or a pod its selectors take? */
function peerIn(peers: PeersDef, c: Connection, namespaces: NamespaceLabels): boolean {
  if (!c.peer) return false;
  if (inSorted(peers.blocks[c.peer.family], c.peer.interval[0])) return true;
  return c.peerPod !== null && peersSelect(peers, c.peerPod, namespaces);
}

const inBlocks = (peers: PeersDef, pod: ReadPod, family: Family): boolean =>
  pod.addrs.some((a) => a.family === family && inSorted(peers.blocks[family], a.interval[0]));
