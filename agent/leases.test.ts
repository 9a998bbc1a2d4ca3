import { describe, expect, it } from "vitest";
import { checkNodeName, claimAge, decodeLease, diffLeases, isEmptyDiff, leaseSetFilter, peersOf, sameLeaseSet } from "./leases.js";
import type { NodeLease } from "./types.js";

const lease = (name: string, subnet: string, mac = "aa:bb:cc:00:00:01", expiresAt = 1000): NodeLease => ({
  nodeName: name,
  subnets: [subnet],
  publicIP: "192.0.2.1",
  backend: { type: "vxlan", vtepMAC: mac, vni: 1 },
  expiresAt,
});

describe("diffLeases", () => {
  const a = lease("a", "10.244.1.0/24");
  const b = lease("b", "10.244.2.0/24");

  it("reports added, removed and changed nodes", () => {
    const bNewMac = lease("b", "10.244.2.0/24", "aa:bb:cc:00:00:02");
    const c = lease("c", "10.244.3.0/24");
    const d = diffLeases([a, b], [bNewMac, c]);
    expect(d.added.map((l) => l.nodeName)).toEqual(["c"]);
    expect(d.removed.map((l) => l.nodeName)).toEqual(["a"]);
    expect(d.changed).toEqual([bNewMac]);
  });

  it("sees no change in a renewal that only moves the expiry", () => {
    expect(isEmptyDiff(diffLeases([a, b], [lease("a", "10.244.1.0/24", undefined, 9999), b]))).toBe(true);
    expect(sameLeaseSet([a, b], [b, lease("a", "10.244.1.0/24", undefined, 5)])).toBe(true);
  });

  it("passes a lease set on only when it changed", () => {
    const changed = leaseSetFilter();
    const bNewMac = lease("b", "10.244.2.0/24", "aa:bb:cc:00:00:02");
    expect([changed([a, b]), changed([b, a]), changed([a]), changed([a, bNewMac]), changed([a, { ...bNewMac }])]).toEqual([true, false, true, true, false]);
  });

  it("sees a changed subnet", () => {
    expect(diffLeases([a], [lease("a", "10.244.9.0/24")]).changed).toHaveLength(1);
  });

  it("ignores the order of backend fields", () => {
    const reordered: NodeLease = { ...a, backend: { vni: 1, vtepMAC: "aa:bb:cc:00:00:01", type: "vxlan" } };
    expect(isEmptyDiff(diffLeases([a], [reordered]))).toBe(true);
  });
});

describe("peersOf", () => {
  it("leaves out the node itself and orders by name", () => {
    const all = [lease("c", "10.0.3.0/24"), lease("self", "10.0.1.0/24"), lease("b", "10.0.2.0/24")];
    expect(peersOf(all, "self").map((l) => l.nodeName)).toEqual(["b", "c"]);
  });
});

describe("decodeLease", () => {
  it("keeps a valid record and drops a foreign one", () => {
    const a = lease("a", "10.0.1.0/24");
    expect(decodeLease(JSON.parse(JSON.stringify(a)))).toEqual(a);
    expect(decodeLease({ nodeName: "a", subnets: "10.0.1.0/24" })).toBeNull();
    expect(decodeLease(null)).toBeNull();
    expect(decodeLease({ ...a, backend: {} })).toBeNull();
  });
});

describe("checkNodeName", () => {
  it("accepts DNS subdomains and refuses what would escape a path or key", () => {
    expect(checkNodeName("node-1.example")).toBe("node-1.example");
    expect(() => checkNodeName("../etc")).toThrow(/not a valid DNS subdomain/);
    expect(() => checkNodeName("Node")).toThrow(/not a valid/);
    expect(() => checkNodeName("")).toThrow(/not a valid/);
  });
});

describe("claimAge", () => {
  const prev = { ...lease("a", "10.244.1.0/24"), acquiredAt: 500 };

  it("keeps the start of a claim on the same subnets, and restarts it otherwise", () => {
    expect(claimAge(prev, ["10.244.1.0/24"], 2000)).toEqual({ acquiredAt: 500, kept: true });
    expect(claimAge(prev, ["10.244.9.0/24"], 2000)).toEqual({ acquiredAt: 2000, kept: false });
    expect(claimAge(null, ["10.244.1.0/24"], 2000)).toEqual({ acquiredAt: 2000, kept: false });
    expect(claimAge({ ...prev, acquiredAt: undefined }, ["10.244.1.0/24"], 2000)).toEqual({ acquiredAt: 2000, kept: true });
  });
});
