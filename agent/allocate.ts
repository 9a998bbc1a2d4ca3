import { bits, covers, overlaps, parseCidr, type Cidr } from "../shared/net/cidr.js";
import type { NetworkConfig } from "./types.js";

/**
 * Picking a free node subnet, as pure functions on plain data; the datastores make the pick
 * stick with an atomic claim and pick again when they lose a race. A node starts looking at an
 * index derived from its name, so concurrent joiners spread over the pool instead of all
 * fighting for the first free subnet, and a node that lost its claim tends to get the same
 * subnet back when it is still free.
 */

/** The node subnets one family can hand out. */
export interface Pool {
  cluster: Cidr;
  subnetLen: number;
  /** Index range of usable subnets inside the cluster CIDR (SubnetMin..SubnetMax). */
  first: bigint;
  last: bigint;
}

export function poolsOf(network: NetworkConfig): Pool[] {
  return network.clusterCIDRs.map((text) => {
    const cluster = parseCidr(text);
    const subnetLen = network.subnetLen[cluster.family];
    if (subnetLen === undefined) throw new Error(`no subnet length for cluster CIDR ${text}`);
    let first = 0n;
    let last = (1n << BigInt(subnetLen - cluster.prefix)) - 1n;
    if (cluster.family === 4) {
      if (network.subnetMin) first = indexOf(cluster, subnetLen, parseCidr(network.subnetMin));
      if (network.subnetMax) last = indexOf(cluster, subnetLen, parseCidr(network.subnetMax));
    }
    return { cluster, subnetLen, first, last };
  });
}

/** True when `subnet` is one this pool hands out: right family and length, within bounds. */
export function inPool(pool: Pool, subnet: Cidr): boolean {
  if (subnet.prefix !== pool.subnetLen || !covers(pool.cluster, subnet)) return false;
  const i = indexOf(pool.cluster, pool.subnetLen, subnet);
  return i >= pool.first && i <= pool.last;
}

/**
 * The first free subnet at or after the node's start index, wrapping around; null when every
 * subnet of the pool overlaps a taken one. `taken` may hold anything (other families, other
 * lengths from an older config): whatever overlaps a candidate makes it unusable.
 */
export function pickSubnet(pool: Pool, taken: readonly Cidr[], nodeName: string): Cidr | null {
  const count = pool.last - pool.first + 1n;
  if (count <= 0n) return null;
  const start = pool.first + (nameHash(nodeName) % count);
  const busy = takenIntervals(pool, taken);
  const index = firstFree(busy, start, pool.last) ?? firstFree(busy, pool.first, start - 1n);
  return index === null ? null : subnetOf(pool, index);
}

export function subnetOf(pool: Pool, index: bigint): Cidr {
  const network = pool.cluster.network + (index << BigInt(bits(pool.cluster.family) - pool.subnetLen));
  return { family: pool.cluster.family, ip: network, network, prefix: pool.subnetLen };
}

/** FNV-1a (64 bit) of the node name: stable across restarts, processes and machines (why not digest(): shared/digest.ts). */
export function nameHash(name: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(name, "utf8")) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

function indexOf(cluster: Cidr, subnetLen: number, c: Cidr): bigint {
  return (c.network - cluster.network) >> BigInt(bits(cluster.family) - subnetLen);
}

/** Taken blocks as merged, sorted subnet-index intervals of this pool. */
function takenIntervals(pool: Pool, taken: readonly Cidr[]): [bigint, bigint][] {
  const hostBits = BigInt(bits(pool.cluster.family) - pool.subnetLen);
  const base = pool.cluster.network;
  const intervals = taken
    .filter((t) => overlaps(t, pool.cluster))
    .map((t): [bigint, bigint] => {
      const from = t.network > base ? t.network : base;
      const blockEnd = t.network + (1n << BigInt(bits(t.family) - t.prefix)) - 1n;
      return [(from - base) >> hostBits, (blockEnd - base) >> hostBits];
    })
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const [a, b] of intervals) {
    const top = merged.at(-1);
    if (top && a <= top[1] + 1n) top[1] = b > top[1] ? b : top[1];
    else merged.push([a, b]);
  }
  return merged;
}

function firstFree(busy: readonly [bigint, bigint][], from: bigint, to: bigint): bigint | null {
  let i = from;
  for (const [a, b] of busy) {
    if (i > to) return null;
    if (b < i) continue;
    if (a > i) return i;
    i = b + 1n;
  }
  return i <= to ? i : null;
}
