import { describe, expect, it } from "vitest";
import type { NodeLease } from "../types.js";
import { LeaseView, mayBeSettling, stampDecisive, SETTLE_MS, type Claim, type Unreadable } from "./local-view.js";
import { lapseDelay } from "./watch-emitter.js";

const NOW = 1_800_000_000_000;
const record = (node: string, subnets: string[], extra: Partial<NodeLease> = {}): NodeLease => ({
  nodeName: node,
  subnets,
  publicIP: "192.0.2.1",
  backend: { type: "host-gw" },
  expiresAt: NOW + 60_000,
  ...extra,
});
const claim = (node: string): Claim => ({ nodeName: node, expiresAt: NOW + 60_000 });
const torn = (settling: boolean): Unreadable => ({ error: "empty", settling });
const names = (v: LeaseView) => v.leases().map((l) => l.nodeName).sort();

describe("the local store's view of its files", () => {
  it("makes a peer's lease from its record and its claim, whichever comes first", () => {
    const claimFirst = new LeaseView();
    claimFirst.setClaim("10.0.1.0/24", claim("a"));
    expect(claimFirst.refresh(NOW)).toBe(false);
    claimFirst.setRecord("a", record("a", ["10.0.1.0/24"]));
    expect(claimFirst.refresh(NOW)).toBe(true);
    expect(names(claimFirst)).toEqual(["a"]);

    const recordFirst = new LeaseView();
    recordFirst.setRecord("a", record("a", ["10.0.1.0/24"]));
    expect(recordFirst.refresh(NOW)).toBe(false);
    expect(names(recordFirst)).toEqual([]);
    recordFirst.setClaim("10.0.1.0/24", claim("a"));
    expect(recordFirst.refresh(NOW)).toBe(true);
    expect(names(recordFirst)).toEqual(["a"]);
  });

  it("limits a lease to the subnets whose claims name its node; an unreadable claim disproves nothing", () => {
    const v = new LeaseView();
    v.setRecord("a", record("a", ["10.0.1.0/24", "10.0.2.0/24"]));
    v.setClaim("10.0.1.0/24", claim("a"));
    v.setClaim("10.0.2.0/24", claim("b"));
    v.refresh(NOW);
    expect(v.leases().map((l) => l.subnets)).toEqual([["10.0.1.0/24"]]);
    const partial = v.leases()[0];
    // Nothing the lease depends on changed: the same object.
    v.setClaim("10.0.3.0/24", claim("c"));
    expect(v.refresh(NOW)).toBe(false);
    expect(v.leases()[0]).toBe(partial);
    v.setClaim("10.0.2.0/24", torn(false));
    expect(v.refresh(NOW)).toBe(true);
    expect(v.leases().map((l) => l.subnets)).toEqual([["10.0.1.0/24", "10.0.2.0/24"]]);
  });

  it("computes again only the leases of the nodes a file concerns", () => {
    const v = new LeaseView();
    const a = record("a", ["10.0.1.0/24"]);
    v.setRecord("a", a);
    v.setClaim("10.0.1.0/24", claim("a"));
    v.setRecord("b", record("b", ["10.0.2.0/24"]));
    v.setClaim("10.0.2.0/24", claim("b"));
    v.refresh(NOW);
    const version = v.version;
    // b's claim now names c: only b loses its lease; a keeps the very same object.
    v.setClaim("10.0.2.0/24", claim("c"));
    expect(v.refresh(NOW)).toBe(true);
    expect(names(v)).toEqual(["a"]);
    expect(v.leases()[0]).toBe(a);
    expect(v.version).toBe(version + 1);
  });

  it("takes a renewal (only the expiry moved) for no change, and a new address for one", () => {
    const v = new LeaseView();
    v.setClaim("10.0.1.0/24", claim("a"));
    v.setRecord("a", record("a", ["10.0.1.0/24"]));
    v.refresh(NOW);
    const renewed = record("a", ["10.0.1.0/24"], { expiresAt: NOW + 120_000 });
    v.setRecord("a", renewed);
    expect(v.refresh(NOW)).toBe(false);
    expect(v.leases()[0]).toBe(renewed);
    // The lapse timer follows the renewed expiry.
    expect(lapseDelay(v.leases(), NOW)).toBe(120_001);
    v.setRecord("a", record("a", ["10.0.1.0/24"], { publicIP: "192.0.2.2" }));
    expect(v.refresh(NOW)).toBe(true);
  });

  it("drops a lease once its record lapses", () => {
    const v = new LeaseView();
    v.setClaim("10.0.1.0/24", claim("a"));
    v.setRecord("a", record("a", ["10.0.1.0/24"]));
    v.refresh(NOW);
    expect(v.refresh(NOW + 60_000, true)).toBe(true);
    expect(names(v)).toEqual([]);
  });

  it("keeps an unreadable record's last good lease; reports it damaged unless it is a write in progress", () => {
    const v = new LeaseView();
    v.setClaim("10.0.1.0/24", claim("a"));
    v.setRecord("a", record("a", ["10.0.1.0/24"]));
    v.refresh(NOW);
    v.setRecord("a", torn(true));
    expect(v.refresh(NOW)).toBe(false);
    expect(names(v)).toEqual(["a"]);
    expect(v.damaged()).toEqual([]);
    expect(v.settling()).toEqual({ claims: [], nodes: ["a"] });
    v.setRecord("a", torn(false));
    expect(v.damaged()).toEqual([{ kind: "node", name: "a", reason: "empty" }]);
    expect(v.settling()).toEqual({ claims: [], nodes: [] });
    v.setRecord("a", null);
    expect(v.refresh(NOW)).toBe(true);
    expect(names(v)).toEqual([]);
    expect(v.damaged()).toEqual([]);
  });

  it("calls a file that does not decode a write in progress only while it was modified lately", () => {
    expect(mayBeSettling(NOW - 1, NOW)).toBe(true);
    expect(mayBeSettling(NOW - SETTLE_MS - 1, NOW)).toBe(false);
  });

  it("trusts an unchanged stamp only when a later write could not have kept it", () => {
    // Changed long before the read: any later write carries later times.
    expect(stampDecisive(NOW - 10_000.25, NOW)).toBe(true);
    // Changed within the read's clock tick: a same-size rewrite in place keeps inode, size and times.
    expect(stampDecisive(NOW - 1.5, NOW)).toBe(false);
    // Whole-second times: a rewrite within the same second keeps them.
    expect(stampDecisive(NOW - 1_000, NOW)).toBe(false);
    expect(stampDecisive(NOW - 5_000, NOW)).toBe(true);
  });
});
