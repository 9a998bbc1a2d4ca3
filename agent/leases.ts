import { oncePer } from "../shared/memo.js";
import type { BackendData, NodeLease } from "./types.js";

/**
 * Lease sets as plain data: decoding what a datastore holds, and telling what changed between
 * two views of the cluster. The agent reconciles on a change of what peers publish, not on a
 * renewal that only moves an expiry forward.
 */

export interface LeaseDiff {
  added: NodeLease[];
  removed: NodeLease[];
  /** Same node, different subnets, address or backend data (a new VTEP MAC after a reboot). */
  changed: NodeLease[];
}

export function diffLeases(before: readonly NodeLease[], after: readonly NodeLease[]): LeaseDiff {
  const old = new Map(before.map((l) => [l.nodeName, l]));
  const now = new Map(after.map((l) => [l.nodeName, l]));
  return {
    added: after.filter((l) => !old.has(l.nodeName)),
    removed: before.filter((l) => !now.has(l.nodeName)),
    changed: after.filter((l) => {
      const o = old.get(l.nodeName);
      return o !== undefined && leaseKey(o) !== leaseKey(l);
    }),
  };
}

export const isEmptyDiff = (d: LeaseDiff): boolean =>
  d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0;

/** Every lease but the node's own, ordered by name. */
export const peersOf = (leases: readonly NodeLease[], nodeName: string): NodeLease[] =>
  sortLeases(leases.filter((l) => l.nodeName !== nodeName));

export const sortLeases = (leases: readonly NodeLease[]): NodeLease[] =>
  [...leases].sort((a, b) => (a.nodeName < b.nodeName ? -1 : a.nodeName > b.nodeName ? 1 : 0));

/** What peers act on: everything but the expiry and the claim time. */
/**
 * When a node's claim began, for `twilld status`'s AGE: kept when the node acquires the same
 * subnets again (an agent restart), restarted when they change or there was no record.
 */
export function claimAge(prev: NodeLease | null | undefined, subnets: readonly string[], now: number): { acquiredAt: number; kept: boolean } {
  const kept = prev !== null && prev !== undefined && prev.subnets.join() === subnets.join();
  return { acquiredAt: kept ? (prev.acquiredAt ?? now) : now, kept };
}

/**
 * A lease's identity for change detection, remembered per object: a datastore hands out the
 * same object while a record is unchanged, so a peer event at 5000 peers computes one key, not
 * 5000. Leases are never changed once handed out.
 */
export const leaseKey = oncePer((l: NodeLease): string => JSON.stringify([l.nodeName, l.subnets, l.publicIP, canonicalBackend(l.backend)]));

/** Two views of the cluster hold the same leases (order and expiry ignored). */
export function sameLeaseSet(a: readonly NodeLease[], b: readonly NodeLease[]): boolean {
  if (a.length !== b.length) return false;
  const byName = new Map(a.map((l) => [l.nodeName, l]));
  return b.every((l) => {
    const o = byName.get(l.nodeName);
    return o !== undefined && (o === l || leaseKey(o) === leaseKey(l));
  });
}

/** The lease without its expiry (a copy would go stale), the same object for the same lease. */
export const withoutExpiry = oncePer((l: NodeLease): NodeLease => {
  const { expiresAt: _expiry, ...rest } = l;
  return rest;
});

/** A watch's filter: true when `leases` differ from the last set it passed. */
export function leaseSetFilter(): (leases: readonly NodeLease[]) => boolean {
  let last: readonly NodeLease[] | null = null;
  return (leases) => {
    if (last !== null && sameLeaseSet(last, leases)) return false;
    last = leases;
    return true;
  };
}

/**
 * Decodes a lease record read from a datastore; null when it is not one (a torn or foreign
 * file), so one bad record is skipped instead of breaking every peer's view.
 */
export function decodeLease(raw: unknown): NodeLease | null {
  if (typeof raw !== "object" || raw === null) return null;
  const r = raw as Record<string, unknown>;
  if (typeof r.nodeName !== "string" || r.nodeName === "") return null;
  if (!Array.isArray(r.subnets) || !r.subnets.every((s) => typeof s === "string")) return null;
  if (typeof r.publicIP !== "string") return null;
  const b = r.backend;
  if (typeof b !== "object" || b === null || typeof (b as BackendData).type !== "string") return null;
  const lease: NodeLease = {
    nodeName: r.nodeName,
    subnets: r.subnets as string[],
    publicIP: r.publicIP,
    backend: b as BackendData,
  };
  if (typeof r.expiresAt === "number") lease.expiresAt = r.expiresAt;
  if (typeof r.acquiredAt === "number") lease.acquiredAt = r.acquiredAt;
  return lease;
}

function canonicalBackend(b: BackendData): unknown[] {
  return Object.keys(b)
    .sort()
    .map((k) => [k, (b as unknown as Record<string, unknown>)[k]]);
}

/** A Kubernetes node name (a DNS subdomain). */
export const isNodeName = (name: string): boolean => /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name);

/**
 * Node names become file names and key suffixes: the Kubernetes rules for a node name
 * (DNS subdomain) keep them safe for both.
 */
export function checkNodeName(name: string): string {
  if (!isNodeName(name)) {
    throw new Error(`node name ${JSON.stringify(name)} is not a valid DNS subdomain (lower-case letters, digits, "-", ".")`);
  }
  return name;
}
