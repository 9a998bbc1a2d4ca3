import { describe, expect, it } from "vitest";
import { TokenBucket } from "./limiter.js";

describe("TokenBucket", () => {
  const passed = (b: TokenBucket, n: number) => Array.from({ length: n }, () => b.take()).filter(Boolean).length;

  it("lets a burst through at once, then counts what is over", () => {
    const b = new TokenBucket(10, 5, () => 0);
    expect(passed(b, 8)).toBe(5);
    expect(b.refused).toBe(3);
  });

  it("refills at the rate, never past the burst", () => {
    let t = 0;
    const b = new TokenBucket(10, 5, () => t);
    expect(passed(b, 5)).toBe(5);
    t += 100; // one token
    expect(passed(b, 3)).toBe(1);
    t += 250; // two and a half
    expect(passed(b, 3)).toBe(2);
    t += 50; // the half left and another half: one
    expect(passed(b, 3)).toBe(1);
    t += 60_000;
    expect(passed(b, 10)).toBe(5);
    expect(b.refused).toBe(2 + 1 + 2 + 5);
  });

  it("a clock stepped back refills nothing", () => {
    let t = 10_000;
    const b = new TokenBucket(1, 1, () => t);
    expect(b.take()).toBe(true);
    t = 0;
    expect(b.take()).toBe(false);
    t = 999;
    expect(b.take()).toBe(false);
    t = 1000;
    expect(b.take()).toBe(true);
  });

  it("a slow rate: a record per second", () => {
    let t = 0;
    const b = new TokenBucket(1, 1, () => t);
    const got = [];
    for (let i = 0; i < 10; i++, t += 500) got.push(b.take());
    expect(got).toEqual([true, false, true, false, true, false, true, false, true, false]);
  });

  it("refuses a rate or burst that cannot work", () => {
    expect(() => new TokenBucket(0, 1, () => 0)).toThrow(RangeError);
    expect(() => new TokenBucket(Number.NaN, 1, () => 0)).toThrow(RangeError);
    expect(() => new TokenBucket(1, 0, () => 0)).toThrow(RangeError);
  });
});
