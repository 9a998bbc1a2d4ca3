import { describe, expect, it } from "vitest";
import type { NetConf } from "../shared/cni/types.js";
import { formatIp } from "../shared/net/cidr.js";
import type { SubnetInfo } from "../shared/subnet-file.js";
import { parseIpamConfig, parseResolvConf, requestedIps, storeLocation, withNodeSubnets } from "./config.js";
import { setText } from "./range.js";

const conf = (ipam: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf =>
  ({ cniVersion: "1.0.0", name: "net1", type: "twill", ipam: { type: "twill-ipam", ...ipam }, ...extra }) as NetConf;

const failure = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return { code: (err as { code: number }).code, msg: (err as Error).message };
  }
  return { code: 0, msg: "" };
};

const noFiles = (path: string): string => {
  throw Object.assign(new Error(`ENOENT: no such file ${path}`), { code: "ENOENT" });
};

describe("ipam config", () => {
  it("applies host-local's defaults", () => {
    const c = parseIpamConfig(conf({ subnet: "10.1.0.0/24" }));
    expect(c.rangeSets.map(setText)).toEqual(["10.1.0.2-10.1.0.254"]);
    expect(formatIp(4, c.rangeSets[0]![0]!.gateway)).toBe("10.1.0.1");
    expect([c.dataDir, c.network, c.nodeMode, c.routes]).toEqual(["/var/lib/cni/networks", "net1", false, []]);
  });

  it("takes dual-stack range sets and several ranges per set", () => {
    const c = parseIpamConfig(conf({
      ranges: [
        [{ subnet: "10.1.0.0/24" }, { subnet: "10.2.0.0/24", rangeStart: "10.2.0.100" }],
        [{ subnet: "fd00:1::/64", gateway: "fd00:1::ffff" }],
      ],
    }));
    expect(c.rangeSets.map(setText)).toEqual(["10.1.0.2-10.1.0.254,10.2.0.100-10.2.0.254", "fd00:1::1-fd00:1::ffff:ffff:ffff:ffff"]);
  });

  it("puts the legacy top-level range first, before `ranges`, as host-local does", () => {
    const c = parseIpamConfig(conf({ subnet: "10.9.0.0/24", rangeStart: "10.9.0.50", ranges: [[{ subnet: "10.8.0.0/24" }]] }));
    expect(c.rangeSets.map(setText)).toEqual(["10.9.0.50-10.9.0.254", "10.8.0.2-10.8.0.254"]);
  });

  it("lets runtimeConfig.ipRanges (capability ipRanges) replace `ranges`", () => {
    const c = parseIpamConfig(conf({ ranges: [[{ subnet: "10.8.0.0/24" }]] }, { runtimeConfig: { ipRanges: [[{ subnet: "10.7.0.0/24" }]] } }));
    expect(c.rangeSets.map(setText)).toEqual(["10.7.0.2-10.7.0.254"]);
    expect(parseIpamConfig(conf({}, { runtimeConfig: { ipRanges: [[{ subnet: "10.7.0.0/24" }]] } })).nodeMode).toBe(false);
  });

  it("is in node mode with no range, reading the default subnet file", () => {
    const c = parseIpamConfig(conf({}));
    expect([c.nodeMode, c.subnetFile, c.rangeSets]).toEqual([true, "/run/twill/subnet.json", []]);
    expect(parseIpamConfig(conf({ subnetFile: "/tmp/s.json" })).subnetFile).toBe("/tmp/s.json");
  });

  it.each([
    [{ ranges: "x" }, 7, /ipam.ranges must be a list of range sets, got "x"/],
    [{ ranges: [{ subnet: "10.1.0.0/24" }] }, 7, /ipam.ranges\[0\] must be a list of ranges, got {"subnet":"10.1.0.0\/24"}/],
    [{ ranges: [[]] }, 7, /ipam.ranges\[0\] is an empty range set/],
    [{ ranges: [["10.1.0.0/24"]] }, 7, /ipam.ranges\[0\]\[0\] must be an object, got "10.1.0.0\/24"/],
    [{ ranges: [[{ subnet: "10.1.0.0/24" }, { subnet: "fd00::/64" }]] }, 7, /ipam.ranges\[0\] mixes IPv4 and IPv6 ranges: 10.1.0.2-10.1.0.254 and fd00::2-/],
    [{ ranges: [[{ subnet: "10.1.0.0/24" }, { subnet: "10.1.0.128/25" }]] }, 7, /ipam.ranges\[0\]\[0\] \(10.1.0.2-10.1.0.254\) and ipam.ranges\[0\]\[1\] \(10.1.0.130-10.1.0.254\) overlap/],
    [{ ranges: [[{ subnet: "10.1.0.0/24" }], [{ subnet: "10.1.0.0/16" }]] }, 7, /ipam.ranges\[0\]\[0\] .* and ipam.ranges\[1\]\[0\] .* overlap/],
    [{ ranges: [[{ subnet: "10.1.2.0/33" }]] }, 7, /ipam.ranges\[0\]\[0\].subnet: invalid CIDR "10.1.2.0\/33"/],
    [{ subnet: "10.1.0.0/31" }, 7, /ipam.subnet "10.1.0.0\/31": network 10.1.0.0\/31 is too small to allocate from/],
    [{ subnet: "10.1.0.0/24", rangeEnd: "10.2.0.1" }, 7, /ipam.rangeEnd "10.2.0.1" is outside 10.1.0.0\/24/],
    [{ subnet: 24 }, 7, /ipam.subnet must be a CIDR string, got 24/],
    [{ subnet: "10.1.0.0/24", routes: [{ dst: "0.0.0.0/0", gw: "fd00::1" }] }, 7, /ipam.routes\[0\].gw "fd00::1" is not of the family of dst "0.0.0.0\/0"/],
    [{ subnet: "10.1.0.0/24", routes: [{ dst: "nope" }] }, 7, /ipam.routes\[0\].dst: invalid CIDR "nope"/],
    [{ subnet: "10.1.0.0/24", routes: [{ dst: "0.0.0.0/0", mtu: "x" }] }, 7, /ipam.routes\[0\].mtu must be a non-negative integer, got "x"/],
    [{ subnet: "10.1.0.0/24", routes: {} }, 7, /ipam.routes must be a list, got {}/],
    [{ subnet: "10.1.0.0/24", dataDir: "relative" }, 7, /ipam.dataDir must be an absolute path, got "relative"/],
    [{ subnet: "10.1.0.0/24", dataDir: 3 }, 7, /ipam.dataDir must be a non-empty string, got 3/],
    [{ ranges: [[{ subnet: "224.1.0.0/24" }]] }, 2, /unsupported value for "ipam.ranges\[0\]\[0\].subnet": "224.1.0.0\/24 \(multicast/],
  ])("rejects %j with code %i naming the field and value", (ipam, code, msg) => {
    const f = failure(() => parseIpamConfig(conf(ipam)));
    expect(f.code).toBe(code);
    expect(f.msg).toMatch(msg);
  });

  it("keeps the 1.1 route fields", () => {
    const c = parseIpamConfig(conf({ subnet: "10.1.0.0/24", routes: [{ dst: "10.9.0.5/16", gw: "10.1.0.1", mtu: 1400, table: 100 }, { dst: "::/0" }] }));
    expect(c.routes).toEqual([{ dst: "10.9.0.0/16", gw: "10.1.0.1", mtu: 1400, table: 100 }, { dst: "::/0" }]);
  });

  it("turns resolvConf into dns, and names the file it cannot read (5)", () => {
    const text = "# c\nnameserver 10.0.0.10\nnameserver fd00::10\nsearch a.svc b.svc\ndomain cluster.local\noptions ndots:5 edns0\n";
    expect(parseResolvConf(text)).toEqual({ nameservers: ["10.0.0.10", "fd00::10"], search: ["a.svc", "b.svc"], domain: "cluster.local", options: ["ndots:5", "edns0"] });
    const c = parseIpamConfig(conf({ subnet: "10.1.0.0/24", resolvConf: "/etc/r" }), () => "nameserver 1.1.1.1\n");
    expect(c.dns).toEqual({ nameservers: ["1.1.1.1"] });
    expect(failure(() => parseIpamConfig(conf({ subnet: "10.1.0.0/24", resolvConf: "/nope" }), noFiles))).toEqual({
      code: 5, msg: expect.stringContaining("cannot read ipam.resolvConf /nope"),
    });
  });

  it("needs only dataDir and the name to find the store", () => {
    expect(storeLocation(conf({ ranges: "broken", dataDir: "/d" }))).toEqual({ network: "net1", dataDir: "/d" });
  });
});

describe("node mode", () => {
  const info = (over: Partial<SubnetInfo> = {}): SubnetInfo => ({
    clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: ["10.244.3.0/24"], mtu: 1450, backend: "vxlan", ipMasq: true, ...over,
  });

  it("hands out the node subnet and routes the cluster through the gateway", () => {
    const c = withNodeSubnets(parseIpamConfig(conf({})), info());
    expect(c.rangeSets.map(setText)).toEqual(["10.244.3.2-10.244.3.254"]);
    expect(c.routes).toEqual([{ dst: "10.244.0.0/16", gw: "10.244.3.1" }]);
  });

  it("makes one set per family in a dual-stack cluster, each routed through its own gateway", () => {
    const c = withNodeSubnets(parseIpamConfig(conf({})), info({
      clusterCIDRs: ["10.244.0.0/16", "fd00:244::/56"], nodeSubnets: ["10.244.3.0/24", "fd00:244:0:3::/64"],
    }));
    expect(c.rangeSets.map(setText)).toEqual(["10.244.3.2-10.244.3.254", "fd00:244:0:3::2-fd00:244:0:3:ffff:ffff:ffff:ffff"]);
    expect(c.routes).toEqual([{ dst: "10.244.0.0/16", gw: "10.244.3.1" }, { dst: "fd00:244::/56", gw: "fd00:244:0:3::1" }]);
  });

  it("keeps configured routes first, and adds none the link route already serves", () => {
    const c = withNodeSubnets(parseIpamConfig(conf({ routes: [{ dst: "0.0.0.0/0" }, { dst: "10.244.0.0/16", gw: "10.244.3.9" }] })), info());
    expect(c.routes).toEqual([{ dst: "0.0.0.0/0" }, { dst: "10.244.0.0/16", gw: "10.244.3.9" }]);
    const single = withNodeSubnets(parseIpamConfig(conf({})), info({ clusterCIDRs: ["10.244.3.0/24"] }));
    expect(single.routes).toEqual([]);
  });
});

describe("requested addresses", () => {
  it("come from runtimeConfig.ips, args.cni.ips and CNI_ARGS IP=, each once, prefix dropped", () => {
    const c = conf({ subnet: "10.1.0.0/24" }, { runtimeConfig: { ips: ["10.1.0.7/24"] }, args: { cni: { ips: ["fd00::7"] } } });
    expect(requestedIps(c, { IP: "10.1.0.7,10.1.0.8" }).map((r) => [r.text, r.from])).toEqual([
      ["10.1.0.7", "runtimeConfig.ips"], ["fd00::7", "args.cni.ips"], ["10.1.0.8", "CNI_ARGS IP"],
    ]);
  });

  it.each([
    [{ runtimeConfig: { ips: "10.1.0.7" } }, {}, /runtimeConfig.ips must be a list of addresses, got "10.1.0.7"/],
    [{ args: { cni: { ips: [7] } } }, {}, /args.cni.ips must be a list of addresses, got \[7\]/],
    [{}, { IP: "10.1.0.300" }, /CNI_ARGS IP "10.1.0.300": invalid IP address "10.1.0.300"/],
  ])("refuse %j %j with code 7", (extra, cniArgs, msg) => {
    const f = failure(() => requestedIps(conf({ subnet: "10.1.0.0/24" }, extra as Partial<NetConf>), cniArgs));
    expect(f.code).toBe(7);
    expect(f.msg).toMatch(msg);
  });
});
