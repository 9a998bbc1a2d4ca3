import { describe, expect, it } from "vitest";
import {
  corruptFirstCidr,
  declaredCapabilities,
  defaultTempPathKeys,
  loadConfig,
  shrinkPool,
  unsupportedProbes,
  UNSUPPORTED_VALUE,
  withTempPaths,
  withUnreachableRoute,
} from "./config.js";

const conflist = JSON.stringify({
  cniVersion: "1.0.0",
  cniVersions: ["0.4.0", "1.1.0"],
  name: "net",
  plugins: [
    { type: "bridge", bridge: "cni0", ipam: { type: "host-local", ranges: [[{ subnet: "10.1.0.0/24" }]] } },
    { type: "portmap", capabilities: { portMappings: true } },
  ],
});

describe("loadConfig", () => {
  it("takes the conflist entry of the plugin's type and injects name and the highest version", () => {
    const { conf, versions } = loadConfig(conflist, "bridge");
    expect(versions).toEqual(["1.1.0", "1.0.0", "0.4.0"]);
    expect(conf).toMatchObject({ type: "bridge", name: "net", cniVersion: "1.1.0", bridge: "cni0" });
  });

  it("names the types a conflist has when the plugin is not among them", () => {
    expect(() => loadConfig(conflist, "twill")).toThrow(/no plugin of type "twill".*"bridge","portmap"/);
  });

  it("takes a single conf as it is and refuses one of another type", () => {
    const conf = JSON.stringify({ cniVersion: "0.4.0", name: "n", type: "ptp" });
    expect(loadConfig(conf, "ptp").conf).toEqual(JSON.parse(conf));
    expect(() => loadConfig(conf, "bridge")).toThrow(/type "ptp"/);
  });

  it("rejects a config without a version", () => {
    expect(() => loadConfig(JSON.stringify({ name: "n", type: "x" }), "x")).toThrow(/no cniVersion/);
  });
});

describe("withTempPaths", () => {
  it("points dotted keys at the case directory and leaves the original alone", () => {
    const { conf } = loadConfig(conflist, "bridge");
    const out = withTempPaths(conf, ["ipam.dataDir", "missing.key"], "/tmp/case");
    expect((out.ipam as { dataDir: string }).dataDir).toBe("/tmp/case/ipam-dataDir");
    expect((conf.ipam as { dataDir?: string }).dataDir).toBeUndefined();
    expect(out.missing).toBeUndefined();
  });

  it("defaults to host-local's dataDir and any dataDir the config sets", () => {
    expect(defaultTempPathKeys({ ipam: { type: "host-local" } })).toEqual(["ipam.dataDir"]);
    expect(defaultTempPathKeys({ dataDir: "/var/lib/x", ipam: { type: "other" } })).toEqual(["dataDir"]);
    expect(defaultTempPathKeys({ ipam: { type: "other" } })).toEqual([]);
  });
});

describe("shrinkPool", () => {
  it("narrows the first range to a few addresses after the gateway", () => {
    const out = shrinkPool(loadConfig(conflist, "bridge").conf, 3)!;
    expect((out.ipam as any).ranges).toEqual([[{ subnet: "10.1.0.0/24", rangeStart: "10.1.0.2", rangeEnd: "10.1.0.4" }]]);
  });

  it("handles the legacy top-level subnet and refuses a range too small", () => {
    expect((shrinkPool({ ipam: { type: "host-local", subnet: "10.2.0.0/24" } }, 2)!.ipam as any).rangeEnd).toBe("10.2.0.3");
    expect(shrinkPool({ ipam: { subnet: "10.2.0.0/30" } }, 3)).toBeNull();
    expect(shrinkPool({ ipam: { type: "twill-ipam" } }, 3)).toBeNull();
  });
});

describe("probes", () => {
  it("corrupts the first CIDR outside prevResult and says where", () => {
    const bad = corruptFirstCidr({ prevResult: { ips: [{ address: "1.2.3.4/24" }] }, ipam: { ranges: [[{ subnet: "10.1.0.0/24" }]] } })!;
    expect(bad.path).toBe("ipam.ranges[0][0].subnet");
    expect((bad.conf.ipam as any).ranges[0][0].subnet).toBe(bad.value);
    expect(corruptFirstCidr({ name: "x" })).toBeNull();
  });

  it("probes plain string settings only, and the user's own first", () => {
    const probes = unsupportedProbes(
      { name: "n", type: "t", cniVersion: "1.0.0", mode: "l2", subnetFile: "/run/x.json", mtu: 1500, ipam: { type: "x" } },
      [{ key: "mtu", value: -1 }],
    );
    expect(probes.map((p) => [p.key, p.value])).toEqual([["mtu", -1], ["mode", UNSUPPORTED_VALUE]]);
    expect(probes[1]!.conf.mode).toBe(UNSUPPORTED_VALUE);
  });

  it("adds an off-link route to the IPAM section only", () => {
    expect((withUnreachableRoute({ ipam: { type: "h", routes: [{ dst: "0.0.0.0/0" }] } })!.ipam as any).routes).toHaveLength(2);
    expect(withUnreachableRoute({ type: "x" })).toBeNull();
  });

  it("reads the capabilities declared true", () => {
    expect(declaredCapabilities({ capabilities: { ips: true, mac: false, portMappings: true } })).toEqual(["ips", "portMappings"]);
    expect(declaredCapabilities({})).toEqual([]);
  });
});
