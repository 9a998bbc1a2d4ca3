import { afterEach, describe, expect, it } from "vitest";
import { listOwnedRoutes } from "../../testkit/iproute.js";
import { readSubnetFile } from "../../shared/subnet-file.js";
import { failures, podAddress, podsToNodes, reachability } from "./matrix.js";
import type { PluginKind } from "../../testkit/pods.js";
import { Testbed, type TestbedOptions } from "./testbed.js";
import { netCounter, ping } from "./traffic.js";

// The agent loop run in-process (each reconcile report readable); the agent lifecycle runs
// against the real twilld executable in twilld.priv.test.ts.
// The CNI plugin the pods are attached with; `bridge` runs the same checks on the reference.
const plugin = (process.env.TWILL_TESTBED_PLUGIN ?? "twill") as PluginKind;

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});

async function cluster(o: TestbedOptions, podsPerNode = 2): Promise<Testbed> {
  tb = await Testbed.create({ plugin, agent: "inproc", ...o });
  await tb.startAgents();
  for (const n of tb.nodes) for (let i = 0; i < podsPerNode; i++) await tb.addPod(n);
  return tb;
}

describe.each(["vxlan", "host-gw", "auto"] as const)("%s: 3 nodes x 2 pods on one segment", (backend) => {
  it("every pod reaches every other pod (ping and TCP) and every node", async () => {
    const t = await cluster({ backend });
    const results = await reachability(t.pods);
    expect(results).toHaveLength(30);
    expect(failures(results)).toEqual([]);
    expect(await podsToNodes(t.pods, t.nodes)).toEqual([]);
    for (const n of t.nodes) expect(t.inproc!.report(n.name)).toMatchObject({ error: null, report: { errors: [] } });
  });
});

describe("nodes split by a router (node-3 on another L3 segment)", () => {
  it("vxlan carries every pair across the router", async () => {
    const t = await cluster({ backend: "vxlan", remoteNodes: [3] });
    expect(failures(await reachability(t.pods))).toEqual([]);
  });

  it("host-gw reports the non-adjacent peer and still carries same-segment pairs", async () => {
    const t = await cluster({ backend: "host-gw", remoteNodes: [3] });
    const report = t.inproc!.report("node-1").report;
    expect(report?.errors).toEqual([
      {
        peer: "node-3",
        message:
          "peer node-3 192.168.88.13 is not on the same L2 segment as eth0 (192.168.77.0/24): host-gw needs L2-adjacent nodes; use vxlan or auto",
      },
    ]);
    expect(t.inproc!.report("node-3").report?.errors.map((e) => e.peer)).toEqual(["node-1", "node-2"]);
    const sameSegment = t.pods.filter((p) => p.node.segment === "a");
    expect(failures(await reachability(sameSegment))).toEqual([]);
    // No route was installed towards node-3 (none could work): nothing points into the void.
    const routes = await listOwnedRoutes(t.ip(t.node("node-1")));
    expect(routes.map((r) => r.dst).sort()).toEqual(t.node("node-2").subnets);
  });

  it("auto takes host-gw on the segment and vxlan across the router", async () => {
    const t = await cluster({ backend: "auto", remoteNodes: [3] });
    expect(failures(await reachability(t.pods))).toEqual([]);
    const routes = await listOwnedRoutes(t.ip(t.node("node-1")));
    expect(routes.map((r) => `${r.dst} ${r.dev}`).sort()).toEqual(
      [`${t.node("node-2").subnets[0]} eth0`, `${t.node("node-3").subnets[0]} twill.1`].sort(),
    );
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

describe("masquerade", () => {
  // The router knows no pod subnet: a reply reaches a pod only when the node masqueraded it.
  it.each([true, false])("ipMasq %s: a pod reaches an address outside the cluster only when masqueraded", async (ipMasq) => {
    const t = await cluster({ backend: "vxlan", nodes: 2, ipMasq }, 1);
    for (const pod of t.pods) expect((await ping(pod.ns, "192.168.77.1")).ok).toBe(ipMasq);
    // Pod-to-pod traffic keeps its source either way.
    expect(failures(await reachability(t.pods))).toEqual([]);
  });
});
