import { describe, expect, it } from "vitest";
import { stableVtepMac } from "../shared/kernel/vxlan.js";
import { parseNetworkConfig } from "./config.js";
import { PeerAdmission } from "./peers.js";
import type { NodeLease } from "./types.js";

// Admission on plain data: what a datastore hands the agent goes in, the peers it may program
// and the records it refuses (with the reason) come out.

const network = parseNetworkConfig({ Network: "10.244.0.0/16", IPv6Network: "fd00:10:244::/56", SubnetLen: 24, Backend: { Type: "vxlan", VNI: 1 } });

const own: NodeLease = { nodeName: "node-a", subnets: ["10.244.1.0/24", "fd00:10:244:1::/64"], publicIP: "192.168.90.11", backend: { type: "vxlan" } };

function peer(name: string, over: Partial<NodeLease> = {}, backend: Record<string, unknown> = {}): NodeLease {
  return {
    nodeName: name,
    subnets: ["10.244.2.0/24"],
    publicIP: "192.168.90.12",
    backend: { type: "vxlan", vtepMAC: stableVtepMac(name, 1), vni: 1, port: 4789, underlayMTU: 1500, underlayIPs: ["192.168.90.12", "fd00:90::12"], ...backend } as NodeLease["backend"],
    ...over,
  };
}

const admit = (...leases: NodeLease[]) => new PeerAdmission(network).admit([own, ...leases], own);
const reasonFor = (lease: NodeLease): string => {
  const r = admit(lease);
  expect(r.admitted).toEqual([]);
  return r.refused.map((e) => `${e.peer}: ${e.message}`).join("\n");
};

describe("peer admission", () => {
  it("admits a sound peer of either family and dual-stack, and never this node itself", () => {
    const dual = peer("node-b", { subnets: ["10.244.2.0/24", "fd00:10:244:2::/64"] });
    const v6 = peer("node-c", { subnets: ["fd00:10:244:3::/64"], publicIP: "fd00:90::13" }, { underlayIPs: ["fd00:90::13", "fe80::1"] });
    const hostGw = peer("node-d", { subnets: ["10.244.4.0/24"] }, { type: "host-gw", vtepMAC: undefined, vni: undefined });
    expect(admit(dual, v6, hostGw)).toEqual({ admitted: [dual, v6, hostGw], refused: [] });
  });

  it("refuses subnets outside the cluster CIDRs: the underlay's own prefix, a default route, another family", () => {
    expect(reasonFor(peer("evil", { subnets: ["192.168.0.0/16"] }))).toMatch(/subnet 192.168.0.0\/16 lies outside the cluster CIDR 10.244.0.0\/16/);
    expect(reasonFor(peer("evil", { subnets: ["0.0.0.0/0"] }))).toMatch(/outside the cluster CIDR/);
    const v4only = parseNetworkConfig({ Network: "10.244.0.0/16" });
    const r = new PeerAdmission(v4only).admit([peer("evil", { subnets: ["fd00:10:244:2::/64"] })], { ...own, subnets: ["10.244.1.0/24"] });
    expect(r.refused[0]!.message).toMatch(/the cluster network has no IPv6 CIDR/);
  });

  it("refuses a subnet of another length than this node's, a non-canonical one, two of one family, none", () => {
    expect(reasonFor(peer("evil", { subnets: ["10.244.0.0/17"] }))).toMatch(/is a \/17, node subnets of IPv4 are \/24/);
    expect(reasonFor(peer("evil", { subnets: ["10.244.2.1/24"] }))).toMatch(/not in canonical form \(10.244.2.0\/24\)/);
    expect(reasonFor(peer("evil", { subnets: ["10.244.2.0/24", "10.244.3.0/24"] }))).toMatch(/two IPv4 subnets/);
    expect(reasonFor(peer("evil", { subnets: [] }))).toMatch(/not a list of CIDRs/);
    expect(reasonFor(peer("evil", { subnets: ["10.244.2.0/24 "] }))).toMatch(/is not a CIDR/);
  });

  it("takes the subnet length from this node's own subnet (kube-controller-manager's choice), else SubnetLen", () => {
    const ownV4 = { ...own, subnets: ["10.244.1.0/26"] };
    const r = new PeerAdmission(network).admit([peer("node-b", { subnets: ["10.244.2.0/26"] }), peer("node-c", { subnets: ["10.244.3.0/24"] })], ownV4);
    expect(r.admitted.map((l) => l.nodeName)).toEqual(["node-b"]);
    expect(r.refused[0]).toEqual({ peer: "node-c", message: "subnet 10.244.3.0/24 is a /24, node subnets of IPv4 are /26" });
  });

  it("refuses a public IP that is not a unicast underlay address", () => {
    expect(reasonFor(peer("evil", { publicIP: "192.168.90.12 " }))).toMatch(/public IP "192.168.90.12 " is not an IP address/);
    expect(reasonFor(peer("evil", { publicIP: "127.0.0.1" }))).toMatch(/not a unicast address/);
    expect(reasonFor(peer("evil", { publicIP: "0.0.0.0" }))).toMatch(/not a unicast address/);
    expect(reasonFor(peer("evil", { publicIP: "239.1.1.1" }))).toMatch(/not a unicast address/);
    expect(reasonFor(peer("evil", { publicIP: "10.244.7.1" }))).toMatch(/inside the cluster CIDR/);
    expect(reasonFor(peer("evil", { publicIP: "fe80::1" }))).toMatch(/link-local/);
    expect(reasonFor(peer("evil", { publicIP: 5 as unknown as string }))).toMatch(/public IP 5 is not an IP address/);
  });

  it("refuses malformed backend data, naming the field", () => {
    expect(reasonFor(peer("evil", {}, { vtepMAC: 5 }))).toMatch(/VTEP MAC 5 is not a MAC address/);
    expect(reasonFor(peer("evil", {}, { vtepMAC: "h" }))).toMatch(/VTEP MAC "h" is not a MAC/);
    expect(reasonFor(peer("evil", {}, { vni: "1" }))).toMatch(/VNI "1"/);
    expect(reasonFor(peer("evil", {}, { port: 0 }))).toMatch(/VXLAN port 0/);
    expect(reasonFor(peer("evil", {}, { underlayMTU: 1e9 }))).toMatch(/underlay MTU/);
    expect(reasonFor(peer("evil", {}, { as: 0 }))).toMatch(/BGP AS 0 is not an AS number/);
    expect(reasonFor(peer("evil", {}, { as: 2 ** 32 }))).toMatch(/BGP AS/);
    expect(admit(peer("ok", {}, { type: "bgp", as: 65001 })).refused).toEqual([]);
    expect(reasonFor(peer("evil", {}, { type: "wireguard", wgPort: 0 }))).toMatch(/WireGuard port 0 is not a port number/);
    expect(reasonFor(peer("evil", {}, { type: "wireguard", wgPublicKey: "bm90IGEga2V5" }))).toMatch(/malformed WireGuard public key \(12 characters/);
    expect(reasonFor(peer("evil", {}, { type: "wireguard", wgPublicKey: 7 as unknown as string }))).toMatch(/no WireGuard public key published/);
    expect(admit(peer("ok", {}, { type: "wireguard", wgPublicKey: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", wgPort: 51820 })).refused).toEqual([]);
    expect(reasonFor(peer("evil", {}, { underlayIPs: "192.168.90.12" }))).toMatch(/underlay addresses/);
    expect(reasonFor(peer("evil", {}, { underlayIPs: ["192.168.90.12", "x"] }))).toMatch(/underlay address "x"/);
    expect(reasonFor(peer("evil", {}, { type: "vxlan; rm" }))).toMatch(/backend type/);
    expect(reasonFor({ ...peer("evil"), backend: null as unknown as NodeLease["backend"] })).toMatch(/backend data is not an object/);
  });

  it("refuses a VTEP MAC that is not the one derived from the peer's name and VNI (another node's, say)", () => {
    const forged = peer("evil", {}, { vtepMAC: stableVtepMac("node-a", 1) });
    expect(reasonFor(forged)).toBe(`evil: VTEP MAC ${stableVtepMac("node-a", 1)} is not the one of node evil on VNI 1 (${stableVtepMac("evil", 1)})`);
    // Upper case is the same MAC.
    expect(admit(peer("node-b", {}, { vtepMAC: stableVtepMac("node-b", 1).toUpperCase() })).refused).toEqual([]);
  });

  it("refuses a node name that is not one", () => {
    expect(reasonFor(peer("../etc"))).toMatch(/node name "..\/etc" is not a valid node name/);
  });

  it("refuses a subnet this node holds, and one a peer claimed earlier; the real owner keeps it", () => {
    const real = peer("node-b", { acquiredAt: 1_000 });
    const forged = peer("a-forger", { acquiredAt: 2_000, publicIP: "192.168.90.66" });
    const mine = peer("node-c", { subnets: ["10.244.1.0/24"], acquiredAt: 1 });
    const r = admit(forged, real, mine);
    expect(r.admitted).toEqual([real]);
    expect(r.refused).toEqual([
      { peer: "a-forger", message: "subnet 10.244.2.0/24 is claimed by node node-b, which claimed it earlier" },
      { peer: "node-c", message: "subnet 10.244.1.0/24 is claimed by this node" },
    ]);
  });

  it("between claims of one time (or none), the name decides, so every node decides alike", () => {
    const b = peer("node-b");
    const c = peer("node-c");
    expect(admit(c, b).admitted).toEqual([b]);
    expect(admit(b, c).admitted).toEqual([b]);
  });

  it("one bad record among many refuses that one alone", () => {
    const good = Array.from({ length: 50 }, (_, i) => peer(`node-${i + 10}`, { subnets: [`10.244.${i + 10}.0/24`] }));
    const bad = peer("evil", { subnets: ["192.168.90.0/24"] }, { vtepMAC: 5 });
    const r = admit(...good.slice(0, 25), bad, ...good.slice(25));
    expect(r.admitted).toEqual(good);
    expect(r.refused.map((e) => e.peer)).toEqual(["evil"]);
  });
});
