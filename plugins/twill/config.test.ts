import { describe, expect, it } from "vitest";
import { CniError } from "../../shared/cni/errors.js";
import type { NetConf } from "../../shared/cni/types.js";
import { parseConf } from "./config.js";

const base = (extra: Record<string, unknown> = {}): NetConf => ({ cniVersion: "1.1.0", name: "net", type: "twill", ...extra });
const codeOf = (f: () => unknown): number | undefined => {
  try {
    f();
  } catch (err) {
    return err instanceof CniError ? err.code : -1;
  }
  return undefined;
};

describe("parseConf", () => {
  it("defaults like the reference bridge", () => {
    const c = parseConf(base({ ipam: { type: "twill-ipam" } }));
    expect(c).toMatchObject({ bridge: "cni0", hairpinMode: false, promiscMode: false, isGateway: false, ipMasq: false, subnetFile: "/run/twill/subnet.json" });
    expect(c.mtu).toBeUndefined();
  });

  it("isDefaultGateway implies isGateway", () => {
    expect(parseConf(base({ isDefaultGateway: true })).isGateway).toBe(true);
  });

  it("rejects hairpinMode with promiscMode", () => {
    expect(() => parseConf(base({ hairpinMode: true, promiscMode: true }))).toThrow(/hairpinMode.*promiscMode/);
  });

  it.each([
    [{ mtu: 10 }, /mtu/],
    [{ mtu: "1500" }, /mtu/],
    [{ ipMasq: "yes" }, /ipMasq/],
    [{ bridge: "a-very-long-bridge-name" }, /bridge/],
    [{ bridge: "a/b" }, /bridge/],
    [{ ipam: [] }, /ipam/],
  ])("rejects %j with code 7 naming the key", (extra, re) => {
    expect(() => parseConf(base(extra))).toThrow(re);
    expect(codeOf(() => parseConf(base(extra)))).toBe(7);
  });

  it("rejects an IPAM type that is not a plugin name with code 2", () => {
    expect(codeOf(() => parseConf(base({ ipam: { type: "../../bin/sh" } })))).toBe(2);
  });

  it("treats an IPAM without type as no IPAM", () => {
    expect(parseConf(base({ ipam: {} })).ipam).toBeNull();
  });

  describe("node mode (MTU and subnets from the node agent)", () => {
    it("is on without ranges and MTU", () => {
      expect(parseConf(base({ ipam: { type: "twill-ipam" } })).nodeMode).toBe(true);
    });
    it("is off with an MTU", () => {
      expect(parseConf(base({ mtu: 1400, ipam: { type: "twill-ipam" } })).nodeMode).toBe(false);
    });
    it("is off with ranges, a legacy subnet or runtime ipRanges", () => {
      expect(parseConf(base({ ipam: { type: "host-local", ranges: [[{ subnet: "10.0.0.0/24" }]] } })).nodeMode).toBe(false);
      expect(parseConf(base({ ipam: { type: "host-local", subnet: "10.0.0.0/24" } })).nodeMode).toBe(false);
      const rt = base({ ipam: { type: "host-local" }, runtimeConfig: { ipRanges: [[{ subnet: "10.0.0.0/24" }]] } });
      expect(parseConf(rt).nodeMode).toBe(false);
    });
  });

  describe("mac", () => {
    it("prefers runtimeConfig, then args.cni, then CNI_ARGS", () => {
      const all = base({ runtimeConfig: { mac: "02:00:00:00:00:01" }, args: { cni: { mac: "02:00:00:00:00:02" } } });
      expect(parseConf(all, { MAC: "02:00:00:00:00:03" }).mac).toBe("02:00:00:00:00:01");
      expect(parseConf(base({ args: { cni: { mac: "02:00:00:00:00:02" } } }), { MAC: "02:00:00:00:00:03" }).mac).toBe("02:00:00:00:00:02");
      expect(parseConf(base(), { MAC: "02:00:00:00:00:0A" }).mac).toBe("02:00:00:00:00:0a");
    });
    it("rejects malformed and multicast MACs naming the source", () => {
      expect(() => parseConf(base(), { MAC: "nope" })).toThrow(/CNI_ARGS MAC/);
      expect(() => parseConf(base({ runtimeConfig: { mac: "01:00:5e:00:00:01" } }))).toThrow(/multicast/);
    });
  });
});
