import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseProtocols, parseRoutes } from "../../agent/backend/bgp/bird-answers.js";
import { renderBirdConfig, type BirdConfigInput } from "../../agent/backend/bgp/bird-config.js";
import { BirdControl } from "../../agent/backend/bgp/bird-control.js";
import { planBirdRoutes } from "../../agent/backend/bgp/bird-routes.js";
import type { RouteSpec } from "../../shared/kernel/routes.js";
import { startDaemon, type Daemon } from "../../testkit/daemon.js";
import { addNetns, inNetns, ipIn } from "../../testkit/netns.js";
import { until } from "../../testkit/until.js";
import { releaseSync, trackResources, type Resources } from "./cleanup.js";
import { ROUTER_AS, startFrrRouter, type FrrRouter, type FrrSession } from "./frr-router.js";
import { runPrefix } from "./testbed.js";
import { attachNode, createUnderlay, SEGMENTS, type Segment, type Underlay, type UnderlayNode } from "./topology.js";

/**
 * The FRR router of the testbed's underlay in routers mode: three nodes with a real BIRD each
 * (node 1 and 2 on segment a, node 3 on segment b, behind the router), each its own AS, pod
 * subnets from the cluster CIDRs. The nodes' default routes are deleted, so pod traffic moves
 * only on the routes BIRD learned, installed as twilld would. Node 2 is hostile: its BIRD also
 * announces prefixes outside the cluster and of the wrong length, which the router refuses.
 */

const CLUSTER = ["10.244.0.0/16", "fd00:10:244::/56"];
const SUBNET_LEN = { 4: 24, 6: 64 } as const;
const NODES: { index: number; segment: Segment }[] = [
  { index: 1, segment: "a" },
  { index: 2, segment: "a" },
  { index: 3, segment: "b" },
];
const HOSTILE = 2;
const HOSTILE4 = ["198.51.100.0/24", "10.244.99.0/25"];
const HOSTILE6 = ["2001:db8:ffff::/48", "fd00:10:244:99::/80"];

const nodeAs = (i: number): number => 65000 + i;
const subnets = (i: number): string[] => [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`];
/** The pod's addresses: the first of each of its node's subnets. */
const podIps = (i: number): [string, string] => [`10.244.${i}.1`, `fd00:10:244:${i}::1`];

interface BirdNode {
  index: number;
  node: UnderlayNode;
  podNs: string;
  input: BirdConfigInput;
  daemon: Daemon;
  control: BirdControl;
}

interface Placed {
  index: number;
  node: UnderlayNode;
}

/** bird.conf's input for node `index` in routers mode: its segment's router, both families; the other nodes' leases. */
function birdInput({ index, node: n }: Placed, others: Placed[]): BirdConfigInput {
  const { prefix, prefix6 } = SEGMENTS[n.segment];
  return {
    nodeName: `node-${index}`,
    clusterCIDRs: CLUSTER,
    local: { routerId: n.ip, addresses: [n.ip, n.ip6!], underlayDev: "eth0", subnets: subnets(index), as: nodeAs(index) },
    peering: { mode: "routers", routers: [{ address: `${prefix}.1`, as: ROUTER_AS }, { address: `${prefix6}:1`, as: ROUTER_AS }] },
    peers: others.map((p) => ({ nodeName: `node-${p.index}`, address: p.node.ip, subnets: subnets(p.index), as: nodeAs(p.index) })),
  };
}

/** The same file announcing `extra` beside the node's lease, into its static protocols (what a hostile node's BIRD would send). */
function announcingAlso(text: string, extra: readonly string[]): string {
  const out = extra.reduce((t, p) => {
    const f = p.includes(":") ? 6 : 4;
    return t.replace(`protocol static twill_pods${f} { ipv${f};`, `$& route ${p} unreachable;`);
  }, text);
  expect(out.match(/ unreachable;/g)).toHaveLength(2 + extra.length);
  return out;
}

/** A pod namespace behind a veth, holding the first address of each node subnet; the node's end is the pod's gateway. */
async function addPod(prefix: string, n: UnderlayNode, index: number, res: Resources): Promise<string> {
  const ns = `${prefix}p${index}`;
  await addNetns(ns);
  res.namespaces.add(ns);
  const [ip4, ip6] = podIps(index);
  await ipIn(n.ns).batch(
    [
      ["link", "add", "pod", "type", "veth", "peer", "name", "eth0", "netns", ns],
      ["addr", "add", `10.244.${index}.254/24`, "dev", "pod"],
      ["addr", "add", `fd00:10:244:${index}::fe/64`, "dev", "pod", "nodad"],
      ["link", "set", "pod", "up"],
      // Only BGP-learned routes may carry pod traffic from here on.
      ["route", "del", "default"],
      ["route", "del", "::/0"],
    ],
    `attach a pod to "${n.ns}"`,
  );
  await ipIn(ns).batch(
    [
      ["addr", "add", `${ip4}/24`, "dev", "eth0"],
      ["addr", "add", `${ip6}/64`, "dev", "eth0", "nodad"],
      ["link", "set", "eth0", "up"],
      ["route", "add", "default", "via", `10.244.${index}.254`],
      ["route", "add", "::/0", "via", `fd00:10:244:${index}::fe`],
    ],
    `configure pod "${ns}"`,
  );
  return ns;
}

const ping = async (fromNs: string, to: string): Promise<boolean> =>
  (await inNetns(fromNs, ["ping", "-c", "1", "-W", "2", to])).exitCode === 0;

describe("the testbed's FRR router between BIRD nodes on two segments (routers mode, dual-stack)", () => {
  const res = trackResources();
  const prefix = runPrefix();
  let dir: string;
  let underlay: Underlay;
  let router: FrrRouter;
  const birds: BirdNode[] = [];
  let startedAt = 0;

  const sessionsOf = async (): Promise<FrrSession[]> => router.sessions();
  const planOf = async (b: BirdNode) => planBirdRoutes(parseRoutes(await b.control.request("show route all")), b.input);
  const logs = () => [router.logTail(), ...birds.map((b) => `${b.daemon.name}:\n${b.daemon.logTail(10)}`)].join("\n");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    res.dirs.add(dir);
    // FRR drops to user frr: it must be able to enter the run's dir.
    chmodSync(dir, 0o755);
    underlay = await createUnderlay(prefix, { mtu: 1500, family: "dual" }, ["a", "b"], res);
    router = await startFrrRouter(
      { ns: underlay.routerNs, dir: join(dir, "router"), family: "dual", segments: ["a", "b"], clusterCIDRs: CLUSTER, subnetLen: SUBNET_LEN },
      res,
    );
    const placed: Placed[] = [];
    for (const { index, segment } of NODES) placed.push({ index, node: await attachNode(underlay, `${prefix}n${index}`, index, segment, res) });
    const pods: string[] = [];
    for (const p of placed) pods.push(await addPod(prefix, p.node, p.index, res));
    startedAt = Date.now();
    for (const [k, p] of placed.entries()) {
      const { index, node } = p;
      const input = birdInput(p, placed.filter((o) => o !== p));
      const config = renderBirdConfig(input);
      expect(config.refused).toEqual([]);
      const nodeDir = join(dir, `node-${index}`);
      mkdirSync(nodeDir);
      const conf = join(nodeDir, "bird.conf");
      writeFileSync(conf, index === HOSTILE ? announcingAlso(config.text, [...HOSTILE4, ...HOSTILE6]) : config.text);
      const ctl = join(nodeDir, "bird.ctl");
      const args = ["netns", "exec", node.ns, "bird", "-f", "-c", conf, "-s", ctl, "-P", join(nodeDir, "bird.pid")];
      const daemon = startDaemon(`bird node-${index}`, "ip", args, join(nodeDir, "bird.log"));
      res.pids.add(daemon.pid);
      birds.push({ index, node, podNs: pods[k]!, input, daemon, control: new BirdControl(ctl) });
    }
  });

  afterAll(async () => {
    for (const b of birds) {
      b.control.close();
      await b.daemon.stop();
      res.pids.delete(b.daemon.pid);
    }
    await router?.stop();
    releaseSync(res);
  });

  it("establishes one session per node and family, each carrying that family alone, one accepted prefix each", async () => {
    // Sent: every node subnet of the family, the node's own included (FRR sends it back; frr-router.ts).
    const sent = NODES.length;
    const want = birds.flatMap((b) => [
      { family: 4, peer: b.node.ip, remoteAs: nodeAs(b.index), state: "Established", pfxRcd: 1, pfxSnt: sent },
      { family: 6, peer: b.node.ip6, remoteAs: nodeAs(b.index), state: "Established", pfxRcd: 1, pfxSnt: sent },
    ]);
    const key = (s: { family: number; peer?: string }) => `${s.family} ${s.peer}`;
    want.sort((a, b) => key(a).localeCompare(key(b)));
    let seen: FrrSession[] = [];
    const sessions = await until("every node's sessions established, its pod subnet received and every node subnet sent", async () => {
      const list = (seen = await sessionsOf());
      return list.length === want.length && list.every((s) => s.state === "Established" && s.pfxRcd === 1 && s.pfxSnt === sent) && list;
    }, undefined, () => `${JSON.stringify(seen)}\n${logs()}`);
    console.log(`FRR router: ${sessions.length} sessions established, prefixes exchanged ${Date.now() - startedAt} ms after the BIRDs started`);
    expect(sessions.map(({ family, peer, remoteAs, state, pfxRcd, pfxSnt }) => ({ family, peer, remoteAs, state, pfxRcd, pfxSnt })).sort((a, b) => key(a).localeCompare(key(b)))).toEqual(want);
  });

  it("installs a route per node subnet of both families into the router namespace's kernel", async () => {
    const want = (f: 4 | 6) => birds.map((b) => `${subnets(b.index)[f === 4 ? 0 : 1]} via ${f === 4 ? b.node.ip : b.node.ip6} dev r-${b.node.segment}`).sort();
    for (const f of [4, 6] as const) {
      const zebra = async () => (await router.routes(f)).filter((r) => r.installed).map((r) => `${r.prefix} via ${r.nexthops[0]?.ip} dev ${r.nexthops[0]?.dev}`).sort();
      const kernel = async () => (await ipIn(underlay.routerNs).routes(f, ["proto", "bgp"])).map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`).sort();
      let seen = "";
      const same = async () => (seen = JSON.stringify([await zebra(), await kernel()])) === JSON.stringify([want(f), want(f)]);
      await until(`IPv${f} node subnets installed by zebra`, same, undefined, () => `${seen}\n${logs()}`);
      expect(await zebra()).toEqual(want(f));
      expect(await kernel()).toEqual(want(f));
    }
  });

  it("carries pod traffic between the segments over the routes BIRD learned, and over nothing else", async () => {
    const [b1, , b3] = birds as [BirdNode, BirdNode, BirdNode];
    // No default route on the nodes and nothing installed yet: segment b is out of reach.
    expect(await ping(b1.podNs, podIps(3)[0])).toBe(false);
    const plans = new Map<BirdNode, RouteSpec[]>();
    for (const b of birds) {
      const plan = await until(`node-${b.index}'s BIRD learning the other nodes' subnets`, async () => {
        const p = await planOf(b);
        return p.routes.length === 2 * (NODES.length - 1) && p;
      }, undefined, logs);
      expect(plan.refused.map((r) => r.prefix)).toEqual([]);
      plans.set(b, plan.routes);
      for (const r of plan.routes) {
        await ipIn(b.node.ns).exec(["route", "replace", r.dst, "via", r.via, "dev", r.dev, "proto", 150], `install ${r.dst} on node-${b.index}`);
      }
    }
    // Across the router every first hop is the router's leg on the node's segment, IPv6 a global address.
    const routerLeg = (b: BirdNode, dst: string) => (dst.includes(":") ? `${SEGMENTS[b.node.segment].prefix6}:1` : `${SEGMENTS[b.node.segment].prefix}.1`);
    expect(plans.get(b3)!.map((r) => `${r.dst} via ${r.via}`)).toEqual(plans.get(b3)!.map((r) => `${r.dst} via ${routerLeg(b3, r.dst)}`));
    const toB3 = plans.get(b1)!.filter((r) => subnets(3).includes(r.dst));
    expect(toB3.map((r) => r.via)).toEqual([`${SEGMENTS.a.prefix}.1`, `${SEGMENTS.a.prefix6}:1`]);
    for (const r of [...plans.values()].flat()) expect(r.via).not.toMatch(/^fe80:/i);

    for (const [from, to] of [[1, 3], [3, 1], [2, 3], [3, 2], [1, 2]] as const) {
      for (const family of [0, 1] as const) {
        const dst = podIps(to)[family];
        expect(`${from} -> ${dst}: ${await ping(birds[from - 1]!.podNs, dst)}`).toBe(`${from} -> ${dst}: true`);
      }
    }
  });

  it("refuses what the hostile node announces outside the cluster or of another length than a pod subnet", async () => {
    const bad = birds.find((b) => b.index === HOSTILE)!;
    // Its BIRD did send them: the router sessions exported its subnet and the extra prefixes.
    const exported = (parseProtocols(await bad.control.request("show protocols all")))
      .filter((p) => p.proto === "BGP")
      .flatMap((p) => p.channels.map((c) => `${c.name} ${c.exported}`))
      .sort();
    expect(exported).toEqual([`ipv4 ${1 + HOSTILE4.length}`, `ipv6 ${1 + HOSTILE6.length}`]);
    for (const f of [4, 6] as const) {
      const held = (await router.routes(f)).map((r) => r.prefix);
      const bgp = JSON.parse(await router.vtysh("bgpd", `show bgp ipv${f} unicast json`)) as { routes?: Record<string, unknown> };
      for (const p of f === 4 ? HOSTILE4 : HOSTILE6) {
        expect(held).not.toContain(p);
        expect(Object.keys(bgp.routes ?? {})).not.toContain(p);
      }
      expect(Object.keys(bgp.routes ?? {}).sort()).toEqual(birds.map((b) => subnets(b.index)[f === 4 ? 0 : 1]).sort());
    }
    const hostileSessions = (await sessionsOf()).filter((s) => s.peer === bad.node.ip || s.peer === bad.node.ip6);
    expect(hostileSessions.map((s) => `${s.family} ${s.pfxRcd}`)).toEqual(["4 1", "6 1"]);
  });
});
