import { KernelError, type BatchLine, type IpRoute } from "./iproute.js";

/**
 * The VXLAN forwarding database: one static entry per peer on the VTEP, the peer's VTEP MAC ->
 * the peer's underlay IP, so the device knows where to send the encapsulated frame. The VTEP
 * runs with `nolearning`: these entries are the whole truth. The peer's MAC comes from its
 * lease (agent/backend/vxlan.ts decides the entry; agent/backend/datapath.ts applies it).
 */

export interface FdbSpec {
  mac: string;
  /** The peer's underlay address: the outer destination. */
  dst: string;
  dev: string;
}

interface FdbJson {
  mac: string;
  dst?: string;
  state?: string;
  flags?: string[];
}

/** Unicast FDB entries with a remote destination on the VXLAN device `dev`; none when the device is missing. */
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

// `replace` on an FDB entry with the same MAC moves it to the new destination in place.
export const fdbReplaceLine = (f: FdbSpec): BatchLine => [
  "fdb", "replace", f.mac, "dev", f.dev, "dst", f.dst, "self", "permanent",
];
export const fdbDelLine = (f: FdbSpec): BatchLine => ["fdb", "del", f.mac, "dev", f.dev, "dst", f.dst, "self"];
