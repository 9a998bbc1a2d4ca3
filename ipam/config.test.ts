import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { NetConf } from "../shared/cni/types.js";
import { formatIp } from "../shared/net/cidr.js";
import { loadIpamConfig, parseIpamConfig, requestedIps } from "./config.js";

const conf = (ipam: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf =>
  ({ cniVersion: "1.0.0", name: "net1", type: "twill", ipam: { type: "twill-ipam", ...ipam }, ...extra }) as NetConf;

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return [(err as { code: number }).code, (err as Error).message] as const;
  }
  return [0, ""] as const;
};

describe("ipam config", () => {
  it("applies host-local's defaults", () => {
    const c = parseIpamConfig(conf({ subnet: "10.1.0.0/24" }));
    const r = c.rangeSets[0]![0]!;
    expect([formatIp(4, r.start), formatIp(4, r.end), formatIp(4, r.gateway!)]).toEqual(["10.1.0.1", "10.1.0.254", "10.1.0.1"]);
    expect(c.dataDir).toBe("/var/lib/cni/networks");
    expect(c.nodeMode).toBe(false);
  });

  it("takes dual-stack range sets", () => {
    const c = parseIpamConfig(conf({ ranges: [[{ subnet: "10.1.0.0/24" }], [{ subnet: "fd00:1::/64", gateway: "fd00:1::ffff" }]] }));
    expect(c.rangeSets).toHaveLength(2);
    expect(formatIp(6, c.rangeSets[1]![0]!.gateway!)).toBe("fd00:1::ffff");
  });

  it.each([
    [{ subnet: "10.1.0.0/31" }, /too small/],
    [{ subnet: "10.1.0.0/32" }, /too small/],
    [{ subnet: "fd00::/127" }, /too small/],
    [{ subnet: "10.1.0.0/33" }, /invalid CIDR/],
    [{ subnet: "nope" }, /invalid CIDR/],
    [{ subnet: "10.1.0.0/24", rangeStart: "10.2.0.1" }, /rangeStart "10.2.0.1" is outside 10.1.0.0\/24/],
    [{ subnet: "10.1.0.0/24", rangeStart: "10.1.0.9", rangeEnd: "10.1.0.5" }, /rangeStart is after rangeEnd/],
    [{ ranges: [[{ subnet: "10.1.0.0/24" }, { subnet: "fd00::/64" }]] }, /mixes IPv4 and IPv6/],
    [{ ranges: [[{ subnet: "10.1.0.0/24" }, { subnet: "10.1.0.0/25" }]] }, /overlap/],
    [{ ranges: "x" }, /ranges must be a list/],
    [{ subnet: "10.1.0.0/24", routes: [{ dst: "0.0.0.0/0", gw: "fd00::1" }] }, /not of the family/],
    [{ subnet: "10.1.0.0/24", dataDir: "relative" }, /absolute path/],
  ])("rejects %j with code 7", (ipam, msg) => {
    const [code, text] = codeOf(() => parseIpamConfig(conf(ipam)));
    expect(code).toBe(7);
    expect(text).toMatch(msg);
  });

  it("reads the node subnet file in node mode, and answers 11 when it is missing", () => {
    const dir = mkdtempSync(join(tmpdir(), "twill-ipam-"));
    const file = join(dir, "subnet.json");
    const c = conf({ subnetFile: file });
    expect(codeOf(() => loadIpamConfig(c))[0]).toBe(11);
    writeFileSync(file, JSON.stringify({ clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: ["10.244.3.0/24"], mtu: 1450, backend: "vxlan", ipMasq: true }));
    const loaded = loadIpamConfig(c);
    expect(formatIp(4, loaded.rangeSets[0]![0]!.start)).toBe("10.244.3.1");
    expect(loaded.routes).toEqual([{ dst: "10.244.0.0/16", gw: "10.244.3.1" }]);
  });

  it("collects requested addresses from runtimeConfig, args and CNI_ARGS", () => {
    const c = conf({ subnet: "10.1.0.0/24" }, { runtimeConfig: { ips: ["10.1.0.7/24"] }, args: { cni: { ips: ["fd00::7"] } } });
    expect(requestedIps(c, { IP: "10.1.0.7" }).map((r) => r.text)).toEqual(["10.1.0.7", "fd00::7"]);
    expect(codeOf(() => requestedIps(c, { IP: "10.1.0.300" }))[0]).toBe(7);
  });
});
