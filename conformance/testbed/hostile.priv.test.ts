import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { subnetFileName } from "../../agent/datastore/local-claims.js";
import { stableVtepMac, vtepName } from "../../shared/kernel/vxlan.js";
import { listFdb, listOwnedRoutes } from "../../testkit/iproute.js";
import { inNetns } from "../../testkit/netns.js";
import { until } from "../../testkit/until.js";
import { failures, reachability } from "./matrix.js";
import { Testbed, type TestNode } from "./testbed.js";

// Hostile and broken peer records on a live 3-node cluster of real twilld agents (local
// datastore): each is refused for itself alone, every real peer stays programmed and reachable,
// route repair keeps working, and nothing of the underlay is touched.

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});

/** Writes a peer into the shared local datastore the way a (rogue) agent would: a claim per subnet, then its record. */
function forgePeer(t: Testbed, name: string, record: Record<string, unknown>, subnets: string[]): void {
  const dir = t.twilld!.storeDir;
  mkdirSync(join(dir, "subnets"), { recursive: true });
  mkdirSync(join(dir, "nodes"), { recursive: true });
  const expiresAt = Date.now() + 3_600_000;
  for (const s of subnets) writeFileSync(join(dir, "subnets", subnetFileName(s)), JSON.stringify({ nodeName: name, expiresAt }));
  writeFileSync(join(dir, "nodes", `${name}.json`), JSON.stringify({ nodeName: name, subnets, expiresAt, acquiredAt: 0, ...record }));
}

const connectedRoutes = async (n: TestNode): Promise<string[]> =>
  String((await inNetns(n.ns, ["ip", "-4", "route", "show", "proto", "kernel"])).stdout).trim().split("\n").sort();

describe.each(["vxlan", "host-gw"] as const)("%s: hostile peer records on a live cluster", (backend) => {
  it("each is refused for itself, named in twilld status; every real peer stays programmed, reachable and repaired", async () => {
    const t = (tb = await Testbed.create({ agent: "twilld", backend, resyncMs: 1_000 }));
    await t.startAgents();
    for (const n of t.nodes) await t.addPod(n);
    const [n1, n2, n3] = t.nodes as [TestNode, TestNode, TestNode];
    const underlayBefore = await connectedRoutes(n1);
    const realSubnets = [n2, n3].flatMap((n) => n.subnets).sort();
    await until("node-1 routes both peers", async () => (await listOwnedRoutes(t.ip(n1))).length === 2, 15_000);

    const backendData = (name: string) => ({ type: backend, vni: 1, port: 4789, underlayMTU: 1500, ...(backend === "vxlan" ? { vtepMAC: stableVtepMac(name, 1) } : {}) });
    // Garbage backend data (a VTEP MAC that is a number), a subnet over the underlay's own
    // prefix, and a VTEP MAC that is node-2's (its FDB key) on an address of the attacker's.
    forgePeer(t, "garbage", { publicIP: "192.168.77.201", backend: { ...backendData("garbage"), vtepMAC: 5 } }, ["10.244.200.0/24"]);
    forgePeer(t, "underlay", { publicIP: "192.168.77.202", backend: backendData("underlay") }, ["192.168.77.0/24"]);
    forgePeer(t, "stolen-mac", { publicIP: "192.168.77.203", backend: { ...backendData("stolen-mac"), type: "vxlan", vtepMAC: stableVtepMac("node-2", 1) } }, ["10.244.201.0/24"]);

    const statusOf = (n: TestNode) => t.twilld!.status(n);
    for (const n of t.nodes) {
      await until(`${n.name} names the three refused records`, async () => (await statusOf(n)).match(/^Warning: +refused peer record/gm)?.length === 3, 15_000);
    }
    const status = await statusOf(n1);
    expect(status).toMatch(/refused peer record garbage: VTEP MAC 5 is not a MAC address; not routed/);
    expect(status).toMatch(/refused peer record underlay: subnet 192\.168\.77\.0\/24 lies outside the cluster CIDR 10\.244\.0\.0\/16; not routed/);
    expect(status).toMatch(/refused peer record stolen-mac: VTEP MAC \S+ is not the one of node stolen-mac on VNI 1/);
    expect(status).toMatch(/^node-2 .* ok +\S+$/m);
    expect(t.twilld!.logged(n1, "Refused peer record; not routed").map((l) => l.peer).sort()).toEqual(["garbage", "stolen-mac", "underlay"]);
    expect(t.twilld!.logged(n1, "Reconciling the datapath failed")).toEqual([]);

    // A route to a real peer deleted by hand comes back on the next resync.
    await inNetns(n1.ns, ["ip", "route", "del", n2.subnets[0]!]);
    await until("node-1's route to node-2 repaired", async () => (await listOwnedRoutes(t.ip(n1))).some((r) => r.dst === n2.subnets[0]), 15_000);

    for (const n of t.nodes) {
      const routes = (await listOwnedRoutes(t.ip(n))).map((r) => r.dst).sort();
      expect(routes).toEqual(t.nodes.filter((o) => o !== n).flatMap((o) => o.subnets).sort());
    }
    expect((await listOwnedRoutes(t.ip(n1))).map((r) => r.dst).sort()).toEqual(realSubnets);
    expect(await connectedRoutes(n1)).toEqual(underlayBefore);
    if (backend === "vxlan") {
      const fdb = await listFdb(t.ip(n1), vtepName(1));
      expect(fdb.filter((f) => f.mac === stableVtepMac("node-2", 1)).map((f) => f.dst)).toEqual([n2.ip]);
    }
    expect(failures(await reachability(t.pods))).toEqual([]);
  });
});
