import { formatCidr, parseCidr, parseIp } from "../net/cidr.js";
import type { NodeKernel } from "./node-kernel.js";
import type { Route } from "./types.js";

/**
 * twill's routes to peer pod subnets. Every one carries twill's own route protocol number, so
 * the agent can list exactly its own routes, prune those no peer needs (also after peers left
 * while it was down, flannel#2554) and never touch anyone else's.
 */

/**
 * The route protocol twill installs with (`ip route ... proto 150`). 150 is unassigned in
 * iproute2's rt_protos (0-99 and 186-192 are taken) and used by no common routing daemon.
 */
export const TWILL_ROUTE_PROTO = 150;

export interface RouteSpec {
  /** The destination prefix, host bits clear (`10.244.3.0/24`). */
  dst: string;
  via: string;
  dev: string;
  /** The next hop is reachable on `dev` without a connected prefix (the VXLAN VTEP). */
  onlink: boolean;
}

/** Same route: the key (dst) and every attribute compare equal, addresses by value. */
export const sameRoute = (a: RouteSpec, b: RouteSpec): boolean =>
  a.dst === b.dst && a.dev === b.dev && a.onlink === b.onlink && sameIp(a.via, b.via);

/** A route's destination as a key: always with its length (a host route read back has none), canonical. */
export function normalizeDst(dst: string): string {
  if (dst.includes("/")) return formatCidr(parseCidr(dst));
  const ip = parseIp(dst);
  return formatCidr(parseCidr(`${dst}/${ip.family === 4 ? 32 : 128}`));
}

/** A default route: a destination of length 0 (Route.dst always carries its length). */
export const isDefaultRoute = (r: Pick<Route, "dst">): boolean => r.dst === "0.0.0.0/0" || r.dst === "::/0";

export function sameIp(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = parseIp(a);
    const y = parseIp(b);
    return x.family === y.family && x.value === y.value;
  } catch {
    return false;
  }
}

/**
 * The prefixes directly connected on `dev` (from its addresses): a next hop inside one of
 * them is reachable without a router, which is what host-gw needs.
 */
export async function connectedPrefixes(kernel: Pick<NodeKernel, "addrs">, dev: string): Promise<string[]> {
  const [link] = await kernel.addrs(dev);
  return (link?.addresses ?? [])
    .filter((a) => a.scope !== "host" && a.prefixLength < (a.family === 4 ? 32 : 128))
    .filter((a) => !(a.family === 6 && a.scope === "link"))
    .map((a) => formatCidr(parseCidr(`${a.ip}/${a.prefixLength}`)));
}
