import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { listFdb, listPermanentNeighbors } from "../../shared/kernel/neigh.js";
import { listOwnedRoutes } from "../../shared/kernel/routes.js";
import { stableVtepMac, vtepName } from "../../shared/kernel/vxlan.js";
import { readSubnetFile } from "../../shared/subnet-file.js";
import { failures, podAddress, podsToNodes, reachability } from "./matrix.js";
import type { PluginKind } from "./pods.js";
import { Testbed, type TestbedOptions, type TestNode } from "./testbed.js";
import { inNetns } from "./netns.js";
import { netCounter, ping } from "./traffic.js";

// The CNI plugin the pods are attached with; `bridge` runs the same checks on the reference.
const plugin = (process.env.TWILL_TESTBED_PLUGIN ?? "twill") as PluginKind;

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});

async function cluster(o: TestbedOptions, podsPerNode = 2): Promise<Testbed> {
  tb = await Testbed.create({ plugin, ...o });
  await tb.startAgents();
  for (const n of tb.nodes) for (let i = 0; i < podsPerNode; i++) await tb.addPod(n);
  return tb;
}

/** What a node still holds that leads to `peer`: routes to its subnets, its FDB entry and neighbors. */
async function entriesFor(t: Testbed, on: TestNode, peer: TestNode): Promise<string[]> {
  const ip = t.ip(on);
  const dev = vtepName(1);
  const mac = stableVtepMac(peer.name, 1);
  const [routes, fdb, neigh] = await Promise.all([listOwnedRoutes(ip), listFdb(ip, dev), listPermanentNeighbors(ip, dev)]);
  const vtepIps = peer.subnets.map((s) => s.split("/")[0]);
  return [
    ...routes.filter((r) => peer.subnets.includes(r.dst)).map((r) => `route ${r.dst} via ${r.via}`),
    ...fdb.filter((f) => f.mac === mac).map((f) => `fdb ${f.mac} dst ${f.dst}`),
    ...neigh.filter((n) => vtepIps.includes(n.ip)).map((n) => `neigh ${n.ip} ${n.mac}`),
  ];
}

async function until(what: string, probe: () => Promise<boolean>, deadlineMs: number): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`${what}: not after ${deadlineMs} ms`);
    await sleep(200);
  }
}

describe.each(["vxlan", "host-gw", "auto"] as const)("%s: 3 nodes x 2 pods on one segment", (backend) => {
  it("every pod reaches every other pod (ping and TCP) and every node", async () => {
    const t = await cluster({ backend });
    const results = await reachability(t.pods);
    expect(results).toHaveLength(30);
    expect(failures(results)).toEqual([]);
    expect(await podsToNodes(t.pods, t.nodes)).toEqual([]);
    for (const n of t.nodes) expect(t.agents.report(n.name)).toMatchObject({ error: null, report: { errors: [] } });
  });
});

describe("nodes split by a router (node-3 on another L3 segment)", () => {
  it("vxlan carries every pair across the router", async () => {
    const t = await cluster({ backend: "vxlan", remoteNodes: [3] });
    expect(failures(await reachability(t.pods))).toEqual([]);
  });

  it("host-gw reports the non-adjacent peer and still carries same-segment pairs", async () => {
    const t = await cluster({ backend: "host-gw", remoteNodes: [3] });
    const report = t.agents.report("node-1").report;
    expect(report?.errors).toEqual([
      {
        peer: "node-3",
        message:
          "peer node-3 192.168.88.13 is not on the same L2 segment as eth0 (192.168.77.0/24): host-gw needs L2-adjacent nodes; use vxlan or auto",
      },
    ]);
    expect(t.agents.report("node-3").report?.errors.map((e) => e.peer)).toEqual(["node-1", "node-2"]);
    const sameSegment = t.pods.filter((p) => p.node.segment === "a");
    expect(failures(await reachability(sameSegment))).toEqual([]);
    // No route was installed towards node-3 (none could work): nothing points into the void.
    const routes = await listOwnedRoutes(t.ip(t.node("node-1")));
    expect(routes.map((r) => r.dst).sort()).toEqual(["10.244.2.0/24"]);
  });

  it("auto takes host-gw on the segment and vxlan across the router", async () => {
    const t = await cluster({ backend: "auto", remoteNodes: [3] });
    expect(failures(await reachability(t.pods))).toEqual([]);
    const routes = await listOwnedRoutes(t.ip(t.node("node-1")));
    expect(routes.map((r) => `${r.dst} ${r.dev}`).sort()).toEqual(["10.244.2.0/24 eth0", "10.244.3.0/24 twill.1"]);
  });
});

describe("vxlan MTU", () => {
  it("a DF ping of pod MTU - 28 crosses unfragmented, one byte more is refused", async () => {
    const t = await cluster({ backend: "vxlan" }, 1);
    const mtu = readSubnetFile(t.nodes[0]!.subnetFile).mtu;
    expect(mtu).toBe(1500 - 50);
    const [a, b] = t.pods;
    const target = podAddress(b!);
    const fragsBefore = await Promise.all(t.nodes.map((n) => netCounter(n.ns, "IpFragCreates")));
    const fits = await ping(a!.ns, target, { size: mtu - 28, dontFragment: true, count: 3, intervalS: 0.2 });
    expect(fits.ok, fits.output).toBe(true);
    const over = await ping(a!.ns, target, { size: mtu - 27, dontFragment: true });
    expect(over.ok).toBe(false);
    expect(over.output).toMatch(/message too long|frag needed/i);
    const fragsAfter = await Promise.all(t.nodes.map((n) => netCounter(n.ns, "IpFragCreates")));
    expect(fragsAfter).toEqual(fragsBefore);
  });
});

describe("vxlan dual-stack", () => {
  it("carries IPv6 pod traffic over the IPv4 underlay", async () => {
    const t = await cluster({ backend: "vxlan", clusterCIDRv6: "fd00:10:244::/48" }, 1);
    const results = await reachability(t.pods, 6);
    expect(failures(results)).toEqual([]);
    expect(failures(await reachability(t.pods, 4))).toEqual([]);
  });
});

describe("peers leaving and agents restarting (vxlan)", () => {
  it("a node that leaves is removed from every peer: route, FDB and neighbor", async () => {
    const t = await cluster({ backend: "vxlan" }, 0);
    const [n1, n2, n3] = t.nodes as [TestNode, TestNode, TestNode];
    expect(await entriesFor(t, n1, n3)).toHaveLength(3);
    await t.agents.leave("node-3");
    // The lease-set change reaches the agents as an event; the 10 s resync is the backstop.
    for (const n of [n1, n2]) {
      await until(`${n.name} forgets node-3`, async () => (await entriesFor(t, n, n3)).length === 0, 10_000);
    }
    expect(await entriesFor(t, n1, n2)).toHaveLength(3);
  });

  it("stale entries of a peer that left while the agent was down are pruned at start-up", async () => {
    const t = await cluster({ backend: "vxlan" }, 0);
    const [n1, , n3] = t.nodes as [TestNode, TestNode, TestNode];
    t.agents.stop("node-1");
    await t.agents.leave("node-3");
    expect(await entriesFor(t, n1, n3)).toHaveLength(3);
    await t.startAgents([n1]);
    expect(await entriesFor(t, n1, n3)).toEqual([]);
  });

  it("restarting the agents while pods ping each other loses no reply", async () => {
    const t = await cluster({ backend: "vxlan", nodes: 2 }, 1);
    const [a, b] = t.pods;
    const run = inNetns(a!.ns, ["ping", "-n", "-q", "-i", "0.05", "-c", "80", "-W", "1", podAddress(b!)]);
    await sleep(500);
    for (const n of t.nodes) {
      t.agents.stop(n.name);
      await t.startAgents([n]);
    }
    const r = await run;
    expect(String(r.stdout)).toMatch(/80 packets transmitted, 80 received/);
  });

  it("a VTEP deleted under a running agent comes back with its MAC and traffic resumes", async () => {
    tb = await Testbed.create({ plugin, backend: "vxlan", nodes: 2, resyncMs: 2_000 });
    const t = tb;
    await t.startAgents();
    const [a, b] = [await t.addPod(t.nodes[0]!), await t.addPod(t.nodes[1]!)];
    const n2 = t.nodes[1]!;
    const before = await t.ip(n2).link(vtepName(1));
    expect((await ping(a.ns, podAddress(b))).ok).toBe(true);
    await t.ip(n2).exec(["link", "del", vtepName(1)], "delete the VTEP");
    expect((await ping(a.ns, podAddress(b))).ok).toBe(false);
    await until("traffic resumes", async () => (await ping(a.ns, podAddress(b), { timeoutS: 1 })).ok, 30_000);
    const after = await t.ip(n2).link(vtepName(1));
    expect(after?.address).toBe(before?.address);
    expect(after?.ifindex).not.toBe(before?.ifindex);
    expect(await entriesFor(t, n2, t.nodes[0]!)).toHaveLength(3);
  });
});
