import { describe, expect, it } from "vitest";
import { formatResult, parseResult, requireSupported } from "./version.js";
import type { Result } from "./types.js";

const full: Result = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "aa:bb:cc:dd:ee:01", mtu: 1450 },
    { name: "eth0", mac: "aa:bb:cc:dd:ee:02", mtu: 1450, sandbox: "/var/run/netns/p" },
  ],
  ips: [
    { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 1 },
    { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 1 },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "10.244.1.1", mtu: 1400, priority: 5 }],
  dns: { nameservers: ["10.96.0.10"] },
};

describe("result versions", () => {
  it("adds ips[].version for 0.3.x and 0.4.0", () => {
    for (const v of ["0.3.0", "0.3.1", "0.4.0"]) {
      const out = formatResult(full, v) as any;
      expect(out.cniVersion).toBe(v);
      expect(out.ips.map((i: any) => i.version)).toEqual(["4", "6"]);
      expect(out.interfaces[0]).toEqual({ name: "cni0", mac: "aa:bb:cc:dd:ee:01" });
      expect(out.routes[0]).toEqual({ dst: "0.0.0.0/0", gw: "10.244.1.1" });
    }
  });

  it("drops 1.1-only fields for 1.0.0 and keeps them for 1.1.0", () => {
    const v10 = formatResult(full, "1.0.0") as any;
    expect(v10.ips[0]).not.toHaveProperty("version");
    expect(v10.interfaces[1]).toEqual({ name: "eth0", mac: "aa:bb:cc:dd:ee:02", sandbox: "/var/run/netns/p" });
    expect(v10.routes[0]).toEqual({ dst: "0.0.0.0/0", gw: "10.244.1.1" });
    const v11 = formatResult(full, "1.1.0") as any;
    expect(v11.interfaces[1].mtu).toBe(1450);
    expect(v11.routes[0]).toEqual({ dst: "0.0.0.0/0", gw: "10.244.1.1", mtu: 1400, priority: 5 });
  });

  it("round-trips a legacy result", () => {
    const legacy = formatResult(full, "0.4.0");
    const back = parseResult(legacy);
    expect(back.ips).toEqual([
      { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 1 },
      { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 1 },
    ]);
  });

  it("rejects what is not a result, and unknown versions", () => {
    expect(() => parseResult("x")).toThrow(/not a JSON object/);
    expect(() => parseResult({ ips: [{}] })).toThrow(/no address/);
    expect(() => requireSupported("0.2.0")).toThrow(/incompatible/);
    expect(() => requireSupported(undefined)).toThrow(/no cniVersion/);
  });
});
