import { describe, expect, it } from "vitest";
import { emptyState, planDatapath, type DatapathState } from "./plan.js";

const route = (dst: string, via: string, dev = "twill.1", onlink = true) => ({ dst, via, dev, onlink });
const neigh = (ip: string, mac: string) => ({ ip, mac, dev: "twill.1" });
const fdb = (mac: string, dst: string) => ({ mac, dst, dev: "twill.1" });

const peerB: DatapathState = {
  routes: [route("10.244.2.0/24", "10.244.2.0")],
  neighbors: [neigh("10.244.2.0", "02:00:00:00:00:02")],
  fdb: [fdb("02:00:00:00:00:02", "192.168.77.3")],
};

describe("planDatapath", () => {
  it("adds every entry of a new peer", () => {
    const changes = planDatapath(peerB, emptyState());
    expect(changes.map((c) => `${c.op} ${c.kind}`)).toEqual(["replace fdb", "replace neigh", "replace route"]);
  });

  it("changes nothing when the kernel already matches", () => {
    expect(planDatapath(peerB, structuredClone(peerB))).toEqual([]);
  });

  it("compares addresses by value and MACs without case", () => {
    const actual: DatapathState = {
      routes: [route("10.244.2.0/24", "10.244.2.0")],
      neighbors: [neigh("10.244.2.0", "02:00:00:00:00:02".toUpperCase())],
      fdb: [fdb("02:00:00:00:00:02", "192.168.77.3")],
    };
    const v6 = { routes: [route("fd00:0:0:2::/64", "fd00:0:0:2::")], neighbors: [neigh("fd00:0:0:2::", "02:aa:00:00:00:01")], fdb: [] };
    const v6Actual = { routes: [route("fd00:0:0:2::/64", "fd00::2:0:0:0:0")], neighbors: [neigh("FD00:0:0:2:0:0:0:0", "02:aa:00:00:00:01")], fdb: [] };
    expect(planDatapath(peerB, actual)).toEqual([]);
    expect(planDatapath(v6, v6Actual)).toEqual([]);
    const moved = { ...v6Actual, routes: [route("fd00:0:0:2::/64", "fd00::3")] };
    expect(planDatapath(v6, moved)).toEqual([{ op: "replace", kind: "route", entry: v6.routes[0] }]);
  });

  it("removes what twill owns and no peer needs (a peer gone while the agent was down)", () => {
    const stale: DatapathState = {
      routes: [...peerB.routes, route("10.244.9.0/24", "10.244.9.0")],
      neighbors: [...peerB.neighbors, neigh("10.244.9.0", "02:00:00:00:00:09")],
      fdb: [...peerB.fdb, fdb("02:00:00:00:00:09", "192.168.77.9")],
    };
    const changes = planDatapath(peerB, stale);
    expect(changes).toEqual([
      { op: "del", kind: "fdb", entry: stale.fdb[1] },
      { op: "del", kind: "neigh", entry: stale.neighbors[1] },
      { op: "del", kind: "route", entry: stale.routes[1] },
    ]);
  });

  it("replaces in place a neighbor and FDB entry whose peer changed its VTEP MAC or address", () => {
    const actual: DatapathState = {
      routes: peerB.routes,
      neighbors: [neigh("10.244.2.0", "02:00:00:00:00:99")],
      fdb: [fdb("02:00:00:00:00:02", "192.168.77.30")],
    };
    const changes = planDatapath(peerB, actual);
    expect(changes).toEqual([
      { op: "replace", kind: "fdb", entry: peerB.fdb[0] },
      { op: "replace", kind: "neigh", entry: peerB.neighbors[0] },
    ]);
  });

  it("moves a route from VXLAN to the underlay when a peer becomes adjacent", () => {
    const hostGw: DatapathState = { routes: [route("10.244.2.0/24", "192.168.77.3", "eth0", false)], neighbors: [], fdb: [] };
    const changes = planDatapath(hostGw, peerB);
    expect(changes.filter((c) => c.kind === "route")).toEqual([{ op: "replace", kind: "route", entry: hostGw.routes[0] }]);
    expect(changes.filter((c) => c.op === "del").map((c) => c.kind)).toEqual(["fdb", "neigh"]);
  });

  it("deletes the extra destinations of one MAC and keeps the wanted one", () => {
    const actual: DatapathState = { ...peerB, fdb: [fdb("02:00:00:00:00:02", "192.168.77.8"), ...peerB.fdb] };
    expect(planDatapath(peerB, actual)).toEqual([{ op: "del", kind: "fdb", entry: actual.fdb[0] }]);
  });
});
