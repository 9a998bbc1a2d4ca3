import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { vtepName } from "../../shared/kernel/vxlan.js";
import { until } from "../../testkit/until.js";
import { entriesFor } from "./checks.js";
import { failures, podAddress, podsToNodes, reachability } from "./matrix.js";
import { inNetns } from "../../testkit/netns.js";
import { Testbed, type TestbedOptions, type TestNode } from "./testbed.js";
import { ping } from "./traffic.js";

// The same cluster with the real agent: dist/bin/twilld in every node namespace, one shared
// local datastore, the real twill plugin for pods.

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});

async function cluster(o: TestbedOptions, podsPerNode = 2): Promise<Testbed> {
  tb = await Testbed.create({ agent: "twilld", ...o });
  await tb.startAgents();
  for (const n of tb.nodes) for (let i = 0; i < podsPerNode; i++) await tb.addPod(n);
  return tb;
}

describe("twilld: 3 nodes x 2 pods", () => {
  it.each(["vxlan", "auto"] as const)("%s across a router: every pod reaches every pod and node", async (backend) => {
    const t = await cluster({ backend, remoteNodes: [3] });
    expect(failures(await reachability(t.pods))).toEqual([]);
    expect(await podsToNodes(t.pods, t.nodes)).toEqual([]);
  });

  it("host-gw across a router: the agent reports the non-adjacent peer, same-segment pairs work", async () => {
    const t = await cluster({ backend: "host-gw", remoteNodes: [3] });
    const reasons = t.twilld!.logged(t.node("node-1"), "Peer unreachable").map((l) => l.reason);
    const why = "peer node-3 192.168.88.13 is not on the same L2 segment as eth0 (192.168.77.0/24): host-gw needs L2-adjacent nodes; use vxlan or auto";
    expect(reasons).toContain(why);
    // And an operator sees it where they look first.
    const status = await t.twilld!.status(t.node("node-1"));
    expect(status).toMatch(/^node-2 .* ok +\S+$/m);
    expect(status).toMatch(/^node-3 .* UNREACHABLE +\S+$/m);
    expect(status).toContain(`Unreachable:  node-3: ${why}`);
    // The local datastore has no API to read NetworkPolicies from: said once, in the log and here.
    expect(status).toContain("NetworkPolicy: not enforced: the local datastore has no API to read NetworkPolicies from");
    expect(t.twilld!.logged(t.node("node-1"), "NetworkPolicy is not enforced")).toHaveLength(1);
    expect(failures(await reachability(t.pods.filter((p) => p.node.segment === "a")))).toEqual([]);
  });
});

describe("twilld: peers leaving, agents restarting (vxlan)", () => {
  it("a node that leaves is gone from every peer's routes, FDB and neighbors within 10 s", async () => {
    const t = await cluster({ backend: "vxlan" }, 0);
    const [n1, n2, n3] = t.nodes as [TestNode, TestNode, TestNode];
    await until("node-1 programs node-3", async () => (await entriesFor(n1, n3)).length === 3, 10_000);
    await t.leave(n3);
    for (const n of [n1, n2]) {
      await until(`${n.name} forgets node-3`, async () => (await entriesFor(n, n3)).length === 0, 10_000);
    }
    expect(await entriesFor(n1, n2)).toHaveLength(3);
  });

  it("entries of a peer that left while the agent was stopped are pruned when it starts", async () => {
    const t = await cluster({ backend: "vxlan" }, 0);
    const [n1, , n3] = t.nodes as [TestNode, TestNode, TestNode];
    await until("node-1 programs node-3", async () => (await entriesFor(n1, n3)).length === 3, 10_000);
    await t.stopAgent(n1);
    await t.leave(n3);
    await sleep(1_000);
    expect(await entriesFor(n1, n3)).toHaveLength(3);
    await t.startAgents([n1]);
    await until("node-1 prunes node-3 at start-up", async () => (await entriesFor(n1, n3)).length === 0, 10_000);
  });

  it("restarting both agents while their pods ping each other loses no reply", async () => {
    const t = await cluster({ backend: "vxlan", nodes: 2 }, 1);
    const [a, b] = t.pods;
    const run = inNetns(a!.ns, ["ping", "-n", "-q", "-i", "0.05", "-c", "100", "-W", "1", podAddress(b!)]);
    await sleep(300);
    for (const n of t.nodes) {
      await t.stopAgent(n);
      await t.startAgents([n]);
    }
    const r = await run;
    expect(String(r.stdout)).toMatch(/100 packets transmitted, 100 received/);
  });

  it("a VTEP deleted under a running agent is recreated with its MAC; traffic resumes", async () => {
    const t = await cluster({ backend: "vxlan", nodes: 2 }, 1);
    const [a, b] = t.pods as [NonNullable<(typeof t.pods)[0]>, NonNullable<(typeof t.pods)[0]>];
    const n2 = t.nodes[1]!;
    const before = await t.ip(n2).link(vtepName(1));
    expect((await ping(a.ns, podAddress(b))).ok).toBe(true);
    await t.ip(n2).exec(["link", "del", vtepName(1)], "delete the VTEP");
    expect((await ping(a.ns, podAddress(b))).ok).toBe(false);
    // The resync (10 s) puts it back.
    await until("traffic resumes", async () => (await ping(a.ns, podAddress(b), { timeoutS: 1 })).ok, 30_000);
    const after = await t.ip(n2).link(vtepName(1));
    expect(after?.address).toBe(before?.address);
    expect(after?.ifindex).not.toBe(before?.ifindex);
    expect(await entriesFor(n2, t.nodes[0]!)).toHaveLength(3);
  });
});
