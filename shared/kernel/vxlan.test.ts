import { describe, expect, it } from "vitest";
import type { Link } from "./types.js";
import { planVtepSettings, stableVtepMac, vtepAddress, vtepMismatch, type VxlanSpec } from "./vxlan.js";

const spec: VxlanSpec = {
  name: "twill.1", vni: 1, port: 4789, local: "192.168.77.2", dev: "eth0",
  mac: "02:11:22:33:44:55", mtu: 1450, addresses: ["10.244.3.0/32"],
};
const link = (data: Record<string, unknown>, extra: Partial<Link> = {}): Link => ({
  ifindex: 5, ifname: "twill.1", flags: ["BROADCAST", "UP"], mtu: 1450, address: "02:11:22:33:44:55",
  linkinfo: { info_kind: "vxlan", info_data: { id: 1, port: 4789, local: "192.168.77.2", link: "eth0", learning: false, ...data } },
  ...extra,
});

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
    [{ id: 2 }, /VNI 2, want 1/],
    [{ port: 8472 }, /port 8472, want 4789/],
    [{ local: "192.168.77.9" }, /local 192.168.77.9/],
    [{ link: "eth1" }, /underlay eth1, want eth0/],
    [{ learning: true }, /learning/],
  ])("wants a recreate for %j", (data, why) => expect(vtepMismatch(link(data), spec)).toMatch(why));
  it("wants a recreate for a device of another kind", () => {
    expect(vtepMismatch({ ...link({}), linkinfo: { info_kind: "bridge" } }, spec)).toMatch(/is a bridge, not vxlan/);
  });
});

describe("planVtepSettings", () => {
  it("sets MAC, MTU, addresses and up on a bare device and nothing on a right one", () => {
    const bare = link({}, { flags: ["BROADCAST"], mtu: 1500, address: "aa:bb:cc:dd:ee:ff" });
    expect(planVtepSettings(bare, [], spec)).toEqual([
      { op: "set-link", settings: { dev: "twill.1", mac: "02:11:22:33:44:55", mtu: 1450 } },
      { op: "set-link", settings: { dev: "twill.1", up: true } },
      { op: "add-address", cidr: "10.244.3.0/32" },
    ]);
    expect(planVtepSettings(link({}), [{ family: "inet", local: "10.244.3.0", prefixlen: 32 }], spec)).toEqual([]);
  });
  it("leaves addresses alone when the spec names none (before the lease is known)", () => {
    const { addresses: _, ...noAddrs } = spec;
    expect(planVtepSettings(link({}), [{ family: "inet", local: "10.244.9.0", prefixlen: 32 }], noAddrs)).toEqual([]);
  });
  it("removes an address of a subnet the node no longer holds, keeps link-local ones", () => {
    const addrs = [
      { family: "inet" as const, local: "10.244.9.0", prefixlen: 32 },
      { family: "inet6" as const, local: "fe80::1", prefixlen: 64, scope: "link" },
    ];
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
