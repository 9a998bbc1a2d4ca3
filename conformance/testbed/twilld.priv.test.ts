import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { FlowRecord } from "../../agent/flows/record.js";
import { httpGet } from "../../testkit/daemon.js";
import { DIST_BIN } from "../../testkit/pods.js";
import { afterEach, describe, expect, it } from "vitest";
import { vtepName } from "../../shared/kernel/vxlan.js";
import { until } from "../../testkit/until.js";
import { entriesFor } from "./checks.js";
import { failures, podAddress, podsToNodes, reachability } from "./matrix.js";
import { inNetns } from "../../testkit/netns.js";
import { Testbed, type TestbedOptions, type TestNode } from "./testbed.js";
import { ECHO_PORT, ping, tcpProbe } from "./traffic.js";

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

describe("twilld flows on the real agent (local datastore: no policy, pods named by the IPAM store)", () => {
  it("keeps flows for --flow-log and --flow-metrics, and `twilld flows` shows them", async () => {
    tb = await Testbed.create({ agent: "twilld", backend: "vxlan", nodes: 2 });
    const t = tb;
    const [n1, n2] = t.nodes as [TestNode, TestNode];
    const flowLog = join(n1.dir, "flows", "flows.jsonl");
    n1.args = [...(n1.args ?? []), "--flow-log", flowLog, "--flow-metrics"];
    await t.startAgents();
    const server = await t.addPod(n1, { named: true });
    const client = await t.addPod(n2, { named: true });
    const serverIp = podAddress(server);
    expect((await tcpProbe(client.ns, [serverIp]))[0]!.ok).toBe(true);
    const records = () => (existsSync(flowLog) ? readFileSync(flowLog, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as FlowRecord) : []);
    const mine = (r: FlowRecord) => r.destination.ip === serverIp && r.destination.port === ECHO_PORT;
    await until("the connection's start and end in the flow log", async () => records().filter(mine).some((r) => r.event === "end"), 10_000);
    const start = records().find((r) => mine(r) && r.event === "start")!;
    // node-1's pod by the name the runtime gave it; node-2's only by its address (node-1's
    // store does not know it); no policy here.
    expect(start).toMatchObject({ verdict: "allowed", direction: "ingress", pod: `default/${server.name}`, protocol: "TCP", source: { ip: podAddress(client), pod: null }, policies: [] });
    expect(statSync(flowLog).mode & 0o777).toBe(0o600);
    // The same flows from the agent, as an operator asks for them.
    const shown = await inNetns(n1.ns, [join(DIST_BIN, "twilld"), "flows", "--state-dir", n1.dir, "--pod", `default/${server.name}`]);
    expect(shown.exitCode, String(shown.stderr)).toBe(0);
    expect(String(shown.stdout)).toMatch(new RegExp(`start\\s+ingress\\s+${podAddress(client).replaceAll(".", "\\.")}:\\d+ -> default/${server.name} `));
    const metrics = await httpGet("http://127.0.0.1:9402/metrics", n1.ns);
    expect(metrics.body).toMatch(/twill_flows_total\{namespace="default",verdict="allowed"\} [1-9]/);
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
