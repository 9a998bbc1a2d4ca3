import { formatIp, lastAddress, parseCidr, parseIp, type Family } from "../../shared/net/cidr.js";

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

/** `cidr` minus every `except` block, as intervals of its family. */
export function ipBlockIntervals(cidr: string, except: readonly string[] = []): { family: Family; intervals: Interval[] } {
  const c = parseCidr(cidr);
  let parts: Interval[] = [[c.network, lastAddress(c)]];
  for (const e of except) {
    const x = parseCidr(e);
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
