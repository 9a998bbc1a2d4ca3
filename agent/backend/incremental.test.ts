import { describe, expect, it } from "vitest";
import type { NodeLease } from "../types.js";
import { PeerPaths, planPeerUpdate, planProgrammedChange, programmedFrom, programmedState } from "./incremental.js";
import type { NodeView } from "./kind.js";
import { vxlanPath } from "./vxlan.js";
import { planDatapath, type DatapathState } from "./plan.js";

const NOW = 1_000;
const peer = (i: number, mac = `02:00:00:00:00:${i.toString(16).padStart(2, "0")}`): NodeLease => ({
  nodeName: `node-${i}`,
  publicIP: `192.168.1.${10 + i}`,
  subnets: [`10.244.${i}.0/24`],
  backend: { type: "vxlan", vni: 1, port: 4789, vtepMAC: mac },
});
const view: NodeView = {
  local: { nodeName: "node-0", publicIP: "192.168.1.10", underlayDev: "eth0", underlayMTU: 1500 },
  lease: peer(0),
  underlayPrefixes: ["192.168.1.0/24"],
  vtep: { dev: "twill.1", vni: 1, port: 4789 },
};
const peers = Array.from({ length: 100 }, (_, i) => peer(i + 1));
const programmed = programmedFrom(peers, view, vxlanPath, NOW);
const touched = (changes: ReturnType<typeof planPeerUpdate>["changes"]) =>
  changes.map((c) => `${c.op} ${c.kind} ${c.kind === "route" ? c.entry.dst : c.kind === "neigh" ? c.entry.ip : c.entry.mac}`);

describe("planPeerUpdate", () => {
  it("programs only a joining peer's entries, out of 100", () => {
    const joined = peer(101);
    const update = planPeerUpdate([...peers, joined], ["node-101"], programmed, view, vxlanPath, NOW);
    expect(touched(update.changes)).toEqual([
      "replace fdb 02:00:00:00:00:65",
      "replace neigh 10.244.101.0",
      "replace route 10.244.101.0/24",
    ]);
    expect(update.programmed.entries.size).toBe(101);
  });

  it("removes only a leaving peer's entries", () => {
    const update = planPeerUpdate(peers.filter((p) => p.nodeName !== "node-7"), ["node-7"], programmed, view, vxlanPath, NOW);
    expect(touched(update.changes)).toEqual(["del fdb 02:00:00:00:00:07", "del neigh 10.244.7.0", "del route 10.244.7.0/24"]);
    expect(update.programmed.entries.has("node-7")).toBe(false);
  });

  it("replaces only what changed of a peer that got a new VTEP MAC, and nothing for a peer that did not change", () => {
    const moved = peers.map((p) => (p.nodeName === "node-3" ? peer(3, "02:aa:00:00:00:03") : p));
    const update = planPeerUpdate(moved, ["node-3", "node-4"], programmed, view, vxlanPath, NOW);
    expect(touched(update.changes)).toEqual(["del fdb 02:00:00:00:00:03", "replace fdb 02:aa:00:00:00:03", "replace neigh 10.244.3.0"]);
  });

  it("records why a joining peer cannot be reached, and forgets it when the peer leaves", () => {
    const noMac = { ...peer(102), backend: { type: "vxlan", vni: 1 } };
    const joined = planPeerUpdate([...peers, noMac], ["node-102"], programmed, view, vxlanPath, NOW);
    expect(joined.changes).toEqual([]);
    expect([...joined.programmed.errors.keys()]).toEqual(["node-102"]);
    const left = planPeerUpdate(peers, ["node-102"], joined.programmed, view, vxlanPath, NOW);
    expect(left.programmed.errors.size).toBe(0);
  });
});

describe("the full reconcile", () => {
  const desired = (): DatapathState => programmedState(programmed);

  it("repairs an entry deleted behind the agent's back, and changes nothing else", () => {
    const kernel = structuredClone(desired());
    expect(planDatapath(desired(), kernel)).toEqual([]);
    kernel.routes = kernel.routes.filter((r) => r.dst !== "10.244.42.0/24");
    kernel.fdb = kernel.fdb.filter((f) => f.mac !== "02:00:00:00:00:09");
    expect(touched(planDatapath(desired(), kernel))).toEqual(["replace fdb 02:00:00:00:00:09", "replace route 10.244.42.0/24"]);
  });
});

describe("planProgrammedChange (a resync whose kernel is known to hold what was programmed)", () => {
  const paths = new PeerPaths(vxlanPath);
  const before = programmedFrom(peers, view, paths, NOW);

  it("plans nothing when no peer changed, looking at none of their entries", () => {
    const again = programmedFrom(peers, { ...view }, paths, NOW);
    expect([...again.entries].every(([name, e]) => before.entries.get(name) === e)).toBe(true);
    expect(planProgrammedChange(before, again)).toEqual([]);
  });

  it("plans only the entries of a peer that changed or left", () => {
    const next = programmedFrom([...peers.slice(0, 40), peer(41, "02:00:00:00:aa:41"), ...peers.slice(41, 99)], view, paths, NOW);
    expect(touched(planProgrammedChange(before, next))).toEqual([
      "del fdb 02:00:00:00:00:29", "del fdb 02:00:00:00:00:64", "replace fdb 02:00:00:00:aa:41",
      "del neigh 10.244.100.0", "replace neigh 10.244.41.0",
      "del route 10.244.100.0/24",
    ]);
  });
});
