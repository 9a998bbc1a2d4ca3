import { describe, expect, it } from "vitest";
import { buildNodes, renderNodes } from "./nodes.js";
import type { NodeLease } from "./types.js";

const NOW = 10_000_000;
const lease = (nodeName: string, publicIP: string, subnet: string): NodeLease => ({
  nodeName,
  publicIP,
  subnets: [subnet],
  backend: { type: "host-gw" },
  acquiredAt: NOW - 90_000,
});
const leases = [lease("b", "10.1.2.3", "10.244.2.0/24"), lease("a", "192.168.1.2", "10.244.1.0/24"), lease("c", "192.168.1.4", "10.244.3.0/24")];

describe("twilld nodes", () => {
  it("lists every node, this one marked, and which peers the last reconcile could not reach and why", () => {
    const report = buildNodes("a", leases, { backend: "host-gw", at: NOW, changes: 0, errors: [{ peer: "b", message: "not on the same L2 segment" }] });
    expect(report.nodes.map((n) => [n.name, n.reach])).toEqual([["a", "self"], ["b", "no"], ["c", "yes"]]);
    const text = renderNodes(report, NOW);
    expect(text).toMatch(/^NAME\s+SUBNETS\s+PUBLIC IP\s+BACKEND\s+AGE\s+REACHABLE$/m);
    expect(text).toMatch(/^b\s+10\.244\.2\.0\/24\s+10\.1\.2\.3\s+host-gw\s+1m30s\s+no$/m);
    expect(text).toMatch(/^Unreachable: b: not on the same L2 segment$/m);
  });

  it("says reachability is unknown without a datapath report, and names an unreachable datastore", () => {
    expect(buildNodes("a", leases, null).nodes.map((n) => n.reach)).toEqual(["self", "unknown", "unknown"]);
    expect(renderNodes(buildNodes("a", [], null, "connection refused"), NOW)).toBe("Datastore unreachable: connection refused\n");
  });

  it("marks a peer whose record the agent refused as not reached, with the reason", () => {
    const report = buildNodes("a", leases, { backend: "host-gw", at: NOW, changes: 0, errors: [], refused: [{ peer: "c", message: "subnet 10.244.3.0/24 is claimed by this node" }] });
    expect(report.nodes.map((n) => [n.name, n.reach, n.why])).toEqual([["a", "self", undefined], ["b", "yes", undefined], ["c", "no", "record refused: subnet 10.244.3.0/24 is claimed by this node"]]);
  });
});
