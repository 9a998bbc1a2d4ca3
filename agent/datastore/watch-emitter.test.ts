import { describe, expect, it } from "vitest";
import { FakeClock, settle } from "../../testkit/clock.js";
import type { NodeLease } from "../types.js";
import { LeaseSetEmitter, WatchRegistry, lapseDelay } from "./watch-emitter.js";

const NOW = 1_800_000_000_000;
const DAY = 86_400_000;
const lease = (nodeName: string, expiresAt?: number): NodeLease => ({
  nodeName,
  subnets: ["10.0.1.0/24"],
  publicIP: "192.0.2.1",
  backend: { type: "host-gw" },
  ...(expiresAt === undefined ? {} : { expiresAt }),
});

describe("lapseDelay", () => {
  it("waits until just past the earliest expiry still ahead", () => {
    expect(lapseDelay([lease("a", NOW + 10_000), lease("b", NOW + 5_000), lease("c", NOW - 1), lease("d")], NOW)).toBe(5_001);
  });

  it("is undefined when no lease will lapse", () => {
    expect(lapseDelay([], NOW)).toBeUndefined();
    expect(lapseDelay([lease("a"), lease("b", NOW)], NOW)).toBeUndefined();
  });

  it("never asks for a timer longer than setTimeout can hold", () => {
    expect(lapseDelay([lease("a", NOW + 30 * DAY)], NOW)).toBe(2 ** 31 - 1);
  });
});

/** An emitter over a lease set the test sets, on a fake clock, with what it read and handed on. */
function harness(batchMs = 0) {
  const clock = new FakeClock(NOW);
  const h = {
    clock,
    set: [] as NodeLease[] | undefined,
    reads: [] as { at: number; whole: boolean }[],
    emitted: [] as string[][],
    errors: [] as Error[],
    emitter: undefined as unknown as LeaseSetEmitter,
  };
  h.emitter = new LeaseSetEmitter({
    clock,
    batchMs,
    read: (now, whole) => {
      h.reads.push({ at: now, whole });
      if (h.set === undefined) return undefined;
      return h.set.filter((l) => l.expiresAt === undefined || l.expiresAt > now);
    },
    onChange: (leases) => h.emitted.push(leases.map((l) => l.nodeName)),
    onError: (err) => h.errors.push(err),
  });
  return h;
}

describe("LeaseSetEmitter", () => {
  it("hands on a set only when it differs from the last one handed on", () => {
    const h = harness();
    h.set = [lease("a"), lease("b")];
    h.emitter.emit();
    h.set = [lease("b"), lease("a")];
    h.emitter.emit();
    h.set = [lease("a")];
    h.emitter.emit();
    expect(h.emitted).toEqual([["a", "b"], ["a"]]);
  });

  it("reads once for every schedule() within one batch", async () => {
    const h = harness(0);
    h.set = [lease("a")];
    for (let i = 0; i < 5; i++) h.emitter.schedule();
    expect(h.reads).toEqual([]);
    await settle();
    expect(h.reads).toHaveLength(1);
    expect(h.emitted).toEqual([["a"]]);
  });

  it("reads the whole set again when the next lease lapses, and waits for the one after", async () => {
    const h = harness();
    h.set = [lease("a", NOW + 10_000), lease("b", NOW + 20_000), lease("c")];
    h.emitter.emit();
    await h.clock.advance(10_000);
    expect(h.emitted).toEqual([["a", "b", "c"]]);
    await h.clock.advance(1);
    expect(h.reads.at(-1)).toEqual({ at: NOW + 10_001, whole: true });
    expect(h.emitted.at(-1)).toEqual(["b", "c"]);
    await h.clock.advance(10_000);
    expect(h.emitted.at(-1)).toEqual(["c"]);
    // c never lapses: nothing is left to wait for.
    expect(h.clock.pending()).toBe(0);
  });

  it("waits for a lease a month away in steps a timer can hold", async () => {
    const h = harness();
    h.set = [lease("a", NOW + 30 * DAY)];
    h.emitter.emit();
    await h.clock.advance(30 * DAY + 1);
    expect(h.reads.map((r) => r.at - NOW)).toEqual([0, 2 ** 31 - 1, 30 * DAY + 1]);
    expect(h.emitted).toEqual([["a"], []]);
  });

  it("moves the lapse timer with the set: a renewal pushes it out", async () => {
    const h = harness();
    h.set = [lease("a", NOW + 10_000)];
    h.emitter.emit();
    h.set = [lease("a", NOW + 60_000)];
    h.emitter.emit();
    expect(h.clock.pending()).toBe(1);
    await h.clock.advance(59_999);
    expect(h.emitted).toEqual([["a"]]);
    await h.clock.advance(2);
    expect(h.emitted).toEqual([["a"], []]);
  });

  it("hands on nothing, and sets no timer, while the store has no complete view", async () => {
    const h = harness();
    h.set = undefined;
    h.emitter.emit();
    h.emitter.schedule();
    await settle();
    expect(h.reads).toHaveLength(2);
    expect(h.emitted).toEqual([]);
    expect(h.clock.pending()).toBe(0);
  });

  it("reports a read that throws, and goes on with the next one", () => {
    const h = harness();
    const failing = new LeaseSetEmitter({
      clock: h.clock,
      read: () => {
        throw new Error("EIO");
      },
      onChange: () => h.emitted.push(["?"]),
      onError: (err) => h.errors.push(err),
    });
    failing.emit();
    expect(h.errors.map((e) => e.message)).toEqual(["EIO"]);
    expect(h.emitted).toEqual([]);
  });

  it("once stopped, reads nothing, hands on nothing, reports nothing and leaves no timer", async () => {
    const h = harness();
    h.set = [lease("a", NOW + 10_000)];
    h.emitter.emit();
    h.emitter.schedule();
    h.emitter.stop();
    h.emitter.fail(new Error("torn down"));
    h.emitter.emit();
    await settle();
    expect(h.reads).toHaveLength(1);
    expect(h.errors).toEqual([]);
    expect(h.clock.pending()).toBe(0);
    expect(h.emitter.active).toBe(false);
  });

  it("takes a store's own change count instead of comparing the leases", () => {
    const clock = new FakeClock(NOW);
    let version = 0;
    let seen: number | null = null;
    const emitted: number[] = [];
    const e = new LeaseSetEmitter({
      clock,
      read: () => [lease("a")],
      onChange: () => emitted.push(version),
      onError: () => {},
      changed: () => {
        if (seen === version) return false;
        seen = version;
        return true;
      },
    });
    e.emit();
    e.emit();
    version++;
    e.emit();
    expect(emitted).toEqual([0, 1]);
  });
});

describe("WatchRegistry", () => {
  it("stops every watch still running, each once", () => {
    const r = new WatchRegistry();
    const torn: string[] = [];
    const stopA = r.add(() => torn.push("a"));
    r.add(() => torn.push("b"));
    stopA();
    stopA();
    r.stopAll();
    r.stopAll();
    expect(torn).toEqual(["a", "b"]);
  });
});
