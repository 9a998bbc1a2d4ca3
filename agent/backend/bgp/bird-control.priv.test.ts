import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type Daemon } from "../../../testkit/daemon.js";
import { inNetns, ipIn } from "../../../testkit/netns.js";
import { NodeNet, type SimNode } from "../../../testkit/node-net.js";
import { until } from "../../../testkit/until.js";
import { parseConfigureReply, parseProtocols, parseRoutes, parseStatus, type BirdProtocol, type BirdRoute } from "./bird-answers.js";
import { renderBirdConfig, type BirdPeer } from "./bird-config.js";
import { BirdControl, quoteForBird } from "./bird-control.js";

/**
 * A real BIRD 2 per node, in two node namespaces on one segment (testkit's NodeNet: node-0
 * 192.0.2.10, node-1 192.0.2.11, plus 2001:db8::1N here), in a node mesh rendered by
 * bird-config.ts and read through bird-control.ts and bird-answers.ts. node-1 is hostile: its
 * BIRD also announces a prefix outside the cluster, a piece of node-0's subnet and a subnet it
 * does not hold. Every BIRD runs inside a namespace, is started in the foreground and stopped
 * by its PID; the namespaces go with the NodeNet, also when a test fails.
 */

const CLUSTER = ["10.244.0.0/16", "fd10:244::/32"];
const AS = 64512;
const HOSTILE4 = ["198.51.100.0/24", "10.244.10.0/25", "10.244.12.0/24"];
const HOSTILE6 = ["2001:db8:ffff::/48"];

const v6 = (i: number): string => `2001:db8::${10 + i}`;
const subnets = (i: number): string[] => [`10.244.${10 + i}.0/24`, `fd10:244:${10 + i}::/64`];
const lease = (i: number): BirdPeer => ({ nodeName: `node-${i}`, address: `192.0.2.${10 + i}`, subnets: subnets(i) });

interface BirdNode {
  node: SimNode;
  conf: string;
  control: BirdControl;
  daemon: Daemon;
}

/** bird.conf for node `i` given the other nodes' leases. */
function render(i: number, peers: number[]): string {
  const config = renderBirdConfig({
    nodeName: `node-${i}`,
    clusterCIDRs: CLUSTER,
    local: { routerId: `192.0.2.${10 + i}`, addresses: [`192.0.2.${10 + i}`, v6(i)], underlayDev: "eth0", subnets: subnets(i), as: AS },
    peering: { mode: "mesh" },
    peers: peers.map(lease),
  });
  expect(config.refused).toEqual([]);
  return config.text;
}

/** The same file with more announced than the node's lease: what a hostile node's BIRD would send. */
function hostile(text: string): string {
  const more = (list: string[]) => list.map((p) => ` route ${p} unreachable;`).join("");
  const out = text
    .replace(/(protocol static twill_pods4 \{ ipv4;[^}]*)/, `$1${more(HOSTILE4)} `)
    .replace(/(protocol static twill_pods6 \{ ipv6;[^}]*)/, `$1${more(HOSTILE6)} `);
  expect(out).not.toBe(text);
  return out;
}

describe("BIRD driven through its control socket, in a two-node mesh", () => {
  let net: NodeNet;
  const birds: BirdNode[] = [];

  const ask = (b: BirdNode, command: string): Promise<string> => b.control.request(command);
  const protocol = async (b: BirdNode, name: string): Promise<BirdProtocol | undefined> => (await protocols(b)).find((p) => p.name === name);
  const protocols = async (b: BirdNode): Promise<BirdProtocol[]> => parseProtocols(await ask(b, "show protocols all"));
  const routes = async (b: BirdNode, filtered = false): Promise<BirdRoute[]> => {
    const command = filtered ? "show route filtered all" : "show route all";
    return parseRoutes(await ask(b, command), command);
  };
  const learned = async (b: BirdNode): Promise<string[]> =>
    (await routes(b)).filter((r) => r.protocol.startsWith("mesh_")).map((r) => `${r.prefix} via ${r.via} dev ${r.dev} from ${r.protocol}`).sort();
  const log = (b: BirdNode) => () => b.daemon.logTail();

  beforeAll(async () => {
    net = await NodeNet.create(2);
    for (const [i, node] of net.nodes.entries()) {
      await ipIn(node.ns).exec(["addr", "add", `${v6(i)}/64`, "dev", "eth0", "nodad"], `address ${node.name} over IPv6`);
      mkdirSync(node.dir, { recursive: true });
      const conf = join(node.dir, "bird.conf");
      const text = render(i, [1 - i]);
      writeFileSync(conf, i === 1 ? hostile(text) : text);
      const args = ["netns", "exec", node.ns, "bird", "-f", "-c", conf, "-s", join(node.dir, "bird.ctl"), "-P", join(node.dir, "bird.pid")];
      const daemon = startDaemon(`bird ${node.name}`, "ip", args, join(node.dir, "bird.log"));
      birds.push({ node, conf, daemon, control: new BirdControl(join(node.dir, "bird.ctl")) });
    }
  });

  afterAll(async () => {
    for (const b of birds.splice(0)) {
      b.control.close();
      // SIGTERM to the PID it was started with (`ip netns exec` became bird).
      await b.daemon.stop();
    }
    await net?.destroy();
  });

  it("runs each BIRD in the foreground under the PID it was started with", async () => {
    for (const b of birds) {
      const status = parseStatus(await until(`${b.node.name}'s BIRD answering`, () => ask(b, "show status"), undefined, log(b)));
      expect(status.routerId).toBe(b.node.ip);
      expect(Number(readFileSync(join(b.node.dir, "bird.pid"), "utf8").trim())).toBe(b.daemon.pid);
    }
  });

  it("establishes the mesh and learns each other's pod subnets, first hop on the underlay, writing nothing to the kernel", async () => {
    const [a, b] = birds as [BirdNode, BirdNode];
    for (const [self, other] of [[a, b], [b, a]] as const) {
      const name = `mesh_${other.node.name.replace("-", "_")}`;
      const session = await until(`${self.node.name}'s session to ${other.node.name} established`, async () => {
        const p = await protocol(self, name);
        return p?.bgpState === "Established" && p;
      }, undefined, log(self));
      expect(session).toMatchObject({ neighborAddress: other.node.ip, neighborAS: AS, localAS: AS, state: "up" });
    }
    const expected = (i: number) => subnets(i).map((s) => `${s} via ${s.includes(":") ? v6(i) : `192.0.2.${10 + i}`} dev eth0 from mesh_node_${i}`);
    await until("node-0 learning node-1's subnets", async () => JSON.stringify(await learned(a)) === JSON.stringify(expected(1)), undefined, log(a));
    await until("node-1 learning node-0's subnets", async () => JSON.stringify(await learned(b)) === JSON.stringify(expected(0)), undefined, log(b));
    for (const bird of birds) {
      const r = await inNetns(bird.node.ns, ["ip", "route", "show", "proto", "bird"]);
      expect(r.exitCode).toBe(0);
      expect(String(r.stdout).trim()).toBe("");
      const all = await inNetns(bird.node.ns, ["ip", "-6", "route", "show", "proto", "bird"]);
      expect(String(all.stdout).trim()).toBe("");
    }
  });

  it("refuses what the hostile node announces beyond its lease, keeps it visible as filtered, and counts it", async () => {
    const [a] = birds as [BirdNode, BirdNode];
    const refused = await until("node-0's filtered routes", async () => {
      const list = (await routes(a, true)).map((r) => `${r.prefix} from ${r.protocol}`).sort();
      return list.length === HOSTILE4.length + HOSTILE6.length && list;
    }, undefined, log(a));
    expect(refused).toEqual([...HOSTILE4, ...HOSTILE6].map((p) => `${p} from mesh_node_1`).sort());
    const accepted = (await routes(a)).map((r) => r.prefix);
    for (const p of [...HOSTILE4, ...HOSTILE6]) expect(accepted).not.toContain(p);
    const session = (await protocol(a, "mesh_node_1"))!;
    expect(session.channels.map((c) => [c.name, c.imported, c.filtered])).toEqual([
      ["ipv4", 1, HOSTILE4.length],
      ["ipv6", 1, HOSTILE6.length],
    ]);
  });

  it("adds a third node's lease by a reload that touches no existing session, and still refuses its subnet from another node", async () => {
    const [a] = birds as [BirdNode, BirdNode];
    const before = await protocols(a);
    expect(before.find((p) => p.name === "mesh_node_1")?.bgpState).toBe("Established");
    const next = `${a.conf}.new`;
    writeFileSync(next, render(0, [1, 2]));
    expect(parseConfigureReply(await ask(a, `configure check ${quoteForBird(next)}`))).toMatchObject({ outcome: "checked" });
    const reloadAt = Date.now();
    const reply = parseConfigureReply(await ask(a, `configure ${quoteForBird(next)}`));
    expect(["reconfigured", "in progress"]).toContain(reply.outcome);

    const added = await until("node-0's session to node-2 configured", () => protocol(a, "mesh_node_2"), undefined, log(a));
    expect(added).toMatchObject({ neighborAddress: "192.0.2.12", proto: "BGP" });
    expect(added.bgpState).not.toBe("Established");
    const after = await protocols(a);
    expect(after.map((p) => p.name).sort()).toEqual([...before.map((p) => p.name), "mesh_node_2"].sort());
    // Each existing protocol kept its state since before the reload: one the reload restarted
    // would read as in that state since the reload. (BIRD turns its monotonic clock into the
    // wall clock anew at each print, so the same instant may read a millisecond apart.)
    const wallClock = (since: string) => new Date(since.replace(" ", "T")).getTime();
    for (const p of before) {
      const now = after.find((q) => q.name === p.name)!;
      expect([p.name, now.state]).toEqual([p.name, p.state]);
      expect([p.name, wallClock(now.since) < reloadAt]).toEqual([p.name, true]);
    }
    expect(after.find((p) => p.name === "mesh_node_1")?.bgpState).toBe("Established");
    // 10.244.12.0/24 is node-2's now, and still not accepted from node-1.
    const refused = (await routes(a, true)).map((r) => `${r.prefix} from ${r.protocol}`);
    expect(refused).toContain("10.244.12.0/24 from mesh_node_1");
    expect((await learned(a)).filter((r) => r.startsWith("10.244.12.0/24"))).toEqual([]);
  });

  it("keeps the running file when a reload is refused, and says where the file is wrong", async () => {
    const [a] = birds as [BirdNode, BirdNode];
    const broken = `${a.conf}.broken`;
    writeFileSync(broken, `${render(0, [1, 2])}protocol bgp x from twill_mesh {\n`);
    const reply = parseConfigureReply(await ask(a, `configure ${quoteForBird(broken)}`));
    expect(reply.outcome).toBe("refused");
    expect(reply.message).toMatch(new RegExp(`^${broken.replace(/[.]/g, "\\.")}:\\d+:\\d+ `));
    expect((await protocols(a)).map((p) => p.name)).toContain("mesh_node_2");
  });

  it("accepts every file rendered from hostile node names, addresses and subnets (bird -p)", async () => {
    const [a] = birds as [BirdNode, BirdNode];
    const file = join(a.node.dir, "hostile.conf");
    const names = ['x"; } protocol kernel k { ipv4 { export all; }; } #', "Node.With.Caps", "a".repeat(253), "ünï-côdé", "a--b", "-", "node-9"];
    const config = renderBirdConfig({
      nodeName: "node-0",
      clusterCIDRs: CLUSTER,
      local: { routerId: "192.0.2.10", addresses: ["192.0.2.10", v6(0)], underlayDev: "eth0", subnets: subnets(0), as: AS },
      peering: { mode: "mesh" },
      peers: [
        ...names.map((nodeName, k) => ({ nodeName, address: `192.0.2.${100 + k}`, subnets: [`10.244.${100 + k}.0/24`, `fd10:244:${100 + k}::/64`] })),
        { nodeName: "bad-address", address: "192.0.2.200; export all", subnets: ["10.244.200.0/24"] },
        { nodeName: "bad-subnet", address: "192.0.2.201", subnets: ["10.244.201.0/24 ] then accept;"] },
      ],
    });
    expect(config.sessions).toHaveLength(names.length + 1);
    writeFileSync(file, config.text);
    const parsed = await inNetns(a.node.ns, ["bird", "-p", "-c", file]);
    expect(String(parsed.stderr)).toBe("");
    expect(parsed.exitCode).toBe(0);
    const routers = renderBirdConfig({
      nodeName: "node-0",
      clusterCIDRs: CLUSTER,
      local: { routerId: "192.0.2.10", addresses: ["192.0.2.10", v6(0)], underlayDev: "eth0", subnets: subnets(0), as: 65010 },
      peering: { mode: "routers", routers: [{ address: "192.0.2.1", as: 65000 }, { address: "2001:db8::1", as: 65010 }] },
      peers: [{ ...lease(1), as: 65011 }, { ...lease(2), as: 65010 }],
    });
    writeFileSync(file, routers.text);
    const routersParsed = await inNetns(a.node.ns, ["bird", "-p", "-c", file]);
    expect(String(routersParsed.stderr)).toBe("");
    expect(routersParsed.exitCode).toBe(0);
  });
});
