import { describe, expect, it } from "vitest";
import { formatIp, parseIp } from "../shared/net/cidr.js";
import { candidates, capacity, segments } from "./allocator.js";
import { parseRange, type RangeSet } from "./config.js";

const set = (...ranges: Record<string, string>[]): RangeSet => ranges.map((r, i) => parseRange(r, `r${i}`));
const list = (s: RangeSet, last?: string) =>
  [...candidates(s, last === undefined ? undefined : parseIp(last).value)].map((v) => formatIp(s[0]!.subnet.family, v));

describe("allocator", () => {
  it("skips network, gateway and broadcast", () => {
    expect(list(set({ subnet: "10.0.0.0/29" }))).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
    expect(capacity(set({ subnet: "10.0.0.0/29" }))).toBe(5);
  });

  it("continues after the last reserved address and wraps", () => {
    expect(list(set({ subnet: "10.0.0.0/29" }), "10.0.0.4")).toEqual(["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    expect(list(set({ subnet: "10.0.0.0/29" }), "10.0.0.6")).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
  });

  it("ignores a last address outside the set", () => {
    expect(list(set({ subnet: "10.0.0.0/30" }), "192.168.0.1")).toEqual(["10.0.0.2"]);
  });

  it("walks several ranges in order and wraps across them", () => {
    const s = set(
      { subnet: "10.0.0.0/24", rangeStart: "10.0.0.10", rangeEnd: "10.0.0.11" },
      { subnet: "10.0.1.0/24", rangeStart: "10.0.1.20", rangeEnd: "10.0.1.21" },
    );
    expect(list(s)).toEqual(["10.0.0.10", "10.0.0.11", "10.0.1.20", "10.0.1.21"]);
    expect(list(s, "10.0.0.11")).toEqual(["10.0.1.20", "10.0.1.21", "10.0.0.10", "10.0.0.11"]);
    expect(list(s, "10.0.1.20")).toEqual(["10.0.1.21", "10.0.0.10", "10.0.0.11", "10.0.1.20"]);
    expect(segments(s, parseIp("10.0.1.21").value).map(([, a, b]) => [a <= b])).toHaveLength(3);
  });

  it("hands out IPv6 up to the last address of the prefix", () => {
    const s = set({ subnet: "fd00::/126" });
    expect(list(s)).toEqual(["fd00::2", "fd00::3"]);
  });
});
