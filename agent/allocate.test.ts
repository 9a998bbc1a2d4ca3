import { describe, expect, it } from "vitest";
import { formatCidr, overlaps, parseCidr } from "../shared/net/cidr.js";
import { inPool, nameHash, pickSubnet, poolsOf, subnetOf, type Pool } from "./allocate.js";
import { parseNetworkConfig } from "./config.js";

const pool = (conf: Record<string, unknown>): Pool => poolsOf(parseNetworkConfig(conf))[0]!;
const cidrs = (...texts: string[]) => texts.map(parseCidr);
const pick = (p: Pool, taken: string[], name: string) => {
  const c = pickSubnet(p, cidrs(...taken), name);
  return c && formatCidr(c);
};

describe("pickSubnet", () => {
  const p16 = pool({ Network: "10.244.0.0/16" });

  it("starts at an index derived from the node name, the same every time", () => {
    const start = Number(nameHash("node-a") % 256n);
    expect(pick(p16, [], "node-a")).toBe(`10.244.${start}.0/24`);
    expect(pick(p16, [], "node-a")).toBe(pick(p16, [], "node-a"));
  });

  it("skips taken subnets and wraps around the end of the pool", () => {
    const p = pool({ Network: "10.0.0.0/22", SubnetLen: 24 });
    const start = Number(nameHash("n") % 4n);
    const at = (i: number) => `10.0.${i % 4}.0/24`;
    expect(pick(p, [at(start)], "n")).toBe(at(start + 1));
    expect(pick(p, [at(start), at(start + 1), at(start + 2)], "n")).toBe(at(start + 3));
  });

  it("returns null when every subnet is taken", () => {
    const p = pool({ Network: "10.0.0.0/23", SubnetLen: 24 });
    expect(pick(p, ["10.0.0.0/24", "10.0.1.0/24"], "x")).toBeNull();
  });

  it("treats a larger taken block (an older config) as taking every subnet inside it", () => {
    const p = pool({ Network: "10.0.0.0/22", SubnetLen: 24 });
    expect(pick(p, ["10.0.0.0/23", "10.0.3.0/24"], "anything")).toBe("10.0.2.0/24");
  });

  it("ignores taken subnets of other networks and families", () => {
    const p = pool({ Network: "10.0.0.0/24", SubnetLen: 24 });
    expect(pick(p, ["10.1.0.0/24", "fd00::/64"], "n")).toBe("10.0.0.0/24");
  });

  it("stays within SubnetMin..SubnetMax", () => {
    const p = pool({ Network: "10.244.0.0/16", SubnetMin: "10.244.10.0", SubnetMax: "10.244.12.0" });
    const got = new Set<string>();
    const taken: string[] = [];
    for (let i = 0; i < 3; i++) {
      const s = pick(p, taken, "node")!;
      got.add(s);
      taken.push(s);
    }
    expect([...got].sort()).toEqual(["10.244.10.0/24", "10.244.11.0/24", "10.244.12.0/24"]);
    expect(pick(p, taken, "node")).toBeNull();
  });

  it("finds the single free subnet of a big IPv6 pool without walking it", () => {
    const p = pool({ IPv6Network: "fd00::/32", IPv6SubnetLen: 64 });
    const start = nameHash("v6") % (1n << 32n);
    const first = formatCidr(subnetOf(p, start));
    // A /33 covering half the pool, the start index inside it: the pick jumps past it.
    const half = start < 1n << 31n ? "fd00::/33" : "fd00:0:8000::/33";
    const got = pickSubnet(p, cidrs(half), "v6")!;
    expect(inPool(p, got)).toBe(true);
    expect(formatCidr(got)).not.toBe(first);
    expect(overlaps(got, parseCidr(half))).toBe(false);
  });
});

describe("inPool", () => {
  it("accepts only subnets of the configured length inside the bounds", () => {
    const p = pool({ Network: "10.244.0.0/16", SubnetMin: "10.244.1.0" });
    expect(inPool(p, parseCidr("10.244.1.0/24"))).toBe(true);
    expect(inPool(p, parseCidr("10.244.0.0/24"))).toBe(false);
    expect(inPool(p, parseCidr("10.244.1.0/25"))).toBe(false);
    expect(inPool(p, parseCidr("10.245.1.0/24"))).toBe(false);
  });
});
