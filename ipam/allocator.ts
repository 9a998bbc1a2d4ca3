import { invalidConfig } from "../shared/cni/errors.js";
import { formatCidr } from "../shared/net/cidr.js";
import type { RequestedIp } from "./config.js";
import { rangeOf, setText, usable, type Range, type RangeSet } from "./range.js";

/**
 * Which address to take, as pure functions. Allocation is round-robin as in host-local: it
 * starts after the last reserved address and wraps through every range of the set, so a
 * released address is not handed out again at once (a reused IP meets stale neighbor and
 * conntrack entries in peers, plugins#858).
 */

/**
 * The first address of the round-robin walk that `tryTake` accepts, or undefined when it
 * refuses all. `tryTake` is where the store's exclusive create goes: an address another
 * process took between two calls is simply refused, and the walk moves on.
 */
export function pickAddress(set: RangeSet, last: bigint | undefined, tryTake: (ip: bigint, range: Range) => boolean): { ip: bigint; range: Range } | undefined {
  for (const [range, from, to] of segments(set, last)) {
    for (let ip = from; ip <= to; ip++) {
      if (usable(range, ip) && tryTake(ip, range)) return { ip, range };
    }
  }
  return undefined;
}

/**
 * The walk as [range, from, to] pieces: the rest of the range holding `last`, every other
 * range in order (wrapping), then the head of the range holding `last`, up to `last`. A
 * `last` outside the set (another config wrote it) starts at the first range.
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

/**
 * Which range set each requested address (runtimeConfig.ips, args.cni.ips, IP=) is for, as
 * host-local matches them: the set whose ranges hand it out, one address per set. An address
 * no set hands out, or two for one set, is a config error (7) naming where it came from.
 */
export function assignRequested(sets: RangeSet[], requested: RequestedIp[]): (RequestedIp | undefined)[] {
  const out: (RequestedIp | undefined)[] = sets.map(() => undefined);
  for (const req of requested) {
    const i = sets.findIndex((set) => rangeOf(set, req) !== undefined);
    const where = `${req.from} ${req.text}`;
    if (i < 0) {
      throw invalidConfig(`requested address ${where} is in no range set (${sets.map(setText).join("; ") || "none configured"})`);
    }
    const range = rangeOf(sets[i]!, req)!;
    if (!usable(range, req.value)) {
      const what = req.value === range.gateway ? "the gateway" : req.value === range.subnet.network ? "the network address" : "the broadcast address";
      throw invalidConfig(`requested address ${where} is ${what} of ${formatCidr(range.subnet)}`);
    }
    const other = out[i];
    if (other) {
      throw invalidConfig(`requested addresses ${other.from} ${other.text} and ${where} are both in range set ${setText(sets[i]!)}: one address per set`);
    }
    out[i] = req;
  }
  return out;
}
