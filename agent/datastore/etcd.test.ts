import { describe, expect, it } from "vitest";
import { leasesFromKvs } from "./etcd.js";
import type { KeyValue } from "./etcd-client.js";

const P = "/twill/";
const kv = (key: string, value: unknown): KeyValue => ({ key: P + key, value: typeof value === "string" ? value : JSON.stringify(value), createRevision: 1, modRevision: 1, lease: "0" });
const record = (name: string, subnets: string[]) => kv(`nodes/${name}`, { nodeName: name, subnets, publicIP: "192.168.0.1", backend: { type: "host-gw" } });
const claim = (subnet: string, owner: string) => kv(`subnets/${subnet.replace("/", "-")}`, { nodeName: owner });

describe("leasesFromKvs", () => {
  it("keeps each node's claimed subnets and drops a record whose subnets nobody claimed for it", () => {
    const kvs = [record("a", ["10.0.1.0/24", "10.0.2.0/24"]), claim("10.0.1.0/24", "a"), claim("10.0.2.0/24", "b"), record("c", ["10.0.3.0/24"])];
    const { leases } = leasesFromKvs(P, kvs);
    expect(leases.map((l) => [l.nodeName, l.subnets])).toEqual([["a", ["10.0.1.0/24"]]]);
  });

  it("hands out the same lease object for the same key-value, and a new one when it changes", () => {
    const a = record("a", ["10.0.1.0/24"]);
    const b = record("b", ["10.0.2.0/24"]);
    const claims = [claim("10.0.1.0/24", "a"), claim("10.0.2.0/24", "b")];
    const first = leasesFromKvs(P, [a, b, ...claims]).leases;
    const b2 = { ...record("b", ["10.0.2.0/24"]), value: JSON.stringify({ nodeName: "b", subnets: ["10.0.2.0/24"], publicIP: "192.168.0.9", backend: { type: "host-gw" } }) };
    const second = leasesFromKvs(P, [a, b2, ...claims]).leases;
    expect(second[0]).toBe(first[0]);
    expect(second[1]).not.toBe(first[1]);
    expect(second[1]!.publicIP).toBe("192.168.0.9");
  });

  it("keeps a node's last good record while its value does not decode", () => {
    const lastGood = new Map();
    const claims = [claim("10.0.1.0/24", "a")];
    const good = leasesFromKvs(P, [record("a", ["10.0.1.0/24"]), ...claims], lastGood).leases;
    const { leases, unreadable } = leasesFromKvs(P, [kv("nodes/a", "{torn"), ...claims], lastGood);
    expect(leases[0]).toBe(good[0]);
    expect(unreadable.map((u) => u.key)).toEqual([`${P}nodes/a`]);
  });
});
