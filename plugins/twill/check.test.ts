import { describe, expect, it } from "vitest";
import type { Result } from "../../shared/cni/types.js";
import type { Link, LinkAddresses, Route } from "../../shared/kernel/types.js";
import { expectedFromResult, nodeProblems, podProblems, routeMatches } from "./check.js";

const at = { containerId: "c1", ifname: "eth0", netns: "/var/run/netns/p1" };
const prev: Result = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "02:00:00:00:00:01" },
    { name: "vethaaaaaaaaaaa", mac: "02:00:00:00:00:02" },
    { name: "eth0", mac: "0a:58:0a:01:00:05", sandbox: "/var/run/netns/p1" },
  ],
  ips: [{ address: "10.1.0.5/24", gateway: "10.1.0.1", interface: 2 }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "10.96.0.0/12" }],
};
const exp = expectedFromResult(prev, at, "cni0", "vethaaaaaaaaaaa");

const link = (name: string, kind: string, extra: Partial<Link> = {}): Link => ({
  index: 1, name, up: true, lowerUp: true, mtu: 1500, kind, ...extra,
});
const nodeLinks = () => [link("cni0", "bridge"), link("vethaaaaaaaaaaa", "veth", { master: "cni0", portKind: "bridge", peerIndex: 2 })];
const podLinks = () => [link("lo", "loopback"), link("eth0", "veth", { index: 2, mac: "0a:58:0a:01:00:05" })];
const podAddrs = (prefixLength = 24): LinkAddresses[] => [{ index: 2, name: "eth0", addresses: [{ family: 4, ip: "10.1.0.5", prefixLength, scope: "global" }] }];
const route = (dst: string, extra: Partial<Route> = {}): Route => ({
  family: dst.includes(":") ? 6 : 4, dst, protocol: 3, scope: "global", onlink: false, table: "main", ...extra,
});
const podRoutes = (): Route[] => [
  route("0.0.0.0/0", { gateway: "10.1.0.1", dev: "eth0" }),
  route("10.96.0.0/12", { gateway: "10.1.0.1", dev: "eth0" }),
  route("10.1.0.0/24", { dev: "eth0", scope: "link", protocol: 2 }),
];

describe("CHECK comparisons", () => {
  it("reads the expected state from prevResult", () => {
    expect(exp).toMatchObject({ mac: "0a:58:0a:01:00:05", addresses: ["10.1.0.5/24"] });
    expect(() => expectedFromResult({ cniVersion: "1.1.0" }, at, "cni0", "v")).toThrow(/prevResult has no interface "eth0" in \/var\/run\/netns\/p1/);
  });

  it("finds nothing wrong in a healthy attachment", () => {
    expect(nodeProblems(nodeLinks(), exp)).toEqual([]);
    expect(podProblems(podLinks(), podAddrs(), podRoutes(), exp, 2)).toEqual([]);
  });

  it("names a missing or wrong bridge", () => {
    expect(nodeProblems(nodeLinks().slice(1), exp)).toContain('bridge "cni0" does not exist');
    expect(nodeProblems([link("cni0", "dummy"), ...nodeLinks().slice(1)], exp)).toContain('"cni0" is a dummy, not a bridge');
  });

  it("names a missing or detached host veth", () => {
    expect(nodeProblems(nodeLinks().slice(0, 1), exp)).toEqual(['host interface "vethaaaaaaaaaaa" does not exist']);
    const detached = [link("cni0", "bridge"), link("vethaaaaaaaaaaa", "veth")];
    expect(nodeProblems(detached, exp)).toEqual(['host interface "vethaaaaaaaaaaa" is not attached to bridge "cni0" (master: none)']);
  });

  it("names a missing pod interface, a wrong peer, a changed MAC", () => {
    expect(podProblems([link("lo", "loopback")], [], [], exp, 2)).toEqual(['interface "eth0" in /var/run/netns/p1 does not exist']);
    expect(podProblems(podLinks(), podAddrs(), podRoutes(), exp, 7)).toEqual([
      'interface "eth0" in /var/run/netns/p1 is not the peer of host interface "vethaaaaaaaaaaa"',
    ]);
    const otherMac = [link("eth0", "veth", { index: 2, mac: "02:11:11:11:11:11" })];
    expect(podProblems(otherMac, podAddrs(), podRoutes(), exp, 2)[0]).toMatch(/has MAC 02:11:11:11:11:11, want 0a:58:0a:01:00:05/);
  });

  it("names a missing address and a missing route", () => {
    expect(podProblems(podLinks(), podAddrs(16), podRoutes(), exp, 2)).toEqual(['interface "eth0" in /var/run/netns/p1 has no address 10.1.0.5/24']);
    expect(podProblems(podLinks(), podAddrs(), podRoutes().slice(1), exp, 2)).toEqual(["no route to 0.0.0.0/0 via 10.1.0.1 in /var/run/netns/p1"]);
  });
});

describe("routeMatches", () => {
  it("matches a default route by family and gateway", () => {
    expect(routeMatches(route("0.0.0.0/0", { gateway: "10.1.0.1" }), { dst: "0.0.0.0/0", gw: "10.1.0.1" })).toBe(true);
    expect(routeMatches(route("::/0", { gateway: "fd00::1" }), { dst: "0.0.0.0/0" })).toBe(false);
    expect(routeMatches(route("::/0"), { dst: "0.0.0.0/0" })).toBe(false);
    expect(routeMatches(route("::/0", { gateway: "fd00::1" }), { dst: "::/0", gw: "fd00:0::1" })).toBe(true);
    expect(routeMatches(route("0.0.0.0/0", { gateway: "10.1.0.2" }), { dst: "0.0.0.0/0", gw: "10.1.0.1" })).toBe(false);
  });
  it("compares destinations as prefixes, host routes included", () => {
    expect(routeMatches(route("10.9.9.9/32"), { dst: "10.9.9.9/32" })).toBe(true);
    expect(routeMatches(route("10.9.9.0/24"), { dst: "10.9.9.9/32" })).toBe(false);
    expect(routeMatches(route("fd00::/64"), { dst: "fd00:0:0:0::/64" })).toBe(true);
  });
});
