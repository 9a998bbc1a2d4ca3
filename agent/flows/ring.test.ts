import { describe, expect, it } from "vitest";
import { RecordRing } from "./ring.js";

describe("RecordRing", () => {
  it("keeps everything until full, oldest first", () => {
    const r = new RecordRing<number>(3);
    expect(r.list()).toEqual([]);
    r.push(1);
    r.push(2);
    expect(r.list()).toEqual([1, 2]);
    expect(r.size).toBe(2);
  });

  it("then the newest take the oldest's places", () => {
    const r = new RecordRing<number>(3);
    for (let i = 1; i <= 7; i++) r.push(i);
    expect(r.list()).toEqual([5, 6, 7]);
    expect(r.size).toBe(3);
    r.push(8);
    expect(r.list()).toEqual([6, 7, 8]);
  });

  it("keeps 1000 by default", () => {
    const r = new RecordRing<number>();
    for (let i = 0; i < 2500; i++) r.push(i);
    expect(r.list()).toEqual(Array.from({ length: 1000 }, (_, i) => 1500 + i));
  });

  it("refuses a capacity below 1", () => {
    expect(() => new RecordRing(0)).toThrow(RangeError);
  });
});
