import { AddressError, formatIp, lastAddress, parseCidr, parseIp, type Cidr, type Family } from "../../shared/net/cidr.js";

/**
 * Address sets as sorted, disjoint, inclusive intervals per family. nft refuses overlapping
 * elements in one interval set (unless auto-merge, which costs the kernel a merge per
 * element), so the compiler hands it intervals already merged; `except` blocks are cut out
 * here, where nft has no notion of them.
 */

export type Interval = [bigint, bigint];
export type Intervals = Record<Family, Interval[]>;

export const emptyIntervals = (): Intervals => ({ 4: [], 6: [] });

/** Sorts and merges touching or overlapping intervals. */
export function normalize(list: Interval[]): Interval[] {
  const sorted = [...list].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: Interval[] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1n) {
      if (b > last[1]) last[1] = b;
    } else {
      out.push([a, b]);
    }
  }
  return out;
}

/** `cidr` minus every `except` block, as intervals of its family; both read as the apiserver reads them. */
export function ipBlockIntervals(cidr: string, except: readonly string[] = []): { family: Family; intervals: Interval[] } {
  const c = parseCidrSloppy(cidr);
  let parts: Interval[] = [[c.network, lastAddress(c)]];
  for (const e of except) {
    const x = parseCidrSloppy(e);
    if (x.family !== c.family) continue;
    const [xa, xb] = [x.network, lastAddress(x)];
    parts = parts.flatMap(([a, b]): Interval[] => {
      if (xb < a || xa > b) return [[a, b]];
      const kept: Interval[] = [];
      if (xa > a) kept.push([a, xa - 1n]);
      if (xb < b) kept.push([xb + 1n, b]);
      return kept;
    });
  }
  return { family: c.family, intervals: parts };
}

/**
 * A CIDR the way the apiserver validates an ipBlock since 1.23 (k8s.io/utils/net
 * ParseCIDRSloppy, which is Go's net.ParseCIDR as it was before Go 1.17; kubernetes#100895):
 * - IPv4 parts may have leading zeros and are DECIMAL: `010.0.0.0/8` is 10.0.0.0/8, never the
 *   octal 8.0.0.0/8 that inet_aton (and so iptables or ping) would read;
 * - IPv6 groups may have leading zeros past four digits, and the prefix length too;
 * - host bits are allowed and masked off (`10.1.2.3/8` is 10.0.0.0/8);
 * - an IPv4-mapped prefix of /96 or longer (`::ffff:10.0.0.0/104`) is an IPv4 prefix (10.0.0.0/8),
 *   as Go's IPNet.Contains reads it.
 * A policy the apiserver stored this way means what Go reads; refusing it would leave its pods
 * unprotected or cut off, depending on how the refusal is handled.
 */
export function parseCidrSloppy(text: string): Cidr {
  const invalid = () => new AddressError(`invalid CIDR ${JSON.stringify(text)}`);
  if (typeof text !== "string") throw invalid();
  const slash = text.indexOf("/");
  if (slash < 0) throw invalid();
  const mask = text.slice(slash + 1);
  const address = canonicalIpText(text.slice(0, slash));
  if (!/^\d+$/.test(mask) || address === undefined) throw invalid();
  const ip = parseIp(address);
  const prefix = Number(mask);
  if (prefix > (ip.family === 4 ? 32 : 128)) throw invalid();
  if (ip.family === 6 && prefix >= 96 && ip.value >> 32n === 0xffffn) {
    return parseCidr(`${formatIp(4, ip.value & 0xffffffffn)}/${prefix - 96}`);
  }
  return parseCidr(`${address}/${prefix}`);
}

/**
 * A pod's address as the apiserver reads it (ParseIPSloppy): as written when the strict parser
 * takes it, else without the leading zeros Go allowed; undefined if it is no address.
 */
export function readPodIp(text: string): string | undefined {
  if (typeof text !== "string") return undefined;
  // Every snapshot reads every pod's addresses again, and they rarely change: each text is
  // parsed once (the bound only keeps churn from growing the map for ever).
  if (podIps.has(text)) return podIps.get(text);
  if (podIps.size >= POD_IPS_KEPT) podIps.clear();
  let read: string | undefined;
  try {
    parseIp(text);
    read = text;
  } catch {
    read = canonicalIpText(text);
  }
  podIps.set(text, read);
  return read;
}

const POD_IPS_KEPT = 200_000;
const podIps = new Map<string, string | undefined>();

/**
 * `text` with the leading zeros Go's old parser allowed taken out, so the strict parser reads
 * it; undefined when a part is out of range. Go reads IPv4 first, then IPv6.
 */
function canonicalIpText(text: string): string | undefined {
  const decimal = (part: string): string | undefined => (/^\d+$/.test(part) && Number(part) <= 255 ? String(Number(part)) : undefined);
  const v4 = (t: string): string | undefined => {
    const parts = t.split(".");
    if (parts.length !== 4) return undefined;
    const out = parts.map(decimal);
    return out.every((p) => p !== undefined) ? out.join(".") : undefined;
  };
  if (!text.includes(":")) return v4(text);
  const groups = text.split(":");
  const out: string[] = [];
  for (const [i, g] of groups.entries()) {
    if (g === "") {
      out.push(g);
    } else if (i === groups.length - 1 && g.includes(".")) {
      const tail = v4(g);
      if (tail === undefined) return undefined;
      out.push(tail);
    } else {
      const hex = /^0*([0-9a-fA-F]{1,4})$/.exec(g);
      if (!hex) return undefined;
      out.push(hex[1]!);
    }
  }
  const joined = out.join(":");
  try {
    parseIp(joined);
    return joined;
  } catch {
    return undefined;
  }
}

/** A single address as an interval of its family. */
export function addressInterval(ip: string): { family: Family; interval: Interval } {
  const p = parseIp(ip);
  return { family: p.family, interval: [p.value, p.value] };
}

/** Is `value` in one of `list`, sorted and disjoint (as normalize leaves them)? Binary search. */
export function inSorted(list: readonly Interval[], value: bigint): boolean {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = list[mid]!;
    if (value < a) hi = mid - 1;
    else if (value > b) lo = mid + 1;
    else return true;
  }
  return false;
}

/** nft set elements: `10.0.0.1` or `10.0.0.0-10.0.0.127`; `known` holds texts already at hand. */
export function formatIntervals(family: Family, list: readonly Interval[], known?: ReadonlyMap<bigint, string>): string[] {
  const text = (v: bigint) => known?.get(v) ?? formatIp(family, v);
  return list.map(([a, b]) => (a === b ? text(a) : `${text(a)}-${text(b)}`));
}
