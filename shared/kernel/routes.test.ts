import { describe, expect, it } from "vitest";
import { normalizeDst, sameRoute } from "./routes.js";

describe("twill's routes", () => {
  it("keys destinations with their length, v6 in canonical form", () => {
    expect(normalizeDst("10.1.2.3")).toBe("10.1.2.3/32");
    expect(normalizeDst("fd00:0:0:2:0:0:0:0/64")).toBe("fd00:0:0:2::/64");
  });

  it("compares next hops by value", () => {
    const a = { dst: "fd00:0:0:2::/64", via: "fd00:0:0:2::", dev: "twill.1", onlink: true };
    expect(sameRoute(a, { ...a, via: "fd00:0:0:2:0:0:0:0" })).toBe(true);
    expect(sameRoute(a, { ...a, onlink: false })).toBe(false);
  });
});
