import { KernelError, type BatchLine, type IpRoute } from "./iproute.js";

/**
 * The permanent neighbors behind VXLAN peers: peer VTEP IP -> VTEP MAC on the VTEP device, so
 * the kernel never ARPs across the overlay. The FDB entry that goes with each is in fdb.ts.
 */

export interface NeighSpec {
  ip: string;
  mac: string;
  dev: string;
}

interface NeighJson {
  dst: string;
  lladdr?: string;
  state?: string[];
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

export const neighReplaceLine = (n: NeighSpec): BatchLine => [
  "neigh", "replace", n.ip, "lladdr", n.mac, "dev", n.dev, "nud", "permanent",
];
export const neighDelLine = (n: NeighSpec): BatchLine => ["neigh", "del", n.ip, "dev", n.dev];
