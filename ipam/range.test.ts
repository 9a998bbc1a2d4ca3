import { describe, expect, it } from "vitest";
import { CniError } from "../shared/cni/errors.js";
import { formatIp, parseCidr, parseIp } from "../shared/net/cidr.js";
import { UNUSABLE, capacity, parseRange, setContains, setText, spanText, usable, type Range, type RawRange } from "./range.js";

const range = (raw: RawRange) => parseRange(raw, "r");
const text = (r: Range) => ({
  start: formatIp(r.subnet.family, r.start),
  end: formatIp(r.subnet.family, r.end),
  gateway: formatIp(r.subnet.family, r.gateway),
});
const failure = (raw: RawRange) => {
  try {
    range(raw);
  } catch (err) {
    return { code: (err as CniError).code, msg: (err as Error).message };
  }
  return { code: 0, msg: "" };
};
const ip = (t: string) => parseIp(t).value;

describe("range defaults, as host-local", () => {
  it.each([
    ["10.1.0.0/24", "10.1.0.1", "10.1.0.254", "10.1.0.1"],
    ["10.1.0.77/24", "10.1.0.1", "10.1.0.254", "10.1.0.1"],
    ["10.0.0.0/29", "10.0.0.1", "10.0.0.6", "10.0.0.1"],
    ["10.0.0.4/30", "10.0.0.5", "10.0.0.6", "10.0.0.5"],
    ["1.0.0.0/30", "1.0.0.1", "1.0.0.2", "1.0.0.1"],
    ["223.255.255.0/24", "223.255.255.1", "223.255.255.254", "223.255.255.1"],
    ["10.0.0.0/8", "10.0.0.1", "10.255.255.254", "10.0.0.1"],
    // IPv6 has no broadcast: the span runs to the last address of the prefix.
    ["fd00::/126", "fd00::1", "fd00::3", "fd00::1"],
    ["fd00:1::/64", "fd00:1::1", "fd00:1::ffff:ffff:ffff:ffff", "fd00:1::1"],
    ["feff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124", "feff:ffff:ffff:ffff:ffff:ffff:ffff:fff1", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "feff:ffff:ffff:ffff:ffff:ffff:ffff:fff1"],
  ])("%s: start %s, end %s, gateway %s", (subnet, start, end, gateway) => {
    expect(text(range({ subnet }))).toEqual({ start, end, gateway });
  });

  it("keeps what the config sets", () => {
    expect(text(range({ subnet: "10.2.0.0/16", rangeStart: "10.2.1.10", rangeEnd: "10.2.1.20", gateway: "10.2.255.254" }))).toEqual({
      start: "10.2.1.10", end: "10.2.1.20", gateway: "10.2.255.254",
    });
  });
});

describe("range validation", () => {
  it.each(["10.1.0.0/31", "10.1.0.1/32", "fd00::/127", "fd00::1/128"])("refuses %s as too small to allocate from (7)", (subnet) => {
    expect(failure({ subnet })).toEqual({ code: 7, msg: expect.stringMatching(new RegExp(`r.subnet "${subnet}".*too small to allocate from`)) });
  });

  it.each<[RawRange, RegExp]>([
    [{ subnet: "10.1.0.0/33" }, /r.subnet: invalid CIDR "10.1.0.0\/33"/],
    [{ subnet: "10.1.0.0" }, /r.subnet: invalid CIDR "10.1.0.0"/],
    [{ subnet: 5 }, /r.subnet: invalid CIDR 5/],
    [{}, /r.subnet is required/],
    [{ subnet: "10.1.0.0/24", rangeStart: "10.2.0.1" }, /r.rangeStart "10.2.0.1" is outside 10.1.0.0\/24/],
    [{ subnet: "10.1.0.0/24", rangeEnd: "10.1.0.300" }, /r.rangeEnd: invalid IP address "10.1.0.300"/],
    [{ subnet: "10.1.0.0/24", gateway: "fd00::1" }, /r.gateway "fd00::1" is outside 10.1.0.0\/24/],
    [{ subnet: "10.1.0.0/24", rangeStart: "10.1.0.9", rangeEnd: "10.1.0.5" }, /rangeStart 10.1.0.9 is after rangeEnd 10.1.0.5/],
    [{ subnet: "10.1.0.0/24", rangeStart: "10.1.0.1", rangeEnd: "10.1.0.1" }, /holds no address but the network, gateway or broadcast/],
  ])("refuses %j with code 7 naming the field and value", (raw, msg) => {
    const f = failure(raw);
    expect(f.code).toBe(7);
    expect(f.msg).toMatch(msg);
  });

  it.each([
    ["224.0.0.0/24", "multicast"],
    ["127.0.0.0/24", "loopback"],
    ["0.0.0.0/16", "this network"],
    ["ff02::/64", "multicast"],
    ["::/126", "loopback"],
  ])("answers 2 (unsupported value) to %s, naming key and value", (subnet, what) => {
    const f = failure({ subnet });
    expect(f.code).toBe(2);
    expect(f.msg).toContain('"r.subnet"');
    expect(f.msg).toContain(subnet);
    expect(f.msg).toContain(what);
  });

  it("accepts a subnet that only touches a special block outside its span", () => {
    expect(failure({ subnet: "0.0.0.0/0", rangeStart: "10.0.0.1", rangeEnd: "10.0.0.9" }).code).toBe(0);
  });
});

describe("range math", () => {
  it("never hands out the network, the gateway or the IPv4 broadcast", () => {
    const r = range({ subnet: "10.0.0.0/29", rangeStart: "10.0.0.0", rangeEnd: "10.0.0.7", gateway: "10.0.0.3" });
    const usableOnes = [0, 1, 2, 3, 4, 5, 6, 7].filter((i) => usable(r, ip(`10.0.0.${i}`)));
    expect(usableOnes).toEqual([1, 2, 4, 5, 6]);
    expect(capacity([r])).toBe(5n);
    expect(spanText(r)).toBe("10.0.0.1-10.0.0.6");
  });

  it("hands out the last IPv6 address, not the network or the gateway", () => {
    const r = range({ subnet: "fd00::/126" });
    expect(["fd00::", "fd00::1", "fd00::2", "fd00::3"].map((t) => usable(r, ip(t)))).toEqual([false, false, true, true]);
    expect(capacity([r])).toBe(2n);
    expect(spanText(r)).toBe("fd00::2-fd00::3");
  });

  it("counts and names a set of several ranges", () => {
    const set = [range({ subnet: "10.0.0.0/29" }), range({ subnet: "10.0.1.0/24", rangeStart: "10.0.1.10", rangeEnd: "10.0.1.19", gateway: "10.0.1.19" })];
    expect(capacity(set)).toBe(5n + 9n);
    expect(setText(set)).toBe("10.0.0.2-10.0.0.6,10.0.1.10-10.0.1.18");
    expect(setContains(set, parseIp("10.0.1.12"))).toBe(true);
    expect(setContains(set, parseIp("10.0.1.19"))).toBe(false);
    expect(setContains(set, parseIp("10.0.1.20"))).toBe(false);
    expect(setContains(set, parseIp("fd00::2"))).toBe(false);
  });

  it("counts a /64 exactly", () => {
    expect(capacity([range({ subnet: "fd00:1::/64" })])).toBe((1n << 64n) - 2n);
    expect(capacity([range({ subnet: "10.0.0.0/8" })])).toBe((1n << 24n) - 3n);
  });
});

describe("the blocks no pod address may be in", () => {
  it("are the prefixes their texts name", () => {
    const texts = ["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "::/127", "ff00::/8"];
    expect(UNUSABLE.map((u) => u.cidr)).toEqual(texts.map(parseCidr));
  });
});
