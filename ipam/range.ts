import { invalidConfig, unsupportedField } from "../shared/cni/errors.js";
import {
  AddressError, block, contains, formatCidr, formatIp, lastAddress, parseCidr, parseIp, type Cidr, type Family, type Ip,
} from "../shared/net/cidr.js";

/**
 * Address ranges as host-local defines them, on plain bigints: a subnet, the span handed out
 * (`rangeStart`..`rangeEnd`) and the gateway. A range set is the ranges one address is drawn
 * from, so a dual-stack pod has one IPv4 set and one IPv6 set.
 */

export interface Range {
  subnet: Cidr;
  start: bigint;
  end: bigint;
  gateway: bigint;
}

export type RangeSet = Range[];

export interface RawRange {
  subnet?: unknown;
  rangeStart?: unknown;
  rangeEnd?: unknown;
  gateway?: unknown;
}

/**
 * Blocks a pod address can never be in: the kernel refuses a multicast address on an
 * interface, and loopback or "this network" addresses are not routable. host-local hands
 * them out all the same and the main plugin fails later (224.0.0.2 from a 224.0.0.0/24).
 */
export const UNUSABLE: { cidr: Cidr; what: string }[] = [
  { cidr: block(4, 0n, 8), what: "\"this network\"" }, // 0.0.0.0/8
  { cidr: block(4, 0x7f000000n, 8), what: "loopback" }, // 127.0.0.0/8
  { cidr: block(4, 0xe0000000n, 4), what: "multicast" }, // 224.0.0.0/4
  { cidr: block(6, 0n, 127), what: "unspecified or loopback" }, // ::/127
  { cidr: block(6, 0xff000000000000000000000000000000n, 8), what: "multicast" }, // ff00::/8
];

/**
 * One range with host-local's defaults: the span runs from the first address after the
 * network to the last before the IPv4 broadcast (IPv6 has none, so its last address), and
 * the gateway is the first address. /31, /32, /127 and /128 leave nothing to hand out.
 */
export function parseRange(raw: RawRange, where: string): Range {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw invalidConfig(`${where} must be an object, got ${JSON.stringify(raw)}`);
  }
  if (raw.subnet === undefined || raw.subnet === "") throw invalidConfig(`${where}.subnet is required`);
  const subnet = cidrField(raw.subnet, `${where}.subnet`);
  const hostBits = (subnet.family === 4 ? 32 : 128) - subnet.prefix;
  if (hostBits < 2) {
    throw invalidConfig(`${where}.subnet ${JSON.stringify(raw.subnet)}: network ${formatCidr(subnet)} is too small to allocate from`);
  }
  const inSubnet = (field: keyof RawRange): bigint | undefined => {
    const value = raw[field];
    if (value === undefined || value === null || value === "") return undefined;
    const ip = ipField(value, `${where}.${field}`);
    if (!contains(subnet, ip)) {
      throw invalidConfig(`${where}.${field} ${JSON.stringify(value)} is outside ${formatCidr(subnet)}`);
    }
    return ip.value;
  };
  const last = lastAddress(subnet);
  const start = inSubnet("rangeStart") ?? subnet.network + 1n;
  const end = inSubnet("rangeEnd") ?? (subnet.family === 4 ? last - 1n : last);
  if (start > end) {
    throw invalidConfig(`${where}: rangeStart ${formatIp(subnet.family, start)} is after rangeEnd ${formatIp(subnet.family, end)}`);
  }
  const gateway = inSubnet("gateway") ?? subnet.network + 1n;
  const range: Range = { subnet, start, end, gateway };
  for (const u of UNUSABLE) {
    if (u.cidr.family === subnet.family && start <= lastAddress(u.cidr) && u.cidr.network <= end) {
      throw unsupportedField(`${where}.subnet`, `${String(raw.subnet)} (${u.what} addresses cannot be given to pods)`);
    }
  }
  if (firstUsable(range) === undefined) {
    throw invalidConfig(`${where}: ${spanText(range)} holds no address but the network, gateway or broadcast`);
  }
  return range;
}

/** A set draws one address, so all its ranges are of one family. */
export function checkRangeSet(set: RangeSet, where: string): void {
  if (set.length === 0) throw invalidConfig(`${where} is an empty range set`);
  for (const r of set) {
    if (r.subnet.family !== set[0]!.subnet.family) {
      throw invalidConfig(`${where} mixes IPv4 and IPv6 ranges: ${spanText(set[0]!)} and ${spanText(r)}`);
    }
  }
}

/** host-local refuses a config in which two ranges, of one set or of two, share an address. */
export function checkNoOverlap(ranges: { r: Range; where: string }[]): void {
  for (let i = 0; i < ranges.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = ranges[j]!;
      const b = ranges[i]!;
      if (a.r.subnet.family === b.r.subnet.family && a.r.start <= b.r.end && b.r.start <= a.r.end) {
        throw invalidConfig(`${a.where} (${spanText(a.r)}) and ${b.where} (${spanText(b.r)}) overlap`);
      }
    }
  }
}

/** The network address, the gateway and the IPv4 broadcast are never handed out. */
export function usable(r: Range, ip: bigint): boolean {
  if (ip < r.start || ip > r.end || ip === r.gateway || ip === r.subnet.network) return false;
  return !(r.subnet.family === 4 && ip === lastAddress(r.subnet));
}

export function firstUsable(r: Range): bigint | undefined {
  for (let ip = r.start; ip <= r.end && ip <= r.start + 3n; ip++) if (usable(r, ip)) return ip;
  return undefined;
}

export function lastUsable(r: Range): bigint | undefined {
  for (let ip = r.end; ip >= r.start && ip >= r.end - 3n; ip--) if (usable(r, ip)) return ip;
  return undefined;
}

/** How many addresses the set can hand out. */
export function capacity(set: RangeSet): bigint {
  let n = 0n;
  for (const r of set) {
    const excluded = new Set([r.gateway, r.subnet.network, ...(r.subnet.family === 4 ? [lastAddress(r.subnet)] : [])]);
    n += r.end - r.start + 1n;
    for (const ip of excluded) if (ip >= r.start && ip <= r.end) n -= 1n;
  }
  return n;
}

/** The addresses a range hands out, as `first-last`; the name errors use for a range. */
export function spanText(r: Range): string {
  const f = r.subnet.family;
  return `${formatIp(f, firstUsable(r) ?? r.start)}-${formatIp(f, lastUsable(r) ?? r.end)}`;
}

/** A set as `a-b,c-d`, as host-local names it in "no IP addresses available in range set". */
export const setText = (set: RangeSet): string => set.map(spanText).join(",");

export const familyOf = (set: RangeSet): Family => set[0]!.subnet.family;

/** Whether the set hands out `ip` (network, gateway and broadcast excluded). */
export const setContains = (set: RangeSet, ip: Ip): boolean =>
  set.some((r) => r.subnet.family === ip.family && usable(r, ip.value));

/** The range of the set whose span holds `ip`. */
export const rangeOf = (set: RangeSet, ip: Ip): Range | undefined =>
  set.find((r) => r.subnet.family === ip.family && ip.value >= r.start && ip.value <= r.end);

export function cidrField(value: unknown, where: string): Cidr {
  try {
    return parseCidr(value as string);
  } catch (err) {
    throw invalidConfig(`${where}: ${(err as AddressError).message}`);
  }
}

export function ipField(value: unknown, where: string): Ip {
  try {
    return parseIp(value as string);
  } catch (err) {
    throw invalidConfig(`${where}: ${(err as AddressError).message}`);
  }
}
