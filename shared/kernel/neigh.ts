import { KernelError, type BatchLine, type IpRoute } from "./iproute.js";

/**
 * The two static tables behind a VXLAN peer: a permanent neighbor (peer VTEP IP -> VTEP MAC)
 * on the VTEP device, so the kernel never ARPs across the overlay, and an FDB entry (VTEP MAC
 * -> the peer's underlay IP), so the device knows where to send the encapsulated frame. The
 * device runs with `nolearning`: these entries are the whole truth.
 */

export interface NeighSpec {
  ip: string;
  mac: string;
  dev: string;
}

export interface FdbSpec {
  mac: string;
  /** The peer's underlay address: the outer destination. */
  dst: string;
  dev: string;
}

interface NeighJson {
  dst: string;
  lladdr?: string;
  state?: string[];
}

interface FdbJson {
  mac: string;
  dst?: string;
  state?: string;
  flags?: string[];
}

/** Permanent neighbors on `dev` (both families); none when the device is missing. */
export async function listPermanentNeighbors(ip: IpRoute, dev: string): Promise<NeighSpec[]> {
  let entries: NeighJson[];
  try {
    entries = await ip.json<NeighJson[]>(["neigh", "show", "dev", dev, "nud", "permanent"], `list neighbors of "${dev}"`);
  } catch (err) {
    if (err instanceof KernelError && err.notFound) return [];
    throw err;
  }
  return entries.filter((n) => n.lladdr).map((n) => ({ ip: n.dst, mac: n.lladdr!.toLowerCase(), dev }));
}

/** Unicast FDB entries with a remote destination on the VXLAN device `dev`. */
export async function listFdb(ip: IpRoute, dev: string): Promise<FdbSpec[]> {
  let out: string;
  try {
    out = await ip.bridge(["-json", "fdb", "show", "dev", dev], `list FDB of "${dev}"`);
  } catch (err) {
    if (err instanceof KernelError && err.notFound) return [];
    throw err;
  }
  const entries = (out.trim() ? JSON.parse(out) : []) as FdbJson[];
  return entries
    .filter((e) => e.dst && e.mac !== "00:00:00:00:00:00")
    .map((e) => ({ mac: e.mac.toLowerCase(), dst: e.dst!, dev }));
}

export const neighReplaceLine = (n: NeighSpec): BatchLine => [
  "neigh", "replace", n.ip, "lladdr", n.mac, "dev", n.dev, "nud", "permanent",
];
export const neighDelLine = (n: NeighSpec): BatchLine => ["neigh", "del", n.ip, "dev", n.dev];

// `replace` on an FDB entry with the same MAC moves it to the new destination in place.
export const fdbReplaceLine = (f: FdbSpec): BatchLine => [
  "fdb", "replace", f.mac, "dev", f.dev, "dst", f.dst, "self", "permanent",
];
export const fdbDelLine = (f: FdbSpec): BatchLine => ["fdb", "del", f.mac, "dev", f.dev, "dst", f.dst, "self"];
