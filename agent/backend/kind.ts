import { contains, familyOfText, formatCidr, overlaps, parseCidr, parseIp, type Family } from "../../shared/net/cidr.js";
import type { NodeKernel } from "../../shared/kernel/node-kernel.js";
import type { Address } from "../../shared/kernel/types.js";
import type { Registry } from "prom-client";
import type { Logger } from "../../shared/log.js";
import type { Clock } from "../clock.js";
import type { BackendConfig, BackendData, LocalNode, NetworkConfig, NodeLease, PeerError } from "../types.js";
import { emptyState, type DatapathState } from "./plan.js";

/**
 * What every backend is made of, and the shared part of the per-peer decision. A backend
 * (host-gw.ts, vxlan.ts, auto.ts) supplies its MTU rule, its node device and how one peer is
 * reached, all on plain data; the shared datapath (datapath.ts) plans and applies the rest.
 */

export interface NodeView {
  local: LocalNode;
  lease: NodeLease;
  /** Prefixes directly connected on the underlay device (`192.168.1.0/24`). */
  underlayPrefixes: string[];
  /** The VTEP, when this node has one. */
  vtep: { dev: string; vni: number; port: number } | null;
}

/** How a peer's traffic leaves this node: a direct route on the underlay, or through the VTEP. */
export type PeerRoute = "host-gw" | "vxlan";

export interface PeerPath {
  /** How the peer is reached; null when it cannot be. */
  route: PeerRoute | null;
  entries: DatapathState;
  /** Why some or all of the peer's subnets cannot be reached this way. */
  errors: string[];
}

/** A backend's per-peer decision: pure, tested on plain data. */
export type PathFinder = (peer: NodeLease, view: NodeView) => PeerPath;

/**
 * What a backend that runs a daemon of its own gets (bgp's BIRD, wireguard's wireguard-go):
 * the node's kernel, the log, the metrics registry and the clock of its timers.
 */
export interface DaemonBackendDeps {
  kernel: NodeKernel;
  logger: Logger;
  registry?: Registry;
  clock?: Clock;
}

/** What a backend's node device hooks get. */
export interface DeviceContext {
  kernel: NodeKernel;
  logger: Logger;
  network: NetworkConfig;
  local: LocalNode;
}

/** One backend type: everything in which the backends differ. */
export interface BackendKind {
  readonly type: BackendConfig["type"];
  /** Bytes encapsulation takes from the underlay MTU (the pods' MTU is the underlay's less this). */
  overhead(underlayFamily: Family): number;
  /** How one peer's pod subnets are reached from this node. */
  reach: PathFinder;
  /** At start-up, before the lease: sets up (or removes) the node's device; returns what peers learn of it. */
  prepare(ctx: DeviceContext): Promise<Partial<BackendData>>;
  /**
   * Each full reconcile, with the lease's subnets: puts the node's device back in shape (also
   * after it was deleted under a running agent). Returns the device for the view and the changes made.
   */
  ensureDevice(ctx: DeviceContext, subnets: readonly string[]): Promise<{ vtep: NodeView["vtep"]; changes: number }>;
}

/** The connected prefix of the underlay that holds `ip`, or null when it is not on-link. */
export function onLinkPrefix(ip: string, prefixes: readonly string[]): string | null {
  const addr = parseIp(ip);
  return prefixes.find((p) => contains(parseCidr(p), addr)) ?? null;
}

/**
 * The underlay addresses a node publishes, one per family, `publicIP` first: for the other
 * family the device's first global address, or for IPv6 its link-local one when it has no
 * global one (a dual-stack node whose IPv6 underlay is link-local only still gets host-gw
 * routes for its IPv6 pods).
 */
export function underlayAddresses(publicIP: string, addrs: readonly Address[]): string[] {
  const out = [publicIP];
  const other = familyOfText(publicIP) === 4 ? 6 : 4;
  const ofOther = addrs.filter((a) => a.family === other && a.scope !== "host");
  const global = ofOther.find((a) => a.scope === "global");
  const linkLocal = other === 6 ? ofOther.find((a) => a.scope === "link") : undefined;
  const pick = global ?? linkLocal;
  if (pick) out.push(pick.ip);
  return out;
}

export interface DesiredDatapath {
  state: DatapathState;
  errors: PeerError[];
  /** Per peer looked at, how it is reached (null: not at all). */
  routes: Record<string, PeerRoute | null>;
}

/** The whole desired state for a peer set (this node and lapsed leases left out). */
export function desiredDatapath(peers: readonly NodeLease[], view: NodeView, find: PathFinder, now: number): DesiredDatapath {
  const out: DesiredDatapath = { state: emptyState(), errors: [], routes: {} };
  const seen = new Set<string>();
  for (const peer of [...peers].sort((a, b) => a.nodeName.localeCompare(b.nodeName))) {
    if (peer.nodeName === view.lease.nodeName || seen.has(peer.nodeName)) continue;
    if (peer.expiresAt !== undefined && peer.expiresAt <= now) continue;
    seen.add(peer.nodeName);
    let path: PeerPath;
    try {
      path = clashPath(peer, view) ?? find(peer, view);
    } catch (err) {
      // Admission keeps malformed records out; should one get through, it fails for itself alone.
      path = { route: null, entries: emptyState(), errors: [`peer ${peer.nodeName}: ${err instanceof Error ? err.message : String(err)}`] };
    }
    out.routes[peer.nodeName] = path.route;
    out.state.routes.push(...path.entries.routes);
    out.state.neighbors.push(...path.entries.neighbors);
    out.state.fdb.push(...path.entries.fdb);
    for (const message of path.errors) out.errors.push({ peer: peer.nodeName, message });
  }
  return out;
}

/**
 * A peer listing a subnet this node holds: one of the two leases is stale (this node's own loss
 * not yet noticed). Routing it would shadow local pods; wait for the leases to settle.
 */
function clashPath(peer: NodeLease, view: NodeView): PeerPath | null {
  const clash = peer.subnets.find((sub) => view.lease.subnets.some((own) => overlaps(parseCidr(own), parseCidr(sub))));
  if (!clash) return null;
  return {
    route: null,
    entries: emptyState(),
    errors: [`peer ${peer.nodeName} lists ${clash}, which overlaps this node's own subnet: not routed until one lease gives way`],
  };
}

/** A subnet as a route destination: host bits clear. */
export const canonical = (subnet: string): string => formatCidr(parseCidr(subnet));
