import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { FlowCollector } from "../../agent/flows/collector.js";
import { TokenBucket } from "../../agent/flows/limiter.js";
import type { FlowRecord } from "../../agent/flows/record.js";
import { flowSocketPath, serveFlows } from "../../agent/flows/socket.js";
import { DROP_NFLOG_GROUP } from "../../agent/policy/compile.js";
import { PolicyEngine } from "../../agent/policy/engine.js";
import { createPolicyMetrics } from "../../agent/policy/metrics.js";
import type { NetworkPolicy, PodInfo, PolicySnapshot } from "../../agent/policy/types.js";
import { openFlowEvents } from "../../shared/kernel/netlink/flow-events.js";
import { nullLogger } from "../../shared/log.js";
import { onJsonLines } from "../../testkit/json-lines.js";
import { TWILLD } from "../../testkit/node-net.js";
import { until } from "../../testkit/until.js";
import { sysctls } from "../../testkit/netns.js";
import { Testbed, type Pod } from "./testbed.js";
import { ECHO_PORT, ping, startEcho, tcpProbe, type EchoServer } from "./traffic.js";

// NetworkPolicy on the testbed: the policy engine of each node applies real nft rules in the
// node's namespace, fed plain objects through the seam the Kubernetes watch uses; pods are
// attached by the real twill plugin (bridge cni0, veths) and traffic is real TCP and ICMP.

let tb: Testbed | null = null;
const engines: PolicyEngine[] = [];
const servers: EchoServer[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) await e.stop();
  for (const s of servers.splice(0)) await s.stop().catch(() => undefined);
  await tb?.destroy();
  tb = null;
});

interface Cluster {
  t: Testbed;
  engines: Map<string, PolicyEngine>;
  registries: Map<string, Registry>;
  labels: Map<Pod, Record<string, string>>;
  policies: NetworkPolicy[];
  /** Hands every node's engine the current snapshot and waits until it is in the kernel. */
  sync(): Promise<void>;
}

async function cluster(podsPerNode: number[]): Promise<Cluster> {
  const t = await Testbed.create({ nodes: podsPerNode.length, agent: "inproc", backend: "vxlan", clusterCIDRv6: "fd00:10:244::/56" });
  tb = t;
  await t.startAgents();
  for (const [i, n] of podsPerNode.entries()) for (let k = 0; k < n; k++) await t.addPod(t.nodes[i]!);
  const c: Cluster = {
    t,
    engines: new Map(),
    registries: new Map(),
    labels: new Map(t.pods.map((p) => [p, { name: p.name }])),
    policies: [],
    sync: async () => {
      const snapshot = snapshotOf(c);
      for (const e of c.engines.values()) e.update(snapshot);
      for (const e of c.engines.values()) await e.settled();
    },
  };
  for (const n of t.nodes) {
    const registry = new Registry();
    const e = new PolicyEngine({ nodeName: n.name, ip: t.ip(n), bridge: "cni0", resyncMs: 60_000, logDropsPerSecond: 10, logger: nullLogger, metrics: createPolicyMetrics(registry), table: "twill-policy" });
    engines.push(e);
    c.engines.set(n.name, e);
    c.registries.set(n.name, registry);
  }
  return c;
}

function snapshotOf(c: Cluster): PolicySnapshot {
  const pods: PodInfo[] = c.t.pods.map((p) => ({
    namespace: "default",
    name: p.name,
    nodeName: p.node.name,
    labels: c.labels.get(p) ?? {},
    ips: p.ips.map((a) => a.split("/")[0]!),
    ports: [{ name: "echo", port: ECHO_PORT, protocol: "TCP" }],
  }));
  return { policies: c.policies, pods, namespaces: [{ name: "default", labels: { "kubernetes.io/metadata.name": "default" } }] };
}

/** `server` lets in `friend` alone, on its echo port (policy default/server-from-friends). */
function serverFromFriends(c: Cluster, server: Pod, friend: Pod): void {
  c.labels.set(server, { app: "server" });
  c.labels.set(friend, { app: "friend" });
  c.policies.push({
    namespace: "default",
    name: "server-from-friends",
    podSelector: { matchLabels: { app: "server" } },
    policyTypes: ["ingress"],
    ingress: [{ peers: [{ podSelector: { matchLabels: { app: "friend" } } }], ports: [{ port: "echo" }] }],
    egress: [],
  });
}

const v4 = (p: Pod): string => p.ips.map((a) => a.split("/")[0]!).find((a) => !a.includes(":"))!;
const v6 = (p: Pod): string => p.ips.map((a) => a.split("/")[0]!).find((a) => a.includes(":"))!;

/** TCP echo from `from` to each target, all at once (a dropped SYN costs the probe's timeout). */
async function reach(from: Pod | string, targets: string[]): Promise<Record<string, boolean>> {
  const ns = typeof from === "string" ? from : from.ns;
  const results = await Promise.all(targets.map((t) => tcpProbe(ns, [t]).then((r) => r[0]!.ok)));
  return Object.fromEntries(targets.map((t, i) => [t, results[i]!]));
}

describe("NetworkPolicy on the testbed (vxlan, dual-stack, 2 nodes)", () => {
  it("filters ingress on one node (across the bridge) and across nodes, follows relabelling, lets the node in", async () => {
    const c = await cluster([3, 1]);
    const [server, friend, stranger, remote] = c.t.pods as [Pod, Pod, Pod, Pod];
    const node1 = c.t.nodes[0]!;
    // Without br_netfilter's sysctl in the node: the engine turns it on for cni0 alone.
    await sysctls(node1.ns, { "net.bridge.bridge-nf-call-iptables": 0, "net.bridge.bridge-nf-call-ip6tables": 0 });
    expect(readFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables", "utf8").trim()).toBe("1");

    serverFromFriends(c, server, friend);
    expect(await reach(friend, [v4(server), v6(server)])).toEqual({ [v4(server)]: true, [v6(server)]: true });
    await c.sync();

    expect(await reach(friend, [v4(server), v6(server)])).toEqual({ [v4(server)]: true, [v6(server)]: true });
    expect(await reach(stranger, [v4(server), v6(server)])).toEqual({ [v4(server)]: false, [v6(server)]: false });
    expect(await reach(remote, [v4(server), v6(server)])).toEqual({ [v4(server)]: false, [v6(server)]: false });
    // ICMP is not in the allowed ports; the node itself (kubelet probes) is always let in.
    expect((await ping(friend.ns, v4(server))).ok).toBe(false);
    expect(await reach(node1.ns, [v4(server), v6(server)])).toEqual({ [v4(server)]: true, [v6(server)]: true });
    // Pods no policy selects stay open, from anywhere.
    expect(await reach(remote, [v4(stranger), v4(friend)])).toEqual({ [v4(stranger)]: true, [v4(friend)]: true });

    // The remote pod becomes a friend: allowed after the next apply, on both families.
    c.labels.set(remote, { app: "friend" });
    await c.sync();
    expect(await reach(remote, [v4(server), v6(server)])).toEqual({ [v4(server)]: true, [v6(server)]: true });

    const engine = c.engines.get("node-1")!;
    await (engine as unknown as { collectDrops(): Promise<void> }).collectDrops();
    const drops = engine.report().drops.find((d) => d.pod === "default/" + server.name)!;
    expect(drops.ingress).toBeGreaterThan(0);
    expect(await c.registries.get("node-1")!.metrics()).toMatch(new RegExp(`twill_policy_dropped_packets_total\\{namespace="default",pod="${server.name}",direction="ingress"\\} [1-9]`));
    expect(c.engines.get("node-2")!.report().policies).toEqual([]);
  });

  it("filters egress by destination and port, with replies to allowed connections let back", async () => {
    const c = await cluster([2, 1]);
    const [client, local, remote] = c.t.pods as [Pod, Pod, Pod];
    c.labels.set(client, { app: "client" });
    c.labels.set(remote, { app: "api" });
    c.policies.push({
      namespace: "default",
      name: "client-to-api",
      podSelector: { matchLabels: { app: "client" } },
      policyTypes: ["ingress", "egress"],
      ingress: [],
      egress: [{ peers: [{ podSelector: { matchLabels: { app: "api" } } }], ports: [{ protocol: "TCP", port: ECHO_PORT }] }],
    });
    await c.sync();
    // Ingress is closed to the client, yet the echo's replies come back: conntrack.
    expect(await reach(client, [v4(remote), v6(remote), v4(local)])).toEqual({ [v4(remote)]: true, [v6(remote)]: true, [v4(local)]: false });
    expect(await reach(local, [v4(client)])).toEqual({ [v4(client)]: false });
    expect((await ping(client.ns, v4(remote))).ok).toBe(false);
    // Pods without policy on either side still talk.
    expect(await reach(remote, [v4(local)])).toEqual({ [v4(local)]: true });

    // Removing the policy opens everything again.
    c.policies.length = 0;
    await c.sync();
    expect(await reach(local, [v4(client)])).toEqual({ [v4(client)]: true });
    expect((await ping(client.ns, v4(remote))).ok).toBe(true);
  });

  it("shows flows through `twilld flows`: a dropped client naming pods and policy, allowed connections with start and end", async () => {
    const c = await cluster([2, 1]);
    const [server, friend, remote] = c.t.pods as [Pod, Pod, Pod];
    const node1 = c.t.nodes[0]!;
    serverFromFriends(c, server, friend);
    await c.sync();
    // node-1's flows as twilld keeps them: its engine's view, the kernel's events in its namespace.
    const engine = c.engines.get("node-1")!;
    const stateDir = mkdtempSync(join(tmpdir(), "twill-flows-"));
    const collector = new FlowCollector({
      nodeName: "node-1",
      open: () => openFlowEvents({ netns: `/run/netns/${node1.ns}`, nflogGroup: DROP_NFLOG_GROUP, conntrack: true }),
      view: () => engine.flowView(),
      sink: null,
      metrics: null,
      limiter: new TokenBucket(1000, 1000, Date.now),
      logger: nullLogger,
    });
    const server_ = await serveFlows(flowSocketPath(stateDir), collector, () => () => true, nullLogger);
    const follow = execa(TWILLD, ["flows", "--state-dir", stateDir, "--follow", "-o", "json"], { reject: false, env: {}, buffer: { stdout: false } });
    const records: FlowRecord[] = [];
    onJsonLines<FlowRecord>(follow.stdout!, (r) => records.push(r));
    try {
      await until("the follower attached", async () => collector.reading, 10_000);
      const serverKey = `default/${server.name}`;
      expect(await reach(remote, [v4(server)])).toEqual({ [v4(server)]: false });
      expect(await reach(friend, [v4(server), v6(server)])).toEqual({ [v4(server)]: true, [v6(server)]: true });
      const of = (pred: (r: FlowRecord) => boolean) => records.filter(pred);
      const dropped = (r: FlowRecord) => r.verdict === "dropped" && r.source.ip === v4(remote);
      const friendV6 = (r: FlowRecord) => r.verdict === "allowed" && r.source.ip === v6(friend) && r.direction === "ingress";
      const seen = () => `records: ${JSON.stringify(records)}; twilld flows: ${String(follow.stderr ?? "")}`;
      await until("the drop and the friend's start and end", async () => of(dropped).length > 0 && of(friendV6).some((r) => r.event === "end"), 10_000, seen);
      expect(of(dropped)[0]).toMatchObject({
        event: "drop", direction: "ingress", pod: serverKey, protocol: "TCP",
        source: { ip: v4(remote), pod: `default/${remote.name}` },
        destination: { ip: v4(server), port: ECHO_PORT, pod: serverKey },
        policies: ["default/server-from-friends"],
      });
      // Between two pods of node-1: per connection (the probe makes a warm-up one first), the
      // server's ingress and the friend's egress, each started and ended once; ingress names
      // the policy that let it in, egress none (the friend is not isolated).
      const v6Flows = of((r) => r.source.ip === v6(friend) && r.destination.ip === v6(server));
      const ports = [...new Set(v6Flows.map((r) => r.source.port))];
      expect(ports.length).toBeGreaterThan(0);
      for (const port of ports) {
        const flows = v6Flows.filter((r) => r.source.port === port);
        expect(flows.map((r) => `${r.direction} ${r.event}`).sort()).toEqual(["egress end", "egress start", "ingress end", "ingress start"]);
      }
      expect(v6Flows.find((r) => r.direction === "ingress")).toMatchObject({ pod: serverKey, source: { pod: `default/${friend.name}` }, policies: ["default/server-from-friends"] });
      expect(v6Flows.find((r) => r.direction === "egress")).toMatchObject({ pod: `default/${friend.name}`, policies: [] });
      // Connections of other pods, and the node's own, are not node-1's pods' flows.
      expect(records.every((r) => r.pod === serverKey || r.pod === `default/${friend.name}`)).toBe(true);

      // Without --follow: what the agent keeps, filtered by verdict.
      const kept = await execa(TWILLD, ["flows", "--state-dir", stateDir, "--verdict", "dropped"], { reject: false, env: {} });
      expect(kept.exitCode, kept.stderr).toBe(0);
      expect(kept.stdout).toMatch(new RegExp(`dropped\\s+ingress\\s+.*default/${remote.name}.*default/server-from-friends`));
      expect(kept.stdout).not.toMatch(/allowed/);
    } finally {
      follow.kill("SIGINT");
      await follow;
      await server_.close();
      collector.stop();
      rmSync(stateDir, { recursive: true, force: true });
    }
    // The last follower gone, the kernel is no longer read.
    expect(collector.reading).toBe(false);
  });

  it("an IPv6 ipBlock lets its prefix in, less its except, and no IPv4 source", async () => {
    const c = await cluster([2, 1]);
    const [server, friend, remote] = c.t.pods as [Pod, Pod, Pod];
    c.labels.set(server, { app: "server" });
    c.policies.push({
      namespace: "default",
      name: "server-from-ipv6",
      podSelector: { matchLabels: { app: "server" } },
      policyTypes: ["ingress"],
      ingress: [{ peers: [{ ipBlock: { cidr: "::/0", except: [`${v6(remote)}/128`] } }] }],
      egress: [],
    });
    await c.sync();
    expect(await reach(friend, [v4(server), v6(server)])).toEqual({ [v4(server)]: false, [v6(server)]: true });
    expect(await reach(remote, [v4(server), v6(server)])).toEqual({ [v4(server)]: false, [v6(server)]: false });
  });

  it("a pod started after a policy that selects it is filtered once the engine has its address", async () => {
    const c = await cluster([1, 1]);
    const [friend, remote] = c.t.pods as [Pod, Pod];
    c.labels.set(friend, { app: "friend" });
    c.policies.push({
      namespace: "default",
      name: "late",
      podSelector: { matchLabels: { app: "late" } },
      policyTypes: ["ingress"],
      ingress: [{ peers: [{ podSelector: { matchLabels: { app: "friend" } } }] }],
      egress: [],
    });
    await c.sync();
    const late = await c.t.addPod(c.t.nodes[1]!);
    c.labels.set(late, { app: "late" });
    const t0 = performance.now();
    await c.sync();
    const windowMs = performance.now() - t0;
    expect(await reach(friend, [v4(late)])).toEqual({ [v4(late)]: true });
    expect(await reach(remote, [v4(late), v6(late)])).toEqual({ [v4(late)]: false, [v6(late)]: false });
    console.log(`policy window for a new pod (event to rules applied, node-2): ${windowMs.toFixed(1)} ms`);
  });

  it("egress deny-all stops a pod at its own node's addresses too, and the node still reaches the pod (kubelet probes)", async () => {
    const c = await cluster([2, 1]);
    const [client, free] = c.t.pods as [Pod, Pod];
    const node1 = c.t.nodes[0]!;
    // Something on the node as kubelet listens on 10250: every address of the node namespace.
    const KUBELET_PORT = 10250;
    servers.push(await startEcho(node1.ns, KUBELET_PORT));
    const addrs = await c.t.ip(node1).json<{ ifname: string; addr_info: { family: string; local: string; scope: string }[] }[]>(["addr", "show"], "list node addresses");
    const gateway = (fam: string) => addrs.find((l) => l.ifname === "cni0")!.addr_info.find((a) => a.family === fam && a.scope === "global")!.local;
    const nodeAddrs = [node1.ip, gateway("inet"), gateway("inet6")];
    const toNode = async (from: Pod) => Object.values(Object.fromEntries((await tcpProbe(from.ns, nodeAddrs, KUBELET_PORT)).map((r) => [r.target, r.ok])));
    expect(await toNode(client)).toEqual([true, true, true]);

    c.labels.set(client, { app: "locked" });
    c.policies.push({ namespace: "default", name: "deny-all", podSelector: { matchLabels: { app: "locked" } }, policyTypes: ["ingress", "egress"], ingress: [], egress: [] });
    await c.sync();
    expect(await toNode(client)).toEqual([false, false, false]);
    // A pod no policy selects still reaches its node; the node reaches the locked pod, by TCP
    // and ping, on both families: its packets leave through output, the replies come back
    // through input as established (over IPv6 only if the pod's neighbour discovery to the
    // node passes too).
    expect(await toNode(free)).toEqual([true, true, true]);
    expect(await reach(node1.ns, [v4(client), v6(client)])).toEqual({ [v4(client)]: true, [v6(client)]: true });
    expect((await ping(node1.ns, v4(client))).ok).toBe(true);
    expect((await ping(node1.ns, v6(client))).ok).toBe(true);
    // The pod's own pings to its node are egress as well; its drops are counted.
    expect((await ping(client.ns, gateway("inet"))).ok).toBe(false);
    const engine = c.engines.get(node1.name)!;
    await (engine as unknown as { collectDrops(): Promise<void> }).collectDrops();
    expect(engine.report().drops.find((d) => d.pod === `default/${client.name}`)!.egress).toBeGreaterThan(0);
  });
});
