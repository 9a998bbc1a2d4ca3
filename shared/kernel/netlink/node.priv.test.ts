import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { IpRoute, listFdb, listOwnedRoutes, listPermanentNeighbors } from "../../../testkit/iproute.js";
import { addNetns, deleteNetns, netnsPath } from "../../../testkit/netns.js";
import type { DatapathChange, NodeKernel } from "../node-kernel.js";
import { ensureVtep } from "../vxlan.js";
import { libc } from "./libc.js";
import { netlinkNode } from "./node.js";

// The agent's kernel path for real, in a namespace of its own: what it programs is read back
// both by itself and by iproute2 (an independent view), a change the kernel refuses fails
// alone, and its watches see what moved. Runs where bun:ffi is (the privileged tier runs on Bun).
// Each test has a namespace of its own: one deletes the VTEP, and none may depend on another.

const ns = `twnk${process.pid.toString(36)}`;
const VTEP = "twill.9";
let kernel: NodeKernel;
let ip: IpRoute;

const peers = [2, 3, 4].map((n) => ({ mac: `02:00:00:00:00:0${n}`, underlay: `10.78.0.${n}`, subnet: `10.245.${n}.0/24`, vtepIp: `10.245.${n}.0` }));
const want = (p: (typeof peers)[number]): DatapathChange[] => [
  { op: "replace", kind: "fdb", entry: { mac: p.mac, dst: p.underlay, dev: VTEP } },
  { op: "replace", kind: "neigh", entry: { ip: p.vtepIp, mac: p.mac, dev: VTEP } },
  { op: "replace", kind: "route", entry: { dst: p.subnet, via: p.vtepIp, dev: VTEP, onlink: true } },
];
const sorted = <T>(xs: T[]): T[] => [...xs].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

beforeEach(async () => {
  await addNetns(ns);
  ip = new IpRoute(netnsPath(ns));
  await ip.batch(
    [["link", "add", "u0", "type", "veth", "peer", "name", "u1"], ["addr", "add", "10.78.0.1/24", "dev", "u0"], ["link", "set", "u0", "up"], ["link", "set", "u1", "up"]],
    "set up the underlay",
  );
  kernel = netlinkNode(libc()!, netnsPath(ns));
  await ensureVtep(kernel, { name: VTEP, vni: 9, port: 4789, local: "10.78.0.1", dev: "u0", mac: "02:aa:00:00:00:01", mtu: 1450, addresses: ["10.245.1.0/32"] });
});
afterEach(async () => {
  kernel?.close();
  await deleteNetns(ns);
});

describe("the agent's kernel over netlink", () => {
  it("programs peers' FDB entries, neighbors and routes, reads them back as iproute2 does, and deletes them", async () => {
    expect(await kernel.applyDatapath(peers.flatMap(want))).toEqual([]);
    const mine = { routes: await kernel.ownedRoutes(), fdb: await kernel.fdb(VTEP), neigh: await kernel.permanentNeighbors(VTEP) };
    const theirs = { routes: await listOwnedRoutes(ip), fdb: await listFdb(ip, VTEP), neigh: await listPermanentNeighbors(ip, VTEP) };
    expect(sorted(mine.routes)).toEqual(sorted(theirs.routes));
    expect(sorted(mine.fdb)).toEqual(sorted(theirs.fdb));
    expect(sorted(mine.neigh)).toEqual(sorted(theirs.neigh));
    expect(sorted(theirs.routes)).toEqual(peers.map((p) => ({ dst: p.subnet, via: p.vtepIp, dev: VTEP, onlink: true })));
    expect(sorted(theirs.fdb)).toEqual(peers.map((p) => ({ mac: p.mac, dst: p.underlay, dev: VTEP })));

    // A peer moves (new underlay address, same MAC): its FDB entry is replaced in place.
    expect(await kernel.applyDatapath([{ op: "replace", kind: "fdb", entry: { mac: peers[0]!.mac, dst: "10.78.0.99", dev: VTEP } }])).toEqual([]);
    expect((await listFdb(ip, VTEP)).filter((f) => f.mac === peers[0]!.mac)).toEqual([{ mac: peers[0]!.mac, dst: "10.78.0.99", dev: VTEP }]);

    const gone = peers[2]!;
    const removal = want(gone).map((c) => ({ ...c, op: "del" as const }));
    expect(await kernel.applyDatapath(removal)).toEqual([]);
    expect((await listOwnedRoutes(ip)).map((r) => r.dst)).not.toContain(gone.subnet);
    expect((await listPermanentNeighbors(ip, VTEP)).map((n) => n.ip)).not.toContain(gone.vtepIp);
    // Deleting what is gone already is done, not an error.
    expect(await kernel.applyDatapath(removal)).toEqual([]);
  });

  it("programs and removes 1000 peers' 3000 entries in one call, every one acked (a batch's acks must not overflow the socket)", async () => {
    const many = Array.from({ length: 1000 }, (_, i) => {
      const mac = `02:00:00:01:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
      const subnet = `10.${100 + (i >> 8)}.${i & 255}.0`;
      return [
        { op: "replace", kind: "fdb", entry: { mac, dst: `10.78.${1 + (i >> 8)}.${i & 255}`, dev: VTEP } },
        { op: "replace", kind: "neigh", entry: { ip: subnet, mac, dev: VTEP } },
        { op: "replace", kind: "route", entry: { dst: `${subnet}/24`, via: subnet, dev: VTEP, onlink: true } },
      ] as DatapathChange[];
    }).flat();
    expect(await kernel.applyDatapath(many)).toEqual([]);
    const routes = (await listOwnedRoutes(ip)).filter((r) => /^10\.1(0[0-3])\./.test(r.dst));
    expect(routes).toHaveLength(1000);
    expect((await kernel.fdb(VTEP)).filter((f) => f.mac.startsWith("02:00:00:01:"))).toHaveLength(1000);
    expect(await kernel.applyDatapath(many.map((c) => ({ ...c, op: "del" as const })))).toEqual([]);
    expect((await kernel.ownedRoutes()).filter((r) => /^10\.1(0[0-3])\./.test(r.dst))).toEqual([]);
  });

  it("fails a change the kernel refuses alone, with its errno and entry, and applies the rest", async () => {
    const bad: DatapathChange = { op: "replace", kind: "route", entry: { dst: "10.245.7.0/24", via: "10.245.7.0", dev: "no-such-dev", onlink: true } };
    const wrongGateway: DatapathChange = { op: "replace", kind: "route", entry: { dst: "10.245.8.0/24", via: "10.99.0.1", dev: VTEP, onlink: false } };
    const good: DatapathChange = { op: "replace", kind: "route", entry: { dst: "10.245.6.0/24", via: "10.245.6.0", dev: VTEP, onlink: true } };
    const refused = await kernel.applyDatapath([bad, wrongGateway, good]);
    expect(refused.map((r) => [r.change, r.error.errno])).toEqual([
      [bad, 19],
      [wrongGateway, expect.any(Number)],
    ]);
    expect(refused[0]!.error.message).toContain("set route 10.245.7.0/24 via 10.245.7.0 dev no-such-dev");
    expect(refused[1]!.error.message).toMatch(/set route 10\.245\.8\.0\/24 via 10\.99\.0\.1 dev twill\.9: .+\(E[A-Z]+\)/);
    expect((await listOwnedRoutes(ip)).map((r) => r.dst)).toContain("10.245.6.0/24");
  });

  it("tells what moved since the last look: nothing, a route by another hand, the VTEP deleted", async () => {
    const watch = kernel.watchDatapath();
    try {
      expect(await watch.sinceLast(VTEP)).toEqual({ entries: true, devicesDeleted: false }); // the first look
      expect(await watch.sinceLast(VTEP)).toEqual({ entries: false, devicesDeleted: false });
      await ip.exec(["route", "add", "10.246.0.0/24", "via", "10.78.0.7", "dev", "u0"], "add a route by hand");
      expect((await watch.sinceLast(VTEP)).entries).toBe(true);
      expect((await watch.sinceLast(VTEP)).entries).toBe(false);
      // ARP on another device is not the VTEP's.
      await ip.exec(["neigh", "add", "10.78.0.50", "lladdr", "02:00:00:00:00:50", "dev", "u0"], "add a neighbor on the underlay");
      await ip.exec(["neigh", "add", "10.245.9.0", "lladdr", "02:00:00:00:00:09", "dev", VTEP, "nud", "permanent"], "add a neighbor on the VTEP");
      expect((await watch.sinceLast(VTEP)).entries).toBe(true);
      await ip.deleteLink(VTEP);
      expect(await watch.sinceLast(VTEP, ["u0"])).toEqual({ entries: true, devicesDeleted: true });
    } finally {
      watch.close();
    }
  });

  it("reads a table's named counters as nft lists them, and null for a table that is not there", async () => {
    expect(await kernel.nftCounters("twill-counters")).toBeNull();
    await kernel.nft(["-f", "-"], "add a table with counters", "table inet twill-counters {\n  counter a {\n    packets 7 bytes 420\n  }\n  counter b {\n  }\n}\n");
    try {
      const mine = await kernel.nftCounters("twill-counters");
      expect(mine).toEqual(await ip.nftCounters("twill-counters"));
      expect([...mine!].sort()).toEqual([["a", 7], ["b", 0]]);
    } finally {
      await kernel.nft(["delete", "table", "inet", "twill-counters"], "delete the table");
    }
  });

  it("tells whether an nftables table changed, and nothing for another table", async () => {
    const watch = kernel.watchTable("inet", "twill-nktest");
    try {
      expect(await watch.sinceLast()).toBe(true);
      expect(await watch.sinceLast()).toBe(false);
      await kernel.nft(["-f", "-"], "add another table", "table inet other-nktest {\n  chain c {\n  }\n}\n");
      expect(await watch.sinceLast()).toBe(false);
      await kernel.nft(["-f", "-"], "add the table", "table inet twill-nktest {\n  chain c {\n  }\n}\n");
      expect(await watch.sinceLast()).toBe(true);
      expect(await watch.sinceLast()).toBe(false);
      await kernel.nft(["delete", "table", "inet", "twill-nktest"], "delete the table");
      expect(await watch.sinceLast()).toBe(true);
    } finally {
      watch.close();
    }
  });
});
