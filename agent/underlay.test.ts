import { describe, expect, it } from "vitest";
import type { Link, LinkAddresses, Route, Scope } from "../shared/kernel/types.js";
import { chooseUnderlay, type UnderlayView } from "./underlay.js";

const link = (name: string, mtu: number): Link => ({ index: 0, name, up: true, lowerUp: true, mtu });
const addrs = (name: string, ...ips: [string, Scope?][]): LinkAddresses => ({
  index: 0,
  name,
  addresses: ips.map(([ip, scope]) => ({ family: ip.includes(":") ? 6 : 4, ip, prefixLength: ip.includes(":") ? 64 : 24, scope: scope ?? "global" })),
});
const defaultRoute = (via: Partial<Route> & { dev: string }): Route => {
  const family = via.gateway?.includes(":") ? 6 : 4;
  return { family, dst: family === 4 ? "0.0.0.0/0" : "::/0", protocol: 3, scope: "global", onlink: false, table: "main", ...via };
};

const view: UnderlayView = {
  routes4: [defaultRoute({ gateway: "192.0.2.1", dev: "eth1" })],
  routes6: [defaultRoute({ gateway: "2001:db8::1", dev: "eth2" })],
  links: [link("lo", 65536), link("eth1", 9001), link("eth2", 1500)],
  addrs: [
    addrs("lo", ["127.0.0.1", "host"]),
    addrs("eth1", ["fe80::1", "link"], ["192.0.2.10"], ["192.0.2.11"]),
    addrs("eth2", ["2001:db8::10"]),
  ],
};

describe("chooseUnderlay", () => {
  it("takes the IPv4 default route's device, its first global address and its MTU", () => {
    expect(chooseUnderlay(view, {})).toEqual({ dev: "eth1", ip: "192.0.2.10", family: 4, mtu: 9001 });
  });

  it("prefers the route's source address", () => {
    const v = { ...view, routes4: [defaultRoute({ dev: "eth1", prefsrc: "192.0.2.11" })] };
    expect(chooseUnderlay(v, {}).ip).toBe("192.0.2.11");
  });

  it("falls back to the IPv6 default route", () => {
    expect(chooseUnderlay({ ...view, routes4: [] }, {})).toEqual({ dev: "eth2", ip: "2001:db8::10", family: 6, mtu: 1500 });
  });

  it("uses --iface", () => {
    expect(chooseUnderlay(view, { iface: "eth2" })).toMatchObject({ dev: "eth2", ip: "2001:db8::10", family: 6 });
  });

  it("finds the device of --public-ip", () => {
    expect(chooseUnderlay(view, { publicIP: "192.0.2.11" })).toMatchObject({ dev: "eth1", ip: "192.0.2.11", mtu: 9001 });
  });

  it("explains what is missing", () => {
    expect(() => chooseUnderlay({ ...view, routes4: [], routes6: [] }, {})).toThrow(/no default route.*--iface or --public-ip/);
    expect(() => chooseUnderlay(view, { iface: "eth9" })).toThrow(/underlay interface "eth9" does not exist/);
    expect(() => chooseUnderlay(view, { publicIP: "203.0.113.5" })).toThrow(/public IP 203.0.113.5 is on no interface/);
    expect(() => chooseUnderlay(view, { publicIP: "nope" })).toThrow(/--public-ip "nope" is not an IP address/);
    expect(() => chooseUnderlay(view, { iface: "lo" })).toThrow(/"lo" has no global address/);
  });
});
