import { describe, expect, it } from "vitest";
import type { Address, Link, VxlanSettings } from "./types.js";
import { planVtepSettings, stableVtepMac, vtepAddress, vtepMismatch, type VxlanSpec } from "./vxlan.js";

const spec: VxlanSpec = {
  name: "twill.1", vni: 1, port: 4789, local: "192.168.77.2", dev: "eth0",
  mac: "02:11:22:33:44:55", mtu: 1450, addresses: ["10.244.3.0/32"],
};
const link = (settings: Partial<VxlanSettings>, extra: Partial<Link> = {}): Link => ({
  index: 5, name: "twill.1", up: true, lowerUp: true, mtu: 1450, mac: "02:11:22:33:44:55", kind: "vxlan",
  vxlan: { vni: 1, port: 4789, local: "192.168.77.2", underlay: "eth0", learning: false, ...settings },
  ...extra,
});
const address = (ip: string, prefixLength: number, scope: Address["scope"] = "global"): Address => ({ family: ip.includes(":") ? 6 : 4, ip, prefixLength, scope });

describe("stableVtepMac", () => {
  it("is a locally administered unicast MAC that depends only on node name and VNI", () => {
    const mac = stableVtepMac("node-a", 1);
    expect(mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(parseInt(mac.slice(0, 2), 16) & 0x03).toBe(0x02);
    expect(stableVtepMac("node-a", 1)).toBe(mac);
    expect(stableVtepMac("node-b", 1)).not.toBe(mac);
    expect(stableVtepMac("node-a", 2)).not.toBe(mac);
  });
});

describe("vtepMismatch", () => {
  it("accepts a device made to the spec", () => expect(vtepMismatch(link({}), spec)).toBeNull());
  it.each([
    [{ vni: 2 }, /VNI 2, want 1/],
    [{ port: 8472 }, /port 8472, want 4789/],
    [{ local: "192.168.77.9" }, /local 192.168.77.9/],
    [{ local: undefined }, /local \(none\), want 192\.168\.77\.2/],
    [{ underlay: "eth1" }, /underlay eth1, want eth0/],
    [{ learning: true }, /learning/],
  ])("wants a recreate for %j", (data, why) => expect(vtepMismatch(link(data), spec)).toMatch(why));
  it("wants a recreate for a device of another kind", () => {
    expect(vtepMismatch({ ...link({}), kind: "bridge", vxlan: undefined }, spec)).toMatch(/is a bridge, not vxlan/);
  });
});

describe("planVtepSettings", () => {
  it("sets MAC, MTU, addresses and up on a bare device and nothing on a right one", () => {
    const bare = link({}, { up: false, lowerUp: false, mtu: 1500, mac: "aa:bb:cc:dd:ee:ff" });
    expect(planVtepSettings(bare, [], spec)).toEqual([
      { op: "set-link", settings: { dev: "twill.1", mac: "02:11:22:33:44:55", mtu: 1450 } },
      { op: "set-link", settings: { dev: "twill.1", up: true } },
      { op: "add-address", cidr: "10.244.3.0/32" },
    ]);
    expect(planVtepSettings(link({}), [address("10.244.3.0", 32)], spec)).toEqual([]);
  });
  it("leaves addresses alone when the spec names none (before the lease is known)", () => {
    const { addresses: _, ...noAddrs } = spec;
    expect(planVtepSettings(link({}), [address("10.244.9.0", 32)], noAddrs)).toEqual([]);
  });
  it("removes an address of a subnet the node no longer holds, keeps link-local ones", () => {
    const addrs = [address("10.244.9.0", 32), address("fe80::1", 64, "link")];
    expect(planVtepSettings(link({}), addrs, spec)).toEqual([
      { op: "del-address", cidr: "10.244.9.0/32" },
      { op: "add-address", cidr: "10.244.3.0/32" },
    ]);
  });
});

describe("vtepAddress", () => {
  it("is the subnet's network address as a host address", () => {
    expect(vtepAddress("10.244.3.0/24")).toBe("10.244.3.0/32");
    expect(vtepAddress("fd00:0:0:3::/64")).toBe("fd00:0:0:3::/128");
  });
});
