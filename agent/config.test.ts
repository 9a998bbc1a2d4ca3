import { describe, expect, it } from "vitest";
import { parseNetworkConfig } from "./config.js";

describe("parseNetworkConfig", () => {
  it("reads a flannel-style net-conf.json", () => {
    const c = parseNetworkConfig({
      Network: "10.244.0.0/16",
      SubnetLen: 24,
      Backend: { Type: "vxlan", VNI: 7, Port: 8472 },
      IPMasq: false,
    });
    expect(c).toEqual({
      clusterCIDRs: ["10.244.0.0/16"],
      subnetLen: { 4: 24 },
      backend: { type: "vxlan", vni: 7, port: 8472 },
      ipMasq: false,
    });
  });

  it("fills flannel's defaults: /24 (/64), vxlan VNI 1 port 4789, masquerade on", () => {
    const c = parseNetworkConfig({ Network: "10.1.0.0/16", IPv6Network: "fd00:10::/48" });
    expect(c.clusterCIDRs).toEqual(["10.1.0.0/16", "fd00:10::/48"]);
    expect(c.subnetLen).toEqual({ 4: 24, 6: 64 });
    expect(c.backend).toEqual({ type: "vxlan", vni: 1, port: 4789 });
    expect(c.ipMasq).toBe(true);
  });

  it("takes two bits below a network smaller than /22 (/62) as the default subnet length", () => {
    expect(parseNetworkConfig({ Network: "10.0.0.0/23" }).subnetLen[4]).toBe(25);
    expect(parseNetworkConfig({ IPv6Network: "fd00::/63" }).subnetLen[6]).toBe(65);
  });

  it("supports IPv6 only", () => {
    const c = parseNetworkConfig({ IPv6Network: "fd00:1::/56", IPv6SubnetLen: 64, Backend: { Type: "host-gw" } });
    expect(c.clusterCIDRs).toEqual(["fd00:1::/56"]);
    expect(c.backend.type).toBe("host-gw");
  });

  it("turns SubnetMin/SubnetMax addresses into the subnets that hold them", () => {
    const c = parseNetworkConfig({ Network: "10.244.0.0/16", SubnetMin: "10.244.10.7", SubnetMax: "10.244.20.0/24" });
    expect(c.subnetMin).toBe("10.244.10.0/24");
    expect(c.subnetMax).toBe("10.244.20.0/24");
  });

  const bad: [string, unknown, RegExp][] = [
    ["a CIDR that does not parse", { Network: "10.244.0.0/33" }, /"Network" "10.244.0.0\/33" is not a valid CIDR/],
    ["garbage", { Network: "banana" }, /"Network" "banana"/],
    ["host bits", { Network: "10.244.1.0/16" }, /"Network" "10.244.1.0\/16" has host bits set \(the network is 10.244.0.0\/16\)/],
    ["the wrong family", { Network: "fd00::/48" }, /"Network" "fd00::\/48" is not an IPv4 CIDR/],
    ["SubnetLen shorter than the network", { Network: "10.244.0.0/16", SubnetLen: 12 }, /"SubnetLen" 12 is shorter than "Network" 10.244.0.0\/16/],
    ["SubnetLen with no room for pods", { Network: "10.244.0.0/16", SubnetLen: 31 }, /"SubnetLen" 31 leaves no pod addresses/],
    ["IPv6SubnetLen past 128", { IPv6Network: "fd00::/48", IPv6SubnetLen: 129 }, /"IPv6SubnetLen" 129 is not a prefix length/],
    ["an unknown backend", { Network: "10.0.0.0/8", Backend: { Type: "udp" } }, /"Backend.Type" "udp" is not a known backend/],
    ["VNI out of range", { Network: "10.0.0.0/8", Backend: { VNI: 16777216 } }, /"Backend.VNI" 16777216/],
    ["an unknown backend field", { Network: "10.0.0.0/8", Backend: { DirectRouting: true } }, /unknown field "Backend.DirectRouting"/],
    ["a misspelt field", { Network: "10.0.0.0/8", SubnetLength: 24 }, /unknown field "SubnetLength"/],
    ["no network", { Backend: { Type: "vxlan" } }, /"Network" \(or "IPv6Network"\) is required/],
    ["EnableIPv4 without a network", { EnableIPv4: true, IPv6Network: "fd00::/48" }, /"Network" is required when "EnableIPv4" is true/],
    ["SubnetMin outside", { Network: "10.244.0.0/16", SubnetMin: "10.245.0.0" }, /"SubnetMin" "10.245.0.0" is outside "Network"/],
    ["SubnetMin above SubnetMax", { Network: "10.244.0.0/16", SubnetMin: "10.244.9.0", SubnetMax: "10.244.3.0" }, /"SubnetMin" 10.244.9.0\/24 is above "SubnetMax" 10.244.3.0\/24/],
    ["IPMasq not a boolean", { Network: "10.0.0.0/8", IPMasq: "yes" }, /"IPMasq" "yes" must be true or false/],
    ["not an object", [1, 2], /must be a JSON object/],
  ];
  it.each(bad)("rejects %s, naming the field and value", (_what, raw, message) => {
    expect(() => parseNetworkConfig(raw)).toThrow(message);
  });

  describe("the bgp backend", () => {
    const bgp = (backend: Record<string, unknown>) => parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "bgp", ...backend } }).backend;

    it("defaults to a node mesh in AS 64512", () => {
      expect(bgp({}).bgp).toEqual({ mode: "mesh", as: 64512, routers: [] });
    });

    it("reads routers mode with its routers, canonical addresses", () => {
      const b = bgp({ Mode: "routers", AS: 65001, Routers: [{ Address: "192.168.77.1", AS: 65000 }, { Address: "FD00:77:0::1", AS: 4200000000 }] });
      expect(b.bgp).toEqual({ mode: "routers", as: 65001, routers: [{ address: "192.168.77.1", as: 65000 }, { address: "fd00:77::1", as: 4200000000 }] });
    });

    it("names the field that is wrong", () => {
      expect(() => bgp({ Mode: "full" })).toThrow(/"Backend.Mode" "full" is not a BGP peering mode/);
      expect(() => bgp({ AS: 0 })).toThrow(/"Backend.AS" 0 must be an integer from 1 to 4294967295/);
      expect(() => bgp({ Mode: "routers", Routers: {} })).toThrow(/"Backend.Routers" must be a list/);
      expect(() => bgp({ Mode: "routers", Routers: [{ Address: "10.0.0.300", AS: 1 }] })).toThrow(/"Backend.Routers\[0\].Address" "10.0.0.300" is not an IP address/);
      expect(() => bgp({ Mode: "routers", Routers: [{ Address: "10.0.0.1" }] })).toThrow(/"Backend.Routers\[0\].AS" is required/);
      expect(() => bgp({ Mode: "routers", Routers: [{ Address: "10.0.0.1", AS: 1, Port: 179 }] })).toThrow(/unknown field "Backend.Routers\[0\].Port"/);
      expect(() => bgp({ Routers: [{ Address: "10.0.0.1", AS: 1 }] })).toThrow(/a node mesh peers with the nodes only/);
      expect(() => bgp({ VNI: 2 })).toThrow(/unknown field "Backend.VNI"/);
    });

    it("keeps VXLAN's keys for VXLAN", () => {
      expect(() => parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", Mode: "mesh" } })).toThrow(/unknown field "Backend.Mode"/);
    });
  });

  describe("the wireguard backend", () => {
    const wg = (backend: Record<string, unknown>) => parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "wireguard", ...backend } }).backend;

    it("defaults to port 51820, no keepalive, auto mode, nobody let in unencrypted", () => {
      expect(wg({})).toMatchObject({ type: "wireguard", wireguard: { listenPort: 51820, persistentKeepalive: 0, mode: "auto", allowUnencryptedFrom: [] } });
    });

    it("reads the hosts let in unencrypted as canonical CIDRs, naming a wrong entry", () => {
      expect(wg({ AllowUnencryptedFrom: ["192.168.90.2", "FD00:90::2", "198.51.100.7/24"] }).wireguard?.allowUnencryptedFrom).toEqual(["192.168.90.2/32", "fd00:90::2/128", "198.51.100.0/24"]);
      expect(() => wg({ AllowUnencryptedFrom: "192.168.90.2" })).toThrow(/"Backend.AllowUnencryptedFrom" must be a list of addresses or CIDRs/);
      expect(() => wg({ AllowUnencryptedFrom: ["192.168.90.2", "cp"] })).toThrow(/"Backend.AllowUnencryptedFrom\[1\]" "cp" is not an address or CIDR/);
      expect(() => wg({ AllowUnencryptedFrom: [7] })).toThrow(/"Backend.AllowUnencryptedFrom\[0\]" 7 is not an address or CIDR/);
    });

    it("reads its keys", () => {
      expect(wg({ ListenPort: 51000, PersistentKeepaliveInterval: 25, Mode: "userspace" }).wireguard).toEqual({ listenPort: 51000, persistentKeepalive: 25, mode: "userspace", allowUnencryptedFrom: [] });
      expect(wg({ Mode: "kernel" }).wireguard?.mode).toBe("kernel");
    });

    it("names the field that is wrong", () => {
      expect(() => wg({ Mode: "fast" })).toThrow(/"Backend.Mode" "fast" is not a WireGuard mode \(auto, kernel, userspace\)/);
      expect(() => wg({ ListenPort: 0 })).toThrow(/"Backend.ListenPort" 0 must be an integer from 1 to 65535/);
      expect(() => wg({ ListenPort: "51820" })).toThrow(/"Backend.ListenPort" "51820" must be an integer/);
      expect(() => wg({ PersistentKeepaliveInterval: -1 })).toThrow(/"Backend.PersistentKeepaliveInterval" -1 must be an integer from 0 to 65535/);
      expect(() => wg({ VNI: 2 })).toThrow(/unknown field "Backend.VNI"/);
      expect(() => wg({ AS: 64512 })).toThrow(/unknown field "Backend.AS"/);
    });

    it("keeps its keys to itself", () => {
      expect(() => parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", ListenPort: 51820 } })).toThrow(/unknown field "Backend.ListenPort"/);
    });
  });
});
