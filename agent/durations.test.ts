import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "./durations.js";

describe("parseDuration", () => {
  it("takes Go-style durations and bare seconds", () => {
    expect(parseDuration("500ms", "--resync")).toBe(500);
    expect(parseDuration("10s", "--resync")).toBe(10_000);
    expect(parseDuration("1h30m", "--lease-ttl")).toBe(5_400_000);
    expect(parseDuration("15", "--lease-ttl")).toBe(15_000);
    expect(parseDuration(2, "--lease-ttl")).toBe(2_000);
  });
  it("names the flag and value it refuses", () => {
    expect(() => parseDuration("10 parsecs", "--resync")).toThrow('--resync "10 parsecs" is not a duration');
    expect(() => parseDuration("0s", "--resync")).toThrow(/--resync "0s"/);
    expect(() => parseDuration("", "--lease-ttl")).toThrow(/--lease-ttl/);
  });
});

describe("formatDuration", () => {
  it("reads like kubectl's ages", () => {
    expect([0, 42_000, 303_000, 7_500_000, 3 * 86_400_000 + 4 * 3_600_000].map(formatDuration)).toEqual(["0s", "42s", "5m3s", "2h5m", "3d4h"]);
    expect(formatDuration(-5)).toBe("0s");
  });
});
