import { describe, expect, it } from "vitest";
import type { NodeLease } from "../types.js";
import type { Address, Scope } from "../../shared/kernel/types.js";
import { auto, autoPath } from "./auto.js";
import { hostGw, hostGwPath } from "./host-gw.js";
import { desiredDatapath, onLinkPrefix, underlayAddresses, type NodeView } from "./kind.js";
import { vxlan, vxlanPath } from "./vxlan.js";

const lease = (nodeName: string, publicIP: string, subnets: string[], mac?: string): NodeLease => ({
  nodeName,
  publicIP,
  subnets,
  backend: { type: "vxlan", vni: 1, port: 4789, ...(mac ? { vtepMAC: mac } : {}) },
});

const view: NodeView = {
  local: { nodeName: "node-a", publicIP: "192.168.1.2", underlayDev: "eth0", underlayMTU: 1500 },
  lease: lease("node-a", "192.168.1.2", ["10.244.1.0/24"]),
  underlayPrefixes: ["192.168.1.0/24"],
  vtep: { dev: "twill.1", vni: 1, port: 4789 },
};
const adjacent = lease("node-b", "192.168.1.3", ["10.244.2.0/24", "fd00:0:0:2::/64"], "02:00:00:00:00:0b");
const remote = lease("node-c", "10.1.2.3", ["10.244.3.0/24"], "02:00:00:00:00:0c");

describe("onLinkPrefix", () => {
  it("finds the connected prefix holding an address, null outside all of them", () => {
    expect(onLinkPrefix("192.168.1.200", ["10.0.0.0/8", "192.168.1.0/24"])).toBe("192.168.1.0/24");
    expect(onLinkPrefix("192.168.2.1", ["192.168.1.0/24"])).toBeNull();
    expect(onLinkPrefix("fd00::5", ["192.168.1.0/24", "fd00::/64"])).toBe("fd00::/64");
  });
});

describe("hostGwPath", () => {
  it("routes an adjacent peer's subnet via its underlay address", () => {
    const path = hostGwPath(lease("node-b", "192.168.1.3", ["10.244.2.0/24"]), view);
    expect(path.errors).toEqual([]);
    expect(path.entries.routes).toEqual([{ dst: "10.244.2.0/24", via: "192.168.1.3", dev: "eth0", onlink: false }]);
  });

  it("reports a peer on another segment instead of installing a route that cannot work", () => {
    const path = hostGwPath(remote, view);
    expect(path.route).toBeNull();
    expect(path.entries.routes).toEqual([]);
    expect(path.errors).toEqual([
      "peer node-c 10.1.2.3 is not on the same L2 segment as eth0 (192.168.1.0/24): host-gw needs L2-adjacent nodes; use vxlan or auto",
    ]);
  });

  it("reports a pod family the underlay family cannot carry, and routes the other", () => {
    const path = hostGwPath(adjacent, view);
    expect(path.entries.routes.map((r) => r.dst)).toEqual(["10.244.2.0/24"]);
    expect(path.errors).toEqual([
      "peer node-b subnet fd00:0:0:2::/64 is IPv6 but the peer has no IPv6 underlay address: " +
        "host-gw routes a pod family only via a next hop of the same family; use vxlan or auto",
    ]);
  });
});

describe("hostGwPath over IPv6 and dual-stack underlays", () => {
  const view6: NodeView = {
    local: { nodeName: "node-a", publicIP: "fd00:77::11", underlayDev: "eth0", underlayMTU: 1500 },
    lease: lease("node-a", "fd00:77::11", ["fd00:10:244:1::/64"]),
    underlayPrefixes: ["fd00:77::/64"],
    vtep: null,
  };
  const dualView: NodeView = { ...view, underlayPrefixes: ["192.168.1.0/24", "fd00:77::/64"] };
  const withIps = (l: NodeLease, underlayIPs: string[]): NodeLease => ({ ...l, backend: { ...l.backend, underlayIPs } });

  it("routes an IPv6 pod subnet via an adjacent peer's IPv6 underlay address", () => {
    const path = hostGwPath(lease("node-b", "fd00:77::12", ["fd00:10:244:2::/64"]), view6);
    expect(path.errors).toEqual([]);
    expect(path.entries.routes).toEqual([{ dst: "fd00:10:244:2::/64", via: "fd00:77::12", dev: "eth0", onlink: false }]);
  });

  it("reports an IPv6 peer on another segment", () => {
    const path = hostGwPath(lease("node-c", "fd00:88::13", ["fd00:10:244:3::/64"]), view6);
    expect(path.route).toBeNull();
    expect(path.errors).toEqual([
      "peer node-c fd00:88::13 is not on the same L2 segment as eth0 (fd00:77::/64): host-gw needs L2-adjacent nodes; use vxlan or auto",
    ]);
  });

  it("routes each family of a dual-stack peer via the next hop of that family", () => {
    const path = hostGwPath(withIps(adjacent, ["192.168.1.3", "fd00:77::12"]), dualView);
    expect(path.errors).toEqual([]);
    expect(path.entries.routes).toEqual([
      { dst: "10.244.2.0/24", via: "192.168.1.3", dev: "eth0", onlink: false },
      { dst: "fd00:0:0:2::/64", via: "fd00:77::12", dev: "eth0", onlink: false },
    ]);
    expect(autoPath(withIps(adjacent, ["192.168.1.3", "fd00:77::12"]), dualView).route).toBe("host-gw");
  });

  it("takes a link-local IPv6 next hop of a peer its IPv4 address shows adjacent", () => {
    const path = hostGwPath(withIps(adjacent, ["192.168.1.3", "fe80::b"]), view);
    expect(path.errors).toEqual([]);
    expect(path.entries.routes[1]).toEqual({ dst: "fd00:0:0:2::/64", via: "fe80::b", dev: "eth0", onlink: false });
  });

  it("reports a global next hop of the other family that is off this link, and routes the rest", () => {
    const path = hostGwPath(withIps(adjacent, ["192.168.1.3", "fd00:99::12"]), dualView);
    expect(path.entries.routes.map((r) => r.dst)).toEqual(["10.244.2.0/24"]);
    expect(path.errors).toEqual([
      "peer node-b fd00:99::12 is not on the same L2 segment as eth0 (192.168.1.0/24, fd00:77::/64): host-gw needs L2-adjacent nodes; use vxlan or auto",
    ]);
    expect(autoPath(withIps(adjacent, ["192.168.1.3", "fd00:99::12"]), dualView).route).toBe("vxlan");
  });
});

describe("underlayAddresses", () => {
  const a = (ip: string, scope: Scope = "global", prefixLength = 64): Address => ({ family: ip.includes(":") ? 6 : 4, ip, prefixLength, scope });

  it("publishes the public IP and the first global address of the other family", () => {
    expect(underlayAddresses("192.168.1.2", [a("192.168.1.2", "global", 24), a("fe80::2", "link"), a("fd00:77::2"), a("fd00:77::9")])).toEqual(["192.168.1.2", "fd00:77::2"]);
    expect(underlayAddresses("fd00:77::2", [a("fd00:77::2"), a("192.168.1.2", "global", 24)])).toEqual(["fd00:77::2", "192.168.1.2"]);
  });

  it("falls back to the IPv6 link-local address, and to the public IP alone", () => {
    expect(underlayAddresses("192.168.1.2", [a("192.168.1.2", "global", 24), a("fe80::2", "link")])).toEqual(["192.168.1.2", "fe80::2"]);
    expect(underlayAddresses("fd00:77::2", [a("fd00:77::2"), a("fe80::2", "link")])).toEqual(["fd00:77::2"]);
  });
});

describe("vxlanPath", () => {
  it("gives one FDB entry and, per subnet, a neighbor and an onlink route via the VTEP", () => {
    const path = vxlanPath(adjacent, view);
    expect(path.errors).toEqual([]);
    expect(path.entries).toEqual({
      fdb: [{ mac: "02:00:00:00:00:0b", dst: "192.168.1.3", dev: "twill.1" }],
      neighbors: [
        { ip: "10.244.2.0", mac: "02:00:00:00:00:0b", dev: "twill.1" },
        { ip: "fd00:0:0:2::", mac: "02:00:00:00:00:0b", dev: "twill.1" },
      ],
      routes: [
        { dst: "10.244.2.0/24", via: "10.244.2.0", dev: "twill.1", onlink: true },
        { dst: "fd00:0:0:2::/64", via: "fd00:0:0:2::", dev: "twill.1", onlink: true },
      ],
    });
  });

  it("reports a peer without a VTEP MAC or with another VNI", () => {
    expect(vxlanPath(lease("node-d", "192.168.1.4", ["10.244.4.0/24"]), view).errors[0]).toMatch(/node-d: publishes no VTEP MAC/);
    const otherVni = { ...remote, backend: { ...remote.backend, vni: 7 } };
    expect(vxlanPath(otherVni, view).errors[0]).toMatch(/uses VNI 7, this node 1/);
  });
});

describe("a peer switching backend", () => {
  it("is reached by a direct route while it still publishes host-gw and is on the segment", () => {
    const hostGwPeer: NodeLease = { nodeName: "node-b", publicIP: "192.168.1.3", subnets: ["10.244.2.0/24"], backend: { type: "host-gw" } };
    const path = vxlanPath(hostGwPeer, view);
    expect(path).toMatchObject({ route: "host-gw", errors: [] });
    expect(path.entries.routes).toEqual([{ dst: "10.244.2.0/24", via: "192.168.1.3", dev: "eth0", onlink: false }]);
    const offSegment = { ...hostGwPeer, publicIP: "10.1.2.3" };
    expect(vxlanPath(offSegment, view).errors[0]).toMatch(/node-b: publishes no VTEP MAC \(its backend is host-gw\)/);
  });
});

describe("autoPath", () => {
  it("takes host-gw for an adjacent single-family peer and VXLAN for the others", () => {
    expect(autoPath(lease("node-b", "192.168.1.3", ["10.244.2.0/24"], "02:00:00:00:00:0b"), view).route).toBe("host-gw");
    expect(autoPath(remote, view).route).toBe("vxlan");
    expect(autoPath(adjacent, view).route).toBe("vxlan");
  });
});

describe("desiredDatapath", () => {
  it("leaves out this node, duplicates and lapsed leases, and collects errors per peer", () => {
    const lapsed = { ...lease("node-e", "192.168.1.5", ["10.244.5.0/24"], "02:00:00:00:00:0e"), expiresAt: 1000 };
    const out = desiredDatapath([view.lease, remote, lapsed, remote], view, hostGwPath, 2000);
    expect(Object.keys(out.routes)).toEqual(["node-c"]);
    expect(out.errors.map((e) => e.peer)).toEqual(["node-c"]);
    expect(out.state.routes).toEqual([]);
  });
});

describe("a peer listing this node's own subnet", () => {
  it("is not routed and is reported, until one of the two leases gives way", () => {
    const thief = lease("node-t", "192.168.1.9", ["10.244.1.0/24"], "02:00:00:00:00:09");
    const out = desiredDatapath([thief, adjacent], view, vxlanPath, 0);
    expect(out.routes["node-t"]).toBeNull();
    expect(out.state.routes.map((r) => r.dst)).toEqual(["10.244.2.0/24", "fd00:0:0:2::/64"]);
    expect(out.errors).toEqual([{ peer: "node-t", message: expect.stringMatching(/lists 10.244.1.0\/24, which overlaps this node's own subnet/) }]);
  });
});

describe("the MTU overhead of each backend", () => {
  it("is 50 for VXLAN over IPv4, 70 over IPv6, 0 for host-gw, and auto takes VXLAN's", () => {
    expect([vxlan.overhead(4), vxlan.overhead(6), hostGw.overhead(4), auto.overhead(6)]).toEqual([50, 70, 0, 70]);
  });
});

describe("desiredDatapath with a record that breaks its path finder", () => {
  it("fails that peer alone; every other peer is programmed", () => {
    const broken = { ...lease("node-x", "192.168.1.9", ["not a cidr"], "02:00:00:00:00:09") };
    const out = desiredDatapath([adjacent, broken, remote], view, vxlanPath, 0);
    expect(out.routes).toEqual({ "node-b": "vxlan", "node-c": "vxlan", "node-x": null });
    expect(out.state.routes.map((r) => r.dst)).toEqual(["10.244.2.0/24", "fd00:0:0:2::/64", "10.244.3.0/24"]);
    expect(out.errors).toEqual([{ peer: "node-x", message: 'peer node-x: invalid CIDR "not a cidr"' }]);
  });
});
