import { describe, expect, it } from "vitest";
import { buildStatus, renderStatus } from "./status.js";
import type { NodeLease } from "./types.js";

const NOW = 1_700_000_000_000;
const lease = (name: string, subnet: string, ip: string, ageMs: number, mac?: string): NodeLease => ({
  nodeName: name,
  subnets: [subnet],
  publicIP: ip,
  backend: { type: "vxlan", vni: 1, ...(mac ? { vtepMAC: mac } : {}) },
  acquiredAt: NOW - ageMs,
  expiresAt: NOW + 3_600_000,
});
const info = (subnet: string) => ({ clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: [subnet], mtu: 1450, backend: "vxlan", ipMasq: true });

describe("renderStatus", () => {
  it("shows the node's lease, its subnet file and a table of peers", () => {
    const leases = [
      lease("node-b", "10.244.2.0/24", "192.0.2.12", 3_723_000, "02:00:00:00:00:0b"),
      lease("node-a", "10.244.1.0/24", "192.0.2.11", 90_000),
      lease("node-long-name", "10.244.3.0/24", "192.0.2.13", 5_000),
    ];
    const r = buildStatus("node-a", { path: "/run/twill/subnet.json", info: info("10.244.1.0/24") }, leases);
    expect(r.warnings).toEqual([]);
    expect(renderStatus(r, NOW)).toBe(
      [
        "Node:         node-a",
        "Lease:        10.244.1.0/24 on 192.0.2.11 (vxlan vni 1, expires in 1h)",
        "Subnet file:  /run/twill/subnet.json: 10.244.1.0/24, MTU 1450, backend vxlan, masquerade on",
        "",
        "Peers (2):",
        "NAME            PUBLIC IP   SUBNETS        BACKEND                             DATAPATH  AGE",
        "node-b          192.0.2.12  10.244.2.0/24  vxlan vtep 02:00:00:00:00:0b vni 1  -         1h2m",
        "node-long-name  192.0.2.13  10.244.3.0/24  vxlan vni 1                         -         5s",
        "",
      ].join("\n"),
    );
  });

  it("marks the peers the agent's last reconcile could not reach, and says why", () => {
    const leases = [
      lease("node-a", "10.244.1.0/24", "192.0.2.11", 90_000),
      lease("node-b", "10.244.2.0/24", "192.0.2.12", 60_000),
      lease("node-c", "10.244.3.0/24", "198.51.100.7", 60_000),
    ];
    const why = "peer node-c 198.51.100.7 is not on the same L2 segment as eth0 (192.0.2.0/24): host-gw needs L2-adjacent nodes";
    const datapath = { backend: "host-gw", at: NOW, changes: 0, errors: [{ peer: "node-c", message: why }] };
    const text = renderStatus(buildStatus("node-a", { path: "/f", info: info("10.244.1.0/24") }, leases, undefined, datapath), NOW);
    expect(text).toMatch(/^node-b .* ok +1m$/m);
    expect(text).toMatch(/^node-c .* UNREACHABLE +1m$/m);
    expect(text).toContain(`Unreachable:  node-c: ${why}`);
    const failed = buildStatus("node-a", { path: "/f", info: info("10.244.1.0/24") }, leases, undefined, { ...datapath, errors: [], failed: "RTNETLINK answers: Operation not permitted" });
    expect(failed.warnings).toEqual(["the last datapath reconcile failed: RTNETLINK answers: Operation not permitted"]);
  });

  it("names each peer record the agent refused, with the reason, and marks it in the table", () => {
    const leases = [
      lease("node-a", "10.244.1.0/24", "192.0.2.11", 90_000),
      lease("node-b", "10.244.2.0/24", "192.0.2.12", 60_000),
      lease("forged", "192.0.2.0/24", "192.0.2.66", 60_000),
    ];
    const why = "subnet 192.0.2.0/24 lies outside the cluster CIDR 10.244.0.0/16";
    const datapath = { backend: "vxlan", at: NOW, changes: 0, errors: [], refused: [{ peer: "forged", message: why }] };
    const r = buildStatus("node-a", { path: "/f", info: info("10.244.1.0/24") }, leases, undefined, datapath);
    expect(r.warnings).toEqual([`refused peer record forged: ${why}; not routed`]);
    const text = renderStatus(r, NOW);
    expect(text).toMatch(/^forged .* REFUSED +1m$/m);
    expect(text).toMatch(/^node-b .* ok +1m$/m);
  });

  it("says when leak recovery refuses to release anything, and why", () => {
    const leases = [lease("node-a", "10.244.1.0/24", "192.0.2.11", 90_000)];
    const r = buildStatus("node-a", { path: "/f", info: info("10.244.1.0/24") }, leases);
    const leaks = { at: NOW - 20_000, since: NOW - 7_200_000, state: "refused" as const, reason: 'no Node named "my-host" in the API', reservations: 4, suspects: 0, skipped: [] };
    const text = renderStatus({ ...r, leaks }, NOW);
    expect(text).toContain("Leak recovery: REFUSING to release anything (4 reservations, 0 suspected; last sweep 20s ago)");
    expect(text).toContain('  why: no Node named "my-host" in the API (for 2h)');
  });

  it("warns when the subnet file disagrees with the lease, and when there is no lease", () => {
    const r = buildStatus("node-a", { path: "/f", info: info("10.244.9.0/24") }, [lease("node-a", "10.244.1.0/24", "192.0.2.11", 0)]);
    expect(renderStatus(r, NOW)).toMatch(/Warning: +subnet file lists 10.244.9.0\/24 but the lease holds 10.244.1.0\/24/);
    const none = buildStatus("node-z", { path: "/f", info: null, error: "node subnet file /f does not exist" }, []);
    const text = renderStatus(none, NOW);
    expect(text).toMatch(/Lease: +none/);
    expect(text).toMatch(/Subnet file: +\/f: node subnet file \/f does not exist/);
    expect(text).toMatch(/node "node-z" holds no lease/);
    expect(text).toMatch(/Peers: none/);
  });

  it("says the datastore is unreachable instead of claiming there are no peers or no lease", () => {
    const r = buildStatus("node-a", { path: "/f", info: null }, [], "no etcd endpoint reachable");
    const text = renderStatus(r, NOW);
    expect(text).toMatch(/Datastore: +unreachable: no etcd endpoint reachable/);
    expect(text).toMatch(/Peers: unknown/);
    // Not "none": the agent still holds its subnet while the datastore is away.
    expect(text).toMatch(/Lease: +unknown while the datastore is unreachable/);
    expect(text).not.toMatch(/Lease: +none/);
    expect(r.warnings).toEqual([]);
  });
});
