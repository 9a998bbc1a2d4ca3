import { describe, expect, it } from "vitest";
import { normalizeDst, routeDelLine, routeReplaceLine, sameRoute, toRouteSpec } from "./routes.js";

describe("twill's routes", () => {
  it("reads ip -json output into keyed specs (host routes get their length, v6 in canonical form)", () => {
    expect(toRouteSpec({ dst: "10.244.2.0/24", gateway: "10.244.2.0", dev: "twill.1", flags: ["onlink"] })).toEqual({
      dst: "10.244.2.0/24", via: "10.244.2.0", dev: "twill.1", onlink: true,
    });
    expect(normalizeDst("10.1.2.3")).toBe("10.1.2.3/32");
    expect(normalizeDst("fd00:0:0:2:0:0:0:0/64")).toBe("fd00:0:0:2::/64");
  });

  it("compares next hops by value", () => {
    const a = { dst: "fd00:0:0:2::/64", via: "fd00:0:0:2::", dev: "twill.1", onlink: true };
    expect(sameRoute(a, { ...a, via: "fd00:0:0:2:0:0:0:0" })).toBe(true);
    expect(sameRoute(a, { ...a, onlink: false })).toBe(false);
  });

  it("writes and deletes only with twill's protocol", () => {
    const r = { dst: "10.244.2.0/24", via: "192.168.1.3", dev: "eth0", onlink: false };
    expect(routeReplaceLine(r)).toEqual(["route", "replace", "10.244.2.0/24", "via", "192.168.1.3", "dev", "eth0", "proto", 150]);
    expect(routeDelLine(r)).toEqual(["route", "del", "10.244.2.0/24", "via", "192.168.1.3", "dev", "eth0", "proto", 150]);
  });
});
