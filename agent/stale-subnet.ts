import { closeSync, constants, openSync, readSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LinkAddresses } from "../shared/kernel/types.js";
import { contains, formatAddress, parseCidr, parseIp, type Cidr } from "../shared/net/cidr.js";

/**
 * What a node keeps of a subnet it no longer holds (its lease was lost and it got another):
 * the bridge's gateway address, which would shadow the route to the subnet's new owner
 * ("Nexthop has invalid gateway"), and pods whose addresses are in it, which cannot be moved
 * and need a restart (flannel#520 leaves both in place). Decided on plain data; the one reader
 * of the IPAM store is below.
 */

/** An address inside a cluster CIDR on a node interface, outside every subnet the node holds. */
export interface StaleAddress {
  dev: string;
  /** `10.244.3.1/24` */
  address: string;
}

/** A pod attachment whose reservation lies in a subnet this node no longer holds. */
export interface StalePod {
  network: string;
  ip: string;
  containerId: string;
}

const inAny = (cidrs: readonly Cidr[], ipText: string): boolean => {
  const ip = parseIp(ipText);
  return cidrs.some((c) => contains(c, ip));
};

/**
 * Addresses in the cluster's range but outside the node's subnets, on links other than `skip`
 * (the VTEP, whose addresses are managed with it, and the underlay, never touched).
 */
export function staleAddresses(
  links: readonly LinkAddresses[],
  clusterCIDRs: readonly string[],
  nodeSubnets: readonly string[],
  skip: readonly (string | undefined)[] = [],
): StaleAddress[] {
  const cluster = clusterCIDRs.map(parseCidr);
  const own = nodeSubnets.map(parseCidr);
  const out: StaleAddress[] = [];
  for (const link of links) {
    if (skip.includes(link.name)) continue;
    for (const a of link.addresses) {
      if (a.scope === "link") continue;
      if (inAny(cluster, a.ip) && !inAny(own, a.ip)) {
        out.push({ dev: link.name, address: formatAddress(parseCidr(`${a.ip}/${a.prefixLength}`)) });
      }
    }
  }
  return out;
}

/** Which reservation file names are addresses outside the node's subnets (inside the cluster's). */
export function staleReservations(names: readonly string[], clusterCIDRs: readonly string[], nodeSubnets: readonly string[]): string[] {
  const cluster = clusterCIDRs.map(parseCidr);
  const own = nodeSubnets.map(parseCidr);
  return names.filter((name) => {
    try {
      return inAny(cluster, name) && !inAny(own, name);
    } catch {
      return false; // not an address: last_reserved_ip.0, lock, .twill
    }
  });
}

/**
 * Reservations outside the node's subnets in the IPAM store (`<dataDir>/<network>`, host-local's
 * layout) and in every other network's store of its data dir. Files are read one at a time,
 * first bytes only, never through a symlink or from anything but a regular file; an unreadable
 * one is reported with an empty container ID.
 */
export function findStalePods(ipamStore: string, clusterCIDRs: readonly string[], nodeSubnets: readonly string[]): StalePod[] {
  const dataDir = dirname(ipamStore);
  const out: StalePod[] = [];
  for (const network of listDir(dataDir)) {
    const dir = join(dataDir, network);
    for (const ip of staleReservations(listDir(dir), clusterCIDRs, nodeSubnets)) {
      out.push({ network, ip, containerId: firstLine(join(dir, ip)) });
    }
  }
  return out;
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function firstLine(path: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const buf = Buffer.alloc(512);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString("utf8").split(/\r?\n/)[0]!.trim();
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
