import type { Range, RangeSet } from "./config.js";

/**
 * Which address to try next, as pure functions. Allocation is round-robin: it starts after
 * the last reserved address and wraps through every range of the set, so a released address
 * is not handed out again at once (a reused IP meets stale neighbor and conntrack entries in
 * peers, plugins#858).
 */

/** Every allocatable address of the set in round-robin order, starting after `last`. */
export function* candidates(set: RangeSet, last?: bigint): Generator<bigint> {
  for (const [r, from, to] of segments(set, last)) {
    for (let ip = from; ip <= to; ip++) if (usable(r, ip)) yield ip;
  }
}

/**
 * The walk as [range, from, to] pieces: the rest of the range holding `last`, every other
 * range in order (wrapping), then the head of the first range up to `last`.
 */
export function segments(set: RangeSet, last?: bigint): [Range, bigint, bigint][] {
  const i = last === undefined ? -1 : set.findIndex((r) => last >= r.start && last <= r.end);
  if (i < 0) return set.map((r) => [r, r.start, r.end]);
  const out: [Range, bigint, bigint][] = [[set[i]!, last! + 1n, set[i]!.end]];
  for (let k = 1; k < set.length; k++) {
    const r = set[(i + k) % set.length]!;
    out.push([r, r.start, r.end]);
  }
  out.push([set[i]!, set[i]!.start, last!]);
  return out;
}

/** The network address, the gateway and the IPv4 broadcast are never handed out. */
export function usable(r: Range, ip: bigint): boolean {
  if (ip === r.gateway || ip === r.subnet.network) return false;
  if (r.subnet.family === 4 && ip === (r.subnet.network | ((1n << BigInt(32 - r.subnet.prefix)) - 1n))) return false;
  return true;
}

/** Number of addresses the set can hand out. */
export function capacity(set: RangeSet): number {
  let n = 0n;
  for (const r of set) {
    n += r.end - r.start + 1n;
    if (r.gateway !== undefined && r.gateway >= r.start && r.gateway <= r.end) n -= 1n;
    if (r.subnet.network >= r.start) n -= 1n;
  }
  return Number(n);
}
