import { formatIp, parseIp } from "../../shared/net/cidr.js";
import type { FdbSpec } from "../../shared/kernel/fdb.js";
import type { NeighSpec } from "../../shared/kernel/neigh.js";
import type { DatapathChange } from "../../shared/kernel/node-kernel.js";
import { sameIp, sameRoute, type RouteSpec } from "../../shared/kernel/routes.js";

/**
 * The shared reconcile of every backend: the kernel state twill wants for the current peer set
 * and the state twill owns now (routes with twill's protocol, permanent neighbors and FDB
 * entries on the VTEP) go in, the list of changes comes out. Pure, so it is tested on plain
 * data; applying the changes is separate (datapath.ts).
 */

export interface DatapathState {
  routes: RouteSpec[];
  neighbors: NeighSpec[];
  fdb: FdbSpec[];
}

export type Change = DatapathChange;

export const emptyState = (): DatapathState => ({ routes: [], neighbors: [], fdb: [] });

const routeKey = (r: RouteSpec) => r.dst;
const neighKey = (n: NeighSpec) => `${n.dev} ${canonicalIp(n.ip)}`;
const fdbKey = (f: FdbSpec) => `${f.dev} ${f.mac.toLowerCase()}`;

const sameNeigh = (a: NeighSpec, b: NeighSpec) => a.mac.toLowerCase() === b.mac.toLowerCase();
const sameFdb = (a: FdbSpec, b: FdbSpec) => sameIp(a.dst, b.dst);

/**
 * What to change so `actual` becomes `desired`: an entry missing or different is replaced, an
 * entry twill owns that nothing desired has the key of is deleted. Entries are keyed as the
 * kernel keys them: a route by destination, a neighbor by device and IP, an FDB entry by
 * device and MAC.
 */
export function planDatapath(desired: DatapathState, actual: DatapathState): Change[] {
  return [
    ...diff(desired.fdb, actual.fdb, fdbKey, sameFdb).map((c) => ({ ...c, kind: "fdb" as const })),
    ...diff(desired.neighbors, actual.neighbors, neighKey, sameNeigh).map((c) => ({ ...c, kind: "neigh" as const })),
    ...diff(desired.routes, actual.routes, routeKey, sameRoute).map((c) => ({ ...c, kind: "route" as const })),
  ] as Change[];
}

function diff<T>(desired: T[], actual: T[], key: (t: T) => string, same: (a: T, b: T) => boolean) {
  const want = new Map(desired.map((d) => [key(d), d]));
  const have = new Map<string, T[]>();
  for (const a of actual) {
    const k = key(a);
    const list = have.get(k);
    if (list) list.push(a);
    else have.set(k, [a]);
  }
  const out: { op: "replace" | "del"; entry: T }[] = [];
  for (const [k, entries] of have) {
    const w = want.get(k);
    if (!w) {
      for (const e of entries) out.push({ op: "del", entry: e });
      continue;
    }
    // One wrong entry is replaced in place (no gap in forwarding); extra entries under the
    // same key (two FDB destinations for one MAC) are deleted.
    const keep = entries.find((e) => same(w, e)) ?? entries[0];
    for (const e of entries) if (e !== keep) out.push({ op: "del", entry: e });
  }
  for (const [k, w] of want) {
    if (!(have.get(k) ?? []).some((e) => same(w, e))) out.push({ op: "replace", entry: w });
  }
  return out;
}

/** Canonical address text, remembered: a resync at thousands of peers keys every neighbor. */
const canonicalIps = new Map<string, string>();
function canonicalIp(text: string): string {
  let c = canonicalIps.get(text);
  if (c === undefined) {
    const ip = parseIp(text);
    c = formatIp(ip.family, ip.value);
    if (canonicalIps.size >= 100_000) canonicalIps.clear();
    canonicalIps.set(text, c);
  }
  return c;
}
