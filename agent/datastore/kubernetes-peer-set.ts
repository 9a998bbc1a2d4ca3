import { parseCidrOrNull } from "../../shared/net/cidr.js";
import type { NodeLease, UnreadableRecord } from "../types.js";
import { leaseExpiry, leaseLive, leaseName, type LeaseView } from "./kubernetes-lease-view.js";
import { ANNOTATIONS, backendOf, ignoredSubnets, leasedSubnetsOf, type NodeView } from "./kubernetes-node-view.js";

/**
 * The peer set every watcher of the `kubernetes` datastore computes from Nodes and Leases, and
 * the objects it cannot read, as pure functions. Peers are the Nodes that carry twill's
 * annotations and a subnet: a leased one only while its Leases are live and name it.
 */

/**
 * The peer set: every Node that published twill's annotations and has a subnet. A leased
 * node keeps only the subnets whose Leases are live and name it, so a lapsed, deleted or
 * taken-over Lease drops the subnet (and a node left without one) from every view.
 */
export function publishedLeases(
  nodes: Iterable<NodeView>,
  leases: Iterable<LeaseView>,
  now: number,
  lastGood = new Map<string, NodeLease>(),
): NodeLease[] {
  const live = new Map<string, LeaseView>();
  const unreadableNames = new Set<string>();
  for (const l of leases) {
    if (l.managed && l.unreadable) unreadableNames.add(l.name);
    else if (l.managed && l.subnet && leaseLive(l, now)) live.set(l.subnet, l);
  }
  const result: NodeLease[] = [];
  const seen = new Set<string>();
  for (const node of nodes) {
    const publicIP = node.annotations[ANNOTATIONS.publicIP];
    const decoded = backendOf(node);
    if (node.name && publicIP) seen.add(node.name);
    if (node.name && publicIP && decoded && !decoded.ok) {
      // Published once, unreadable now: the peer keeps its last good view.
      const last = lastGood.get(node.name);
      if (last) result.push(last);
      continue;
    }
    if (!node.name || !publicIP || !decoded?.ok) continue;
    const lease: NodeLease = { nodeName: node.name, subnets: [], publicIP, backend: decoded.backend };
    if (node.podCIDRs.length > 0) {
      // kube-controller-manager allocated them: the authority. A twill.dev/subnets annotation
      // beside them (anyone who may patch Nodes can write one) is not a claim (unreadableObjects).
      lease.subnets = node.podCIDRs;
      if (node.createdAt !== undefined) lease.acquiredAt = node.createdAt;
    } else if (node.annotations[ANNOTATIONS.subnets] !== undefined) {
      const listed = leasedSubnetsOf(node);
      const held = listed.map((s) => live.get(s)).filter((l): l is LeaseView => l !== undefined && l.holder === node.name);
      // A Lease that cannot be read cannot disprove the node's claim: it keeps the subnet.
      const unproven = listed.filter((s) => !live.has(s) && parseCidrOrNull(s) && unreadableNames.has(leaseName(s)));
      lease.subnets = [...held.map((l) => l.subnet!), ...unproven];
      if (held.length > 0) {
        lease.expiresAt = Math.min(...held.map(leaseExpiry));
        const acquired = held.map((l) => l.acquireTime).filter((t): t is number => t !== undefined);
        if (acquired.length > 0) lease.acquiredAt = Math.min(...acquired);
      }
    }
    if (lease.subnets.length > 0) {
      // The last object while nothing changed: the agent remembers leases by identity.
      const last = lastGood.get(node.name);
      const out = last !== undefined && sameLease(last, lease) ? last : lease;
      result.push(out);
      lastGood.set(node.name, out);
    }
  }
  for (const name of [...lastGood.keys()]) if (!seen.has(name)) lastGood.delete(name);
  return result;
}

/** Field by field; the backend by identity, as backendOf hands out one object per Node view. */
function sameLease(a: NodeLease, b: NodeLease): boolean {
  return (
    a.nodeName === b.nodeName &&
    a.publicIP === b.publicIP &&
    a.backend === b.backend &&
    a.expiresAt === b.expiresAt &&
    a.acquiredAt === b.acquiredAt &&
    a.subnets.length === b.subnets.length &&
    a.subnets.every((s, i) => s === b.subnets[i])
  );
}

/**
 * The twill objects that cannot be read or are refused: managed Leases that do not decode,
 * Nodes whose backend data does not, and Nodes whose twill.dev/subnets annotation names other
 * subnets than their spec.podCIDRs (ignored: the podCIDRs are the node's subnets).
 */
export function unreadableObjects(nodes: Iterable<NodeView>, leases: Iterable<LeaseView>, namespace: string): UnreadableRecord[] {
  const out: UnreadableRecord[] = [];
  for (const l of leases) {
    if (l.managed && l.unreadable) out.push({ kind: "claim", key: `Lease ${namespace}/${l.name}`, reason: l.unreadable });
  }
  for (const n of nodes) {
    const reasons: string[] = [];
    const decoded = backendOf(n);
    if (n.annotations[ANNOTATIONS.publicIP] && decoded && !decoded.ok) reasons.push(decoded.reason);
    const ignored = ignoredSubnets(n);
    if (ignored) reasons.push(ignored);
    if (reasons.length > 0) out.push({ kind: "node", key: `Node ${n.name}`, reason: reasons.join("; ") });
  }
  return out;
}

