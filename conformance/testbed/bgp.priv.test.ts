import { afterEach, describe, expect, it } from "vitest";
import { listOwnedRoutes } from "../../testkit/iproute.js";
import { readSubnetFile } from "../../shared/subnet-file.js";
import { until } from "../../testkit/until.js";
import { failures, reachability } from "./matrix.js";
import { Testbed, type TestbedOptions } from "./testbed.js";

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

/** Waits until every node has a route to every other node's subnets. */
async function converged(t: Testbed): Promise<void> {
  await until("every node routes every other node's subnets", async () => {
    for (const n of t.nodes) {
      const want = t.nodes.filter((o) => o !== n).flatMap((o) => o.subnets).sort();
      const have = (await listOwnedRoutes(t.ip(n))).map((r) => r.dst).sort();
      if (have.join() !== want.join()) return false;
    }
    return true;
  }, 30_000);
}

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
