import { contains, familyOfText, formatCidr, formatIp, overlaps, parseCidr, parseIp, type Family } from "../../shared/net/cidr.js";
import type { AddrInfo } from "../../shared/kernel/iproute.js";
import type { LocalNode, NodeLease, PeerError } from "../types.js";
import { emptyState, type DatapathState } from "./plan.js";

/**
 * How traffic reaches one peer's pod subnets, decided on plain data. Each backend supplies
 * only this: host-gw a route via the peer's underlay address, vxlan a route via the peer's VTEP
 * plus the neighbor and FDB entries behind it, auto whichever of the two can work.
 */

export interface NodeView {
  local: LocalNode;
  lease: NodeLease;
  /** Prefixes directly connected on the underlay device (`192.168.1.0/24`). */
  underlayPrefixes: string[];
  /** The VTEP, when this node has one. */
  vtep: { dev: string; vni: number; port: number } | null;
}

export type Carrier = "host-gw" | "vxlan";

export interface PeerPath {
  carrier: Carrier | null;
  entries: DatapathState;
  /** Why some or all of the peer's subnets cannot be reached this way. */
  errors: string[];
}

export type PathFinder = (peer: NodeLease, view: NodeView) => PeerPath;

/** The connected prefix of the underlay that holds `ip`, or null when it is not on-link. */
export function onLinkPrefix(ip: string, prefixes: readonly string[]): string | null {
  const addr = parseIp(ip);
  return prefixes.find((p) => contains(parseCidr(p), addr)) ?? null;
}

export const hostGwPath: PathFinder = (peer, view) => {
  const path: PeerPath = { carrier: "host-gw", entries: emptyState(), errors: [] };
  const dev = view.local.underlayDev;
  if (!onLinkPrefix(peer.publicIP, view.underlayPrefixes)) {
    path.errors.push(notAdjacent(peer.nodeName, peer.publicIP, view));
    return { ...path, carrier: null };
  }
  for (const subnet of peer.subnets) {
    const family = parseCidr(subnet).family;
    const via = nextHop(peer, family);
    if (!via) {
      path.errors.push(
        `peer ${peer.nodeName} subnet ${subnet} is IPv${family} but the peer has no IPv${family} underlay address: ` +
          "host-gw routes a pod family only via a next hop of the same family; use vxlan or auto",
      );
      continue;
    }
    // A link-local next hop has no prefix to check; the peer's public IP above showed it is on this link.
    if (!isLinkLocal(via) && !onLinkPrefix(via, view.underlayPrefixes)) {
      path.errors.push(notAdjacent(peer.nodeName, via, view));
      continue;
    }
    path.entries.routes.push({ dst: canonical(subnet), via, dev, onlink: false });
  }
  return path;
};

const notAdjacent = (peer: string, ip: string, view: NodeView): string => {
  const where = view.underlayPrefixes.length ? view.underlayPrefixes.join(", ") : "no connected prefix";
  return `peer ${peer} ${ip} is not on the same L2 segment as ${view.local.underlayDev} (${where}): ` +
    "host-gw needs L2-adjacent nodes; use vxlan or auto";
};

/** A peer's host-gw next hop for a pod family: its public IP, or the underlay address of that family it publishes. */
export function nextHop(peer: NodeLease, family: Family): string | null {
  if (familyOfText(peer.publicIP) === family) return peer.publicIP;
  return peer.backend.underlayIPs?.find((a) => familyOfText(a) === family) ?? null;
}

const LINK_LOCAL6 = parseCidr("fe80::/10");
export const isLinkLocal = (ip: string): boolean => {
  const a = parseIp(ip);
  return a.family === 6 && contains(LINK_LOCAL6, a);
};

/**
 * The underlay addresses a node publishes, one per family, `publicIP` first: for the other
 * family the device's first global address, or for IPv6 its link-local one when it has no
 * global one (a dual-stack node whose IPv6 underlay is link-local only still gets host-gw
 * routes for its IPv6 pods).
 */
export function underlayAddresses(publicIP: string, addrs: readonly AddrInfo[]): string[] {
  const out = [publicIP];
  const other = familyOfText(publicIP) === 4 ? "inet6" : "inet";
  const ofOther = addrs.filter((a) => a.family === other && a.scope !== "host");
  const global = ofOther.find((a) => (a.scope ?? "global") === "global");
  const linkLocal = other === "inet6" ? ofOther.find((a) => a.scope === "link") : undefined;
  const pick = global ?? linkLocal;
  if (pick) out.push(pick.local);
  return out;
}

export const vxlanPath: PathFinder = (peer, view) => {
  const path: PeerPath = { carrier: "vxlan", entries: emptyState(), errors: [] };
  const fail = (why: string): PeerPath => ({ ...path, carrier: null, errors: [`peer ${peer.nodeName}: ${why}`] });
  const vtep = view.vtep;
  if (!vtep) return fail("this node has no VXLAN device");
  const mac = peer.backend.vtepMAC?.toLowerCase();
  if (!mac) {
    // A peer on host-gw (the cluster switching backend, node by node) routes to us directly;
    // on the same segment we answer in kind, so neither side black-holes while they differ.
    if (peer.backend.type === "host-gw") {
      const direct = hostGwPath(peer, view);
      if (direct.errors.length === 0) return direct;
    }
    return fail(`publishes no VTEP MAC (its backend is ${peer.backend.type}); it cannot be reached over VXLAN yet`);
  }
  if (peer.backend.vni !== undefined && peer.backend.vni !== vtep.vni) {
    return fail(`uses VNI ${peer.backend.vni}, this node ${vtep.vni}`);
  }
  if (peer.backend.port !== undefined && peer.backend.port !== vtep.port) {
    return fail(`uses VXLAN port ${peer.backend.port}, this node ${vtep.port}`);
  }
  if (familyOfText(peer.publicIP) !== familyOfText(view.local.publicIP)) {
    return fail(`underlay address ${peer.publicIP} is not of the family of this node's ${view.local.publicIP}`);
  }
  path.entries.fdb.push({ mac, dst: peer.publicIP, dev: vtep.dev });
  for (const subnet of peer.subnets) {
    const c = parseCidr(subnet);
    const vtepIp = formatIp(c.family, c.network);
    path.entries.neighbors.push({ ip: vtepIp, mac, dev: vtep.dev });
    path.entries.routes.push({ dst: canonical(subnet), via: vtepIp, dev: vtep.dev, onlink: true });
  }
  return path;
};

/** host-gw where it works (same segment, a next hop for every pod family), VXLAN for every other peer. */
export const autoPath: PathFinder = (peer, view) => {
  const direct = hostGwPath(peer, view);
  return direct.errors.length === 0 ? direct : vxlanPath(peer, view);
};

export interface DesiredDatapath {
  state: DatapathState;
  errors: PeerError[];
  carriers: Record<string, Carrier | null>;
}

/** The whole desired state for a peer set (this node and lapsed leases left out). */
export function desiredDatapath(peers: readonly NodeLease[], view: NodeView, find: PathFinder, now: number): DesiredDatapath {
  const out: DesiredDatapath = { state: emptyState(), errors: [], carriers: {} };
  const seen = new Set<string>();
  for (const peer of [...peers].sort((a, b) => a.nodeName.localeCompare(b.nodeName))) {
    if (peer.nodeName === view.lease.nodeName || seen.has(peer.nodeName)) continue;
    if (peer.expiresAt !== undefined && peer.expiresAt <= now) continue;
    seen.add(peer.nodeName);
    // A peer listing a subnet this node holds: one of the two leases is stale (this node's own
    // loss not yet noticed). Routing it would shadow local pods; wait for the leases to settle.
    const clash = peer.subnets.find((sub) => view.lease.subnets.some((own) => overlaps(parseCidr(own), parseCidr(sub))));
    if (clash) {
      out.carriers[peer.nodeName] = null;
      out.errors.push({ peer: peer.nodeName, message: `peer ${peer.nodeName} lists ${clash}, which overlaps this node's own subnet: not routed until one lease gives way` });
      continue;
    }
    const path = find(peer, view);
    out.carriers[peer.nodeName] = path.carrier;
    out.state.routes.push(...path.entries.routes);
    out.state.neighbors.push(...path.entries.neighbors);
    out.state.fdb.push(...path.entries.fdb);
    for (const message of path.errors) out.errors.push({ peer: peer.nodeName, message });
  }
  return out;
}

/** The MTU overhead of each carrier for an underlay family (auto takes VXLAN's: the worst case). */
export function overheadOf(type: "vxlan" | "host-gw" | "auto", family: Family): number {
  if (type === "host-gw") return 0;
  // Outer IPv4 20 (IPv6 40) + UDP 8 + VXLAN 8 + inner Ethernet 14.
  return family === 4 ? 50 : 70;
}

const canonical = (subnet: string): string => formatCidr(parseCidr(subnet));
