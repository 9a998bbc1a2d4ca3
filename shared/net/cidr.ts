/**
 * Address arithmetic for IPv4 and IPv6 on bigints. Parsing and the text forms are done here
 * rather than with ip-address: loading that library would be a large part of every start of
 * the per-pod executable. cidr.test.ts checks both against ip-address on many inputs.
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
  const value = typeof text !== "string" ? undefined : text.includes(":") ? parse6(text) : parse4(text);
  if (value === undefined) throw new AddressError(`invalid IP address ${JSON.stringify(text)}`);
  return { family: text.includes(":") ? 6 : 4, value };
}

/** Dotted quad; leading zeros are refused, as Go's net.ParseIP does (they once meant octal). */
function parse4(text: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let v = 0n;
  for (const part of m.slice(1)) {
    const n = Number(part);
    if (n > 255 || (part.length > 1 && part.startsWith("0"))) return undefined;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

/** RFC 4291 text: 8 groups, one `::` at most, an IPv4 tail allowed; no zone. */
function parse6(text: string): bigint | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): bigint[] | undefined => {
    if (half === "") return [];
    const parts = half.split(":");
    const out: bigint[] = [];
    for (const [i, p] of parts.entries()) {
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parse4(p);
        if (v4 === undefined) return undefined;
        out.push(v4 >> 16n, v4 & 0xffffn);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
        out.push(BigInt(`0x${p}`));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  // An IPv4 tail is only allowed at the very end.
  if (halves.length === 2 && halves[0]!.includes(".")) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...head, ...Array<bigint>(halves.length === 2 ? missing : 0).fill(0n), ...tail];
  return all.reduce((v, g) => (v << 16n) | g, 0n);
}

/** parseIp, or null where it throws: for what a peer, a record or a daemon handed over. */
export function parseIpOrNull(text: unknown): Ip | null {
  try {
    return parseIp(text as string);
  } catch {
    return null;
  }
}

/** parseCidr, or null where it throws. */
export function parseCidrOrNull(text: unknown): Cidr | null {
  try {
    return parseCidr(text as string);
  } catch {
    return null;
  }
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
  if (family === 4) {
    const v = Number(value);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  return formatIp6Groups(groups);
}

/**
 * An IPv6 address from its eight 16-bit groups, as RFC 5952 writes it: lower case, no leading
 * zeros, the longest run (first on a tie) of two or more zero groups written as "::".
 */
export function formatIp6Groups(groups: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out += "::";
      i += bestLen - 1;
      continue;
    }
    out += (out === "" || out.endsWith(":") ? "" : ":") + groups[i]!.toString(16);
  }
  return out;
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

export const bits = (family: Family): number => BITS[family];

export const familyOfText = (text: string): Family => (text.includes(":") ? 6 : 4);

/** `text` as a canonical CIDR (`network/prefix`), or as written when it is none. */
export function canonicalCidrOrSelf(text: string): string {
  try {
    return formatCidr(parseCidr(text));
  } catch {
    return text;
  }
}

/**
 * A prefix from its number, for constants: parsing their text at load time would put the
 * IPv6 parser in every start of the plugin, whose pods may have no IPv6 at all.
 */
export const block = (family: Family, network: bigint, prefix: number): Cidr => ({ family, ip: network, network, prefix });

/** fe80::/10 */
const LINK_LOCAL6 = block(6, 0xfe800000000000000000000000000000n, 10);

/** An IPv6 link-local address (fe80::/10). */
export const isLinkLocal6 = (ip: Ip): boolean => contains(LINK_LOCAL6, ip);
