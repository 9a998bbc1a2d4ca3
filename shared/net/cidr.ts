import { Address4, Address6 } from "ip-address";

/**
 * Address arithmetic for IPv4 and IPv6 on bigints. Parsing and text forms come from
 * ip-address; everything else is plain integer math so it is easy to test.
 */

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  value: bigint;
}

export interface Cidr {
  family: Family;
  /** The address as written, which may have host bits (`10.1.2.3/24`). */
  ip: bigint;
  /** The first address of the prefix. */
  network: bigint;
  prefix: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

export class AddressError extends Error {
  override name = "AddressError";
}

export function parseIp(text: string): Ip {
  if (typeof text === "string" && !text.includes("/")) {
    if (Address4.isValid(text)) return { family: 4, value: new Address4(text).bigInt() };
    if (Address6.isValid(text)) return { family: 6, value: new Address6(text).bigInt() };
  }
  throw new AddressError(`invalid IP address ${JSON.stringify(text)}`);
}

export function parseCidr(text: string): Cidr {
  const m = typeof text === "string" ? /^([^/]+)\/(\d{1,3})$/.exec(text) : null;
  if (!m) throw new AddressError(`invalid CIDR ${JSON.stringify(text)}`);
  let ip: Ip;
  try {
    ip = parseIp(m[1]!);
  } catch {
    throw new AddressError(`invalid CIDR ${JSON.stringify(text)}`);
  }
  const prefix = Number(m[2]);
  if (prefix > BITS[ip.family]) throw new AddressError(`invalid CIDR ${JSON.stringify(text)}: prefix too long`);
  return { family: ip.family, ip: ip.value, network: ip.value & ~hostMask(ip.family, prefix), prefix };
}

export function formatIp(family: Family, value: bigint): string {
  return family === 4 ? Address4.fromBigInt(value).address : Address6.fromBigInt(value).correctForm();
}

/** `network/prefix`, host bits cleared. */
export const formatCidr = (c: Cidr): string => `${formatIp(c.family, c.network)}/${c.prefix}`;

/** `ip/prefix`, as written: the form of `ips[].address` in a CNI result. */
export const formatAddress = (c: Cidr): string => `${formatIp(c.family, c.ip)}/${c.prefix}`;

export const hostMask = (family: Family, prefix: number): bigint =>
  (1n << BigInt(BITS[family] - prefix)) - 1n;

/** The last address of the prefix (the IPv4 broadcast address). */
export const lastAddress = (c: Cidr): bigint => c.network | hostMask(c.family, c.prefix);

export const size = (c: Cidr): bigint => 1n << BigInt(BITS[c.family] - c.prefix);

export const contains = (c: Cidr, ip: Ip): boolean =>
  ip.family === c.family && ip.value >= c.network && ip.value <= lastAddress(c);

/** True when `inner` lies entirely inside `outer`. */
export const covers = (outer: Cidr, inner: Cidr): boolean =>
  outer.family === inner.family && inner.prefix >= outer.prefix && contains(outer, { family: inner.family, value: inner.network });

export const overlaps = (a: Cidr, b: Cidr): boolean =>
  a.family === b.family && a.network <= lastAddress(b) && b.network <= lastAddress(a);

/** The `index`-th subnet of length `prefix` inside `parent` (for carving node subnets). */
export function subnetAt(parent: Cidr, prefix: number, index: bigint): Cidr {
  if (prefix < parent.prefix || prefix > BITS[parent.family]) {
    throw new AddressError(`cannot carve /${prefix} subnets from ${formatCidr(parent)}`);
  }
  const count = 1n << BigInt(prefix - parent.prefix);
  if (index < 0n || index >= count) throw new AddressError(`subnet index ${index} out of range`);
  const network = parent.network + (index << BigInt(BITS[parent.family] - prefix));
  return { family: parent.family, ip: network, network, prefix };
}

export const bits = (family: Family): number => BITS[family];

export const familyOfText = (text: string): Family => (text.includes(":") ? 6 : 4);
