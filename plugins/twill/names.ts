import { parseCidr } from "../../shared/net/cidr.js";

/**
 * Names and MACs twill derives instead of choosing at random, so DEL and CHECK find the node end
 * of a pod's veth from the container ID and interface name alone (no prevResult needed), and ADD
 * never has to read a MAC back from the kernel.
 */

/**
 * 8 bytes from two 32-bit FNV-1a lanes (different primes) over the UTF-16 code units, each
 * finalized with MurmurHash3's fmix32 so the high bits, which names use, depend on every
 * character. Not for secrets: names only need to be stable and spread. Plain 32-bit integer
 * math on purpose: in a fresh Bun process node:crypto costs ~6 ms to load, BigInt arithmetic
 * ~0.2 ms a call and the first Buffer ~0.8 ms.
 */
export function digest(seed: string): number[] {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < seed.length; i++) {
    const x = seed.charCodeAt(i);
    a = Math.imul(a ^ x, 0x01000193);
    b = Math.imul(b ^ x, 0x5bd1e995);
  }
  const hi = fmix32(a);
  const lo = fmix32(b ^ a);
  return [hi >>> 24, (hi >>> 16) & 255, (hi >>> 8) & 255, hi & 255, lo >>> 24, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255];
}

const hex = (bytes: readonly number[]): string => bytes.map((x) => x.toString(16).padStart(2, "0")).join("");

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** "veth" + 11 hex digits: 15 characters, the longest name Linux allows. */
export const hostVethName = (containerId: string, ifname: string): string =>
  `veth${hex(digest(`${containerId}/${ifname}`)).slice(0, 11)}`;

/** A locally administered unicast MAC that depends only on `seed`. */
export function seededMac(seed: string): string {
  const h = digest(seed).slice(0, 6);
  h[0] = (h[0]! & 0xfc) | 0x02;
  return formatMac(h);
}

export const bridgeMac = (bridge: string): string => seededMac(`twill-bridge/${bridge}`);

export const hostVethMac = (containerId: string, ifname: string): string => seededMac(`twill-host/${containerId}/${ifname}`);

/**
 * The pod interface's MAC when nobody chose one: `0a:58:` + the IPv4 address. A reused IP then
 * comes back with the same MAC, so neighbors' ARP entries for it stay right instead of sending
 * to a dead MAC until they expire (plugins#858). Without IPv4, a MAC seeded by the attachment.
 */
export function podMac(addresses: readonly string[], containerId: string, ifname: string): string {
  for (const a of addresses) {
    const c = parseCidr(a);
    if (c.family !== 4) continue;
    const v = Number(c.ip);
    return formatMac([0x0a, 0x58, (v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]);
  }
  return seededMac(`twill-pod/${containerId}/${ifname}`);
}

const formatMac = (b: readonly number[]): string => b.map((x) => x.toString(16).padStart(2, "0")).join(":");
