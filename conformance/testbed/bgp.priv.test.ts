import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BirdControl } from "../../agent/backend/bgp/bird-control.js";
import { pidFromFile } from "./cleanup.js";
import { inNetns } from "../../testkit/netns.js";
import { listOwnedRoutes } from "../../testkit/iproute.js";
import { readSubnetFile } from "../../shared/subnet-file.js";
import { until } from "../../testkit/until.js";
import { failures, podAddress, reachability } from "./matrix.js";
import { Testbed, type Pod, type TestbedOptions, type TestNode } from "./testbed.js";
import { pingStream } from "./traffic.js";

/**
 * The bgp backend end to end: the real twilld on every node, each running its BIRD, pods
 * attached by the real plugin. Routes come only from BGP (proto 150 routes twilld installs
 * from BIRD's table); nothing is encapsulated.
 */

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});

async function cluster(o: TestbedOptions): Promise<Testbed> {
  tb = await Testbed.create({ agent: "twilld", backend: "bgp", resyncMs: 2_000, ...o });
  await tb.startAgents();
  for (const n of tb.nodes) await tb.addPod(n);
  return tb;
}

const converged = (t: Testbed, nodes?: readonly TestNode[]) => t.routesConverged(nodes);

describe("bgp, node mesh on one segment (dual-stack)", () => {
  it("every pod reaches every other over IPv4 and IPv6, by routes BGP learned, at the underlay's MTU", async () => {
    const t = await cluster({ nodes: 3, bgpMode: "mesh", ipFamily: "dual" });
    await converged(t);
    expect(failures(await reachability(t.pods, 4))).toEqual([]);
    expect(failures(await reachability(t.pods, 6))).toEqual([]);
    const n1 = t.node("node-1");
    const routes = await listOwnedRoutes(t.ip(n1));
    // The first hop BIRD resolved: on one segment, the peer node itself.
    expect(routes.map((r) => `${r.dst} via ${r.via} dev ${r.dev}`).sort()).toEqual(
      t.nodes.filter((n) => n !== n1).flatMap((n) => [`${n.subnets[0]} via ${n.ip} dev eth0`, `${n.subnets[1]} via ${n.ip6} dev eth0`]).sort(),
    );
    expect(readSubnetFile(n1.subnetFile).mtu).toBe(1500);
    for (const n of t.nodes) expect((await t.ip(n).links()).filter((l) => l.linkinfo?.info_kind === "vxlan")).toEqual([]);
    const status = await t.twilld!.status(n1);
    expect(status).toMatch(/BGP sessions \(2\):/);
    for (const n of t.nodes.filter((n) => n !== n1)) expect(status).toMatch(new RegExp(`${n.name}\\s+${n.ip}\\s+64512\\s+Established`));
  });
});

/** Pings every 50 ms for `count` packets; resolves with how many were sent and answered. */
const stream = (from: Pod, to: Pod, count: number) => pingStream(from.ns, podAddress(to), count);

describe("bgp, node mesh: joins, leaves, restarts and lies", () => {
  it("a node joining is routed by every other node, and withdrawn when it leaves", async () => {
    tb = await Testbed.create({ agent: "twilld", backend: "bgp", bgpMode: "mesh", nodes: 4, resyncMs: 2_000 });
    const [n1, n2, n3, n4] = tb.nodes as [TestNode, TestNode, TestNode, TestNode];
    await tb.startAgents([n1, n2, n3]);
    await converged(tb, [n1, n2, n3]);
    await tb.startAgents([n4]);
    const p1 = await tb.addPod(n1);
    const p4 = await tb.addPod(n4);
    await converged(tb);
    expect(failures(await reachability([p1, p4]))).toEqual([]);
    const bird4 = pidFromFile(join(n4.dir, "bird", "bird.pid"));
    expect(bird4).not.toBeNull();
    await tb.leave(n4);
    await until("every other node withdrew node-4's subnet", async () => {
      for (const n of [n1, n2, n3]) if ((await listOwnedRoutes(tb!.ip(n))).some((r) => n4.subnets.includes(r.dst))) return false;
      return true;
    }, 30_000);
    // `twilld leave` shut node-4's BIRD down: it announces nothing any more.
    await until("node-4's BIRD is gone", () => pidFromFile(join(n4.dir, "bird", "bird.pid")) === null, 10_000);
  });

  it("twilld or BIRD killed on a node: traffic to its pods keeps flowing, and both come back", async () => {
    const t = await cluster({ nodes: 3, bgpMode: "mesh" });
    await converged(t);
    const [p1, p2] = t.pods as [Pod, Pod];
    const n2 = t.node("node-2");

    // twilld killed and started again: BIRD runs on, and the new twilld adopts it.
    const flowing = stream(p1, p2, 120);
    await t.twilld!.kill(n2.name);
    await t.startAgents([n2]);
    const afterAgent = await flowing;
    expect(afterAgent.received, afterAgent.output).toBe(afterAgent.sent);
    expect(t.twilld!.logged(n2, "Adopted running BIRD")).toHaveLength(1);

    // BIRD killed: the peers keep node-2's routes (graceful restart), node-2 keeps the ones it
    // installed while its BIRD is away, and twilld starts BIRD again with -R.
    const birdPid = pidFromFile(join(n2.dir, "bird", "bird.pid"));
    expect(birdPid).not.toBeNull();
    const flowing2 = stream(p1, p2, 120);
    process.kill(birdPid!, "SIGKILL");
    const afterBird = await flowing2;
    expect(afterBird.received, afterBird.output).toBe(afterBird.sent);
    const restarted = await until("twilld restarted BIRD with -R", () => t.twilld!.logged(n2, "Started BIRD").find((l) => l.gracefulRestart === true));
    expect(restarted).toBeTruthy();
    await until("node-2's sessions are up again", async () => /BGP sessions \(2\):[\s\S]*Established[\s\S]*Established/.test(await t.twilld!.status(n2)), 30_000);
    expect(failures(await reachability(t.pods))).toEqual([]);
  });

  it("a node announcing a prefix outside the cluster, or another node's subnet, is refused and reported", async () => {
    const t = await cluster({ nodes: 3, bgpMode: "mesh" });
    await converged(t);
    const [n1, n2, n3] = t.nodes as [TestNode, TestNode, TestNode];
    // node-3's BIRD made to lie: its file also announces a prefix outside the cluster and node-1's subnet.
    const conf = join(n3.dir, "bird", "bird.conf");
    const lies = ["198.51.100.0/24", n1.subnets[0]!];
    writeFileSync(conf, readFileSync(conf, "utf8").replace(/(protocol static twill_pods4 \{ ipv4;)/, `$1${lies.map((p) => ` route ${p} unreachable;`).join("")}`));
    const control = new BirdControl(join(n3.dir, "bird", "bird.ctl"));
    try {
      expect(await control.request("configure")).toMatch(/^0003 /m);
    } finally {
      control.close();
    }
    const status = await until("node-2 reports both refusals", async () => {
      const s = await t.twilld!.status(n2);
      return s.includes("route 198.51.100.0/24 from mesh_node_3: is outside the cluster CIDRs") && s.includes(`route ${n1.subnets[0]} from mesh_node_3: is not leased to node-3`) ? s : false;
    }, 30_000);
    expect(status).toMatch(/mesh_node_3/);
    const routes = await listOwnedRoutes(t.ip(n2));
    expect(routes.find((r) => r.dst === "198.51.100.0/24")).toBeUndefined();
    expect(routes.find((r) => r.dst === n1.subnets[0])).toMatchObject({ via: n1.ip });
    expect(failures(await reachability(t.pods))).toEqual([]);
  });
});

/** Counters in the router's forward path (its own namespace): pod-to-pod packets in plain IP, and any VXLAN. */
async function routerCounters(t: Testbed, from: Pod, to: Pod): Promise<() => Promise<{ plain4: number; plain6: number; vxlan: number }>> {
  const [a4, a6] = [podAddress(from, 4), podAddress(from, 6)];
  const [b4, b6] = [podAddress(to, 4), podAddress(to, 6)];
  const ruleset = [
    "table inet twill_test {",
    "  chain forward {",
    "    type filter hook forward priority 0; policy accept;",
    `    ip saddr ${a4} ip daddr ${b4} counter comment "plain4"`,
    `    ip6 saddr ${a6} ip6 daddr ${b6} counter comment "plain6"`,
    '    udp dport 4789 counter comment "vxlan"',
    "  }",
    "}",
  ].join("\n");
  await inNetns(t.underlay.routerNs, ["nft", "-f", "-"], { input: ruleset });
  return async () => {
    const out = String((await inNetns(t.underlay.routerNs, ["nft", "list", "chain", "inet", "twill_test", "forward"])).stdout);
    const count = (name: string) => Number(new RegExp(`packets (\\d+) bytes \\d+ comment "${name}"`).exec(out)?.[1] ?? NaN);
    return { plain4: count("plain4"), plain6: count("plain6"), vxlan: count("vxlan") };
  };
}

describe("bgp, routers mode: two racks behind an FRR router (dual-stack)", () => {
  it("pods on both racks reach each other in plain IP through the router, which holds a route per node subnet", async () => {
    const t = await cluster({ nodes: 4, remoteNodes: [3, 4], ipFamily: "dual" });
    await converged(t);
    const [p1, , p3] = t.pods as [Pod, Pod, Pod];
    const counters = await routerCounters(t, p1, p3);
    expect(failures(await reachability(t.pods, 4))).toEqual([]);
    expect(failures(await reachability(t.pods, 6))).toEqual([]);
    const seen = await counters();
    expect(seen.plain4).toBeGreaterThan(0);
    expect(seen.plain6).toBeGreaterThan(0);
    expect(seen.vxlan).toBe(0);
    for (const family of [4, 6] as const) {
      const routes = await t.router!.routes(family);
      for (const n of t.nodes) {
        const subnet = n.subnets.find((s) => s.includes(":") === (family === 6))!;
        expect(routes.find((r) => r.prefix === subnet && r.installed)?.nexthops.map((h) => h.ip)).toEqual([family === 4 ? n.ip : n.ip6]);
      }
    }
    const sessions = await t.router!.sessions();
    expect(sessions.filter((s) => s.state === "Established" && s.pfxRcd === 1)).toHaveLength(8);
    const status = await t.twilld!.status(t.node("node-3"));
    expect(status).toMatch(/192\.168\.88\.1 +192\.168\.88\.1 +65000 +Established/);
    expect(status).toMatch(/fd00:88::1 +fd00:88::1 +65000 +Established/);
    // The router sends each node its own subnet back: ignored, neither installed nor reported.
    expect(status).not.toMatch(/Unreachable:|Refused:/);
  });

  it("BIRD killed on a node: the router keeps its routes (graceful restart) and traffic across racks loses nothing", async () => {
    const t = await cluster({ nodes: 3, remoteNodes: [3] });
    await converged(t);
    const [p1, , p3] = t.pods as [Pod, Pod, Pod];
    const n3 = t.node("node-3");
    const birdPid = pidFromFile(join(n3.dir, "bird", "bird.pid"));
    expect(birdPid).not.toBeNull();
    const flowing = stream(p1, p3, 120);
    process.kill(birdPid!, "SIGKILL");
    const result = await flowing;
    expect(result.received, result.output).toBe(result.sent);
    await until("the router has node-3's session back", async () => (await t.router!.sessions()).some((s) => s.peer === n3.ip && s.state === "Established" && s.pfxRcd === 1), 30_000);
    expect(failures(await reachability(t.pods))).toEqual([]);
  });
});
