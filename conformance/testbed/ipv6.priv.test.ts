import { afterEach, describe, expect, it } from "vitest";
import { listOwnedRoutes } from "../../testkit/iproute.js";
import { vtepName } from "../../shared/kernel/vxlan.js";
import { readSubnetFile } from "../../shared/subnet-file.js";
import { failures, podAddress, podsToNodes, reachability } from "./matrix.js";
import { Testbed, type TestbedOptions, type TestNode } from "./testbed.js";
import { netCounter, ping } from "./traffic.js";

// IPv6-only and dual-stack clusters with the real agent (dist/bin/twilld in every node
// namespace) and the real twill plugin: an IPv6 underlay under VXLAN and host-gw, IPv6 and
// link-local next hops, the VXLAN MTU over IPv6, masquerade of IPv6 pods.

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});

async function cluster(o: TestbedOptions, podsPerNode = 2): Promise<Testbed> {
  tb = await Testbed.create({ agent: "twilld", nodes: 2, ...o });
  await tb.startAgents();
  for (const n of tb.nodes) for (let i = 0; i < podsPerNode; i++) await tb.addPod(n);
  return tb;
}

/** node-1's routes to its peers' pod subnets, as `dst via dev`. */
async function peerRoutes(t: Testbed, node: TestNode = t.nodes[0]!): Promise<string[]> {
  return (await listOwnedRoutes(t.ip(node))).map((r) => `${r.dst} via ${r.via} dev ${r.dev}`).sort();
}

describe.each(["vxlan", "host-gw", "auto"] as const)("%s: IPv6-only nodes and pods on an IPv6 underlay", (backend) => {
  it("every pod reaches every other pod and every node over IPv6", async () => {
    const t = await cluster({ backend, ipFamily: 6 });
    expect(t.nodes.map((n) => [n.ip, n.subnets.length])).toEqual([["fd00:77::11", 1], ["fd00:77::12", 1]]);
    expect(t.pods.every((p) => p.ips.length === 1 && p.ips[0]!.includes(":"))).toBe(true);
    const results = await reachability(t.pods, 6);
    expect(results).toHaveLength(12);
    expect(failures(results)).toEqual([]);
    expect(await podsToNodes(t.pods, t.nodes)).toEqual([]);
    const peer = t.nodes[1]!.subnets[0]!;
    const via = backend === "vxlan" ? `${peer.split("/")[0]} dev ${vtepName(1)}` : "fd00:77::12 dev eth0";
    expect(await peerRoutes(t)).toEqual([`${peer} via ${via}`]);
  });
});

describe.each(["vxlan", "host-gw", "auto"] as const)("%s: dual-stack pods on a dual-stack underlay", (backend) => {
  it("every pod reaches every other pod over IPv4 and over IPv6", async () => {
    const t = await cluster({ backend, ipFamily: "dual" });
    expect(t.pods.every((p) => p.ips.length === 2)).toBe(true);
    expect(failures(await reachability(t.pods, 4))).toEqual([]);
    expect(failures(await reachability(t.pods, 6))).toEqual([]);
    expect(await podsToNodes(t.pods, t.nodes)).toEqual([]);
    const [s4, s6] = t.nodes[1]!.subnets as [string, string];
    expect(await peerRoutes(t)).toEqual(
      backend === "vxlan"
        ? [`${s4} via ${s4.split("/")[0]} dev ${vtepName(1)}`, `${s6} via ${s6.split("/")[0]} dev ${vtepName(1)}`]
        : [`${s4} via 192.168.77.12 dev eth0`, `${s6} via fd00:77::12 dev eth0`],
    );
  });
});

describe("host-gw IPv6 next hops", () => {
  it("routes IPv6 pods via a peer's link-local address when the underlay has no global IPv6", async () => {
    const t = await cluster({ backend: "host-gw", ipFamily: "dual", linkLocal6: true }, 1);
    const n2 = t.nodes[1]!;
    expect(n2.ip6).toMatch(/^fe80::/);
    expect(await peerRoutes(t)).toEqual([`${n2.subnets[0]} via 192.168.77.12 dev eth0`, `${n2.subnets[1]} via ${n2.ip6} dev eth0`]);
    expect(failures(await reachability(t.pods, 6))).toEqual([]);
    expect(failures(await reachability(t.pods, 4))).toEqual([]);
  });

  it("reports an IPv6 peer behind a router as not L2-adjacent and routes the adjacent one", async () => {
    const t = await cluster({ backend: "host-gw", ipFamily: 6, nodes: 3, remoteNodes: [3] }, 1);
    const reasons = t.twilld!.logged(t.node("node-1"), "Peer unreachable").map((l) => l.reason);
    expect(reasons).toEqual([
      "peer node-3 fd00:88::13 is not on the same L2 segment as eth0 (fd00:77::/64): host-gw needs L2-adjacent nodes; use vxlan or auto",
    ]);
    expect(await peerRoutes(t)).toEqual([`${t.nodes[1]!.subnets[0]} via fd00:77::12 dev eth0`]);
    expect(failures(await reachability(t.pods.filter((p) => p.node.segment === "a"), 6))).toEqual([]);
  });
});

describe("vxlan over an IPv6 underlay: MTU", () => {
  it("is the underlay MTU - 70: a DF ping of exactly that crosses unfragmented, one byte more is refused", async () => {
    const t = await cluster({ backend: "vxlan", ipFamily: 6 }, 1);
    const [n1, n2] = t.nodes as [TestNode, TestNode];
    const mtu = readSubnetFile(n1.subnetFile).mtu;
    expect(mtu).toBe(1500 - 70);
    const vtep = await t.ip(n1).link(vtepName(1));
    expect(vtep?.mtu).toBe(mtu);
    expect((vtep?.linkinfo?.info_data as Record<string, unknown>).local6 ?? (vtep?.linkinfo?.info_data as Record<string, unknown>).local).toBe("fd00:77::11");
    const [a, b] = t.pods;
    const target = podAddress(b!, 6);
    // ICMPv6 echo: 40 bytes of IPv6 header and 8 of ICMPv6 header around the payload.
    const counters = () => Promise.all(t.nodes.flatMap((n) => ["Ip6FragCreates", "Ip6ReasmReqds", "Ip6FragFails"].map((c) => netCounter(n.ns, c))));
    const before = await counters();
    const fits = await ping(a!.ns, target, { size: mtu - 48, dontFragment: true, count: 3, intervalS: 0.2 });
    expect(fits.ok, fits.output).toBe(true);
    const over = await ping(a!.ns, target, { size: mtu - 47, dontFragment: true });
    expect(over.ok).toBe(false);
    expect(over.output).toMatch(/message too long|too big/i);
    // The same limit on the VTEP itself, from node to node across the tunnel.
    const vtep2 = n2.subnets[0]!.split("/")[0]!;
    expect((await ping(n1.ns, vtep2, { size: mtu - 48, dontFragment: true })).ok).toBe(true);
    const overVtep = await ping(n1.ns, vtep2, { size: mtu - 47, dontFragment: true });
    expect([overVtep.ok, /message too long|too big/i.test(overVtep.output)]).toEqual([false, true]);
    // Nothing was fragmented on the underlay (the encapsulated 1500-byte packets fit it).
    expect(await counters()).toEqual(before);
  });
});

describe("masquerade of IPv6 pods", () => {
  // The router knows no pod subnet: a reply reaches a pod only when the node masqueraded it.
  it.each([true, false])("ipMasq %s: an IPv6 pod reaches an address outside the cluster only when masqueraded", async (ipMasq) => {
    const t = await cluster({ backend: "vxlan", ipFamily: 6, ipMasq }, 1);
    for (const pod of t.pods) expect((await ping(pod.ns, "fd00:77::1")).ok).toBe(ipMasq);
    expect(failures(await reachability(t.pods, 6))).toEqual([]);
  });
});
