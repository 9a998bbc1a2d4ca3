import { describe, expect, it } from "vitest";
import type { CniError } from "../shared/cni/errors.js";
import { formatIp, parseIp } from "../shared/net/cidr.js";
import { assignRequested, pickAddress, segments } from "./allocator.js";
import type { RequestedIp } from "./config.js";
import { parseRange, type RangeSet } from "./range.js";

const set = (...ranges: Record<string, string>[]): RangeSet => ranges.map((r, i) => parseRange(r, `r${i}`));
const at = (t?: string) => (t === undefined ? undefined : parseIp(t).value);

/** The whole walk: a store in which every address is taken. */
const order = (s: RangeSet, last?: string) => {
  const seen: string[] = [];
  pickAddress(s, at(last), (ip) => {
    seen.push(formatIp(s[0]!.subnet.family, ip));
    return false;
  });
  return seen;
};

/** The address taken from a store holding `taken`. */
const pick = (s: RangeSet, last: string | undefined, taken: string[]) => {
  const r = pickAddress(s, at(last), (ip) => !taken.includes(formatIp(s[0]!.subnet.family, ip)));
  return r && formatIp(s[0]!.subnet.family, r.ip);
};

describe("next address", () => {
  it("skips network, gateway and broadcast", () => {
    expect(order(set({ subnet: "10.0.0.0/29" }))).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
  });

  it("continues after the last reserved address and wraps to it", () => {
    const s = set({ subnet: "10.0.0.0/29" });
    expect(order(s, "10.0.0.4")).toEqual(["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    expect(order(s, "10.0.0.6")).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
    expect(order(s, "10.0.0.1")).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
  });

  it("starts at the first range when the last address is outside the set or of the other family", () => {
    expect(order(set({ subnet: "10.0.0.0/30" }), "192.168.0.1")).toEqual(["10.0.0.2"]);
    expect(order(set({ subnet: "10.0.0.0/29" }), "10.0.0.7")).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
  });

  it("walks several ranges in order and wraps across them", () => {
    const s = set(
      { subnet: "10.0.0.0/24", rangeStart: "10.0.0.10", rangeEnd: "10.0.0.11" },
      { subnet: "10.0.1.0/24", rangeStart: "10.0.1.20", rangeEnd: "10.0.1.21" },
      { subnet: "10.0.2.0/24", rangeStart: "10.0.2.30", rangeEnd: "10.0.2.30" },
    );
    expect(order(s)).toEqual(["10.0.0.10", "10.0.0.11", "10.0.1.20", "10.0.1.21", "10.0.2.30"]);
    expect(order(s, "10.0.0.11")).toEqual(["10.0.1.20", "10.0.1.21", "10.0.2.30", "10.0.0.10", "10.0.0.11"]);
    expect(order(s, "10.0.1.20")).toEqual(["10.0.1.21", "10.0.2.30", "10.0.0.10", "10.0.0.11", "10.0.1.20"]);
    expect(order(s, "10.0.2.30")).toEqual(["10.0.0.10", "10.0.0.11", "10.0.1.20", "10.0.1.21", "10.0.2.30"]);
    expect(segments(s, at("10.0.1.21"))).toHaveLength(4);
  });

  it("takes the first free address after the last one, and none when all are taken", () => {
    const s = set({ subnet: "10.0.0.0/29" });
    expect(pick(s, "10.0.0.3", ["10.0.0.4", "10.0.0.5"])).toBe("10.0.0.6");
    expect(pick(s, "10.0.0.5", ["10.0.0.6", "10.0.0.2"])).toBe("10.0.0.3");
    expect(pick(s, undefined, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"])).toBeUndefined();
    // A freed address comes back only after the walk wraps round to it.
    expect(pick(s, "10.0.0.4", ["10.0.0.2", "10.0.0.3"])).toBe("10.0.0.5");
  });

  it("walks IPv6 lazily, up to the last address of the prefix", () => {
    expect(order(set({ subnet: "fd00::/126" }))).toEqual(["fd00::2", "fd00::3"]);
    const big = set({ subnet: "fd00:1::/64" });
    expect(pick(big, "fd00:1::ffff:ffff:ffff:fffe", [])).toBe("fd00:1::ffff:ffff:ffff:ffff");
    expect(pick(big, "fd00:1::ffff:ffff:ffff:ffff", ["fd00:1::2"])).toBe("fd00:1::3");
  });
});

describe("requested addresses", () => {
  const req = (text: string, from = "runtimeConfig.ips"): RequestedIp => ({ ...parseIp(text), text, from });
  const dual = [set({ subnet: "10.0.0.0/24" }), set({ subnet: "fd00::/64" })];
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
      return [0, ""];
    } catch (err) {
      return [(err as CniError).code, (err as Error).message];
    }
  };

  it("go to the set that hands them out, one per set", () => {
    const r = assignRequested(dual, [req("fd00::9"), req("10.0.0.9", "args.cni.ips")]);
    expect(r.map((x) => x?.text)).toEqual(["10.0.0.9", "fd00::9"]);
    expect(assignRequested(dual, [req("10.0.0.9")])[1]).toBeUndefined();
  });

  it.each([
    [["192.168.0.1"], /requested address runtimeConfig.ips 192.168.0.1 is in no range set \(10.0.0.2-10.0.0.254; fd00::2-/],
    [["10.0.0.1"], /10.0.0.1 is the gateway of 10.0.0.0\/24/],
    [["10.0.0.255"], /in no range set/],
    [["10.0.0.7", "10.0.0.8"], /runtimeConfig.ips 10.0.0.7 and runtimeConfig.ips 10.0.0.8 are both in range set 10.0.0.2-10.0.0.254/],
  ])("refuses %j with code 7", (texts, msg) => {
    const [code, text] = codeOf(() => assignRequested(dual, texts.map((t) => req(t))));
    expect(code).toBe(7);
    expect(text).toMatch(msg);
  });
});
