import { describe, expect, it } from "vitest";
import type { Runner } from "./exec.js";
import { ensureFeaturesOff, parseFeatures, planFeaturesOff } from "./ethtool.js";
import { KernelError } from "./types.js";
import { IpRoute } from "../../testkit/iproute.js";

const listing = (generic: string) => `Features for twill.1:
rx-checksumming: on
tx-checksumming: on
\ttx-checksum-ipv4: off [fixed]
\ttx-checksum-ip-generic: ${generic}
\ttx-checksum-ipv6: off [fixed]
tcp-segmentation-offload: on
\ttx-tcp-segmentation: off [requested on]
`;

describe("parseFeatures", () => {
  it("reads each feature's state and whether it is fixed, nested or not", () => {
    const f = parseFeatures(listing("on"));
    expect(f.get("tx-checksum-ip-generic")).toEqual({ on: true, fixed: false });
    expect(f.get("tx-checksum-ipv4")).toEqual({ on: false, fixed: true });
    expect(f.get("rx-checksumming")).toEqual({ on: true, fixed: false });
    expect(f.get("tx-tcp-segmentation")).toEqual({ on: false, fixed: false });
    expect(f.has("Features for twill.1")).toBe(false);
  });
});

describe("planFeaturesOff", () => {
  it("turns off what is on and changeable, names what is on and fixed, leaves the rest", () => {
    expect(planFeaturesOff(parseFeatures(listing("on")), ["tx-checksum-ip-generic", "tx-checksum-ipv4", "no-such"])).toEqual({ off: ["tx-checksum-ip-generic"], fixedOn: [] });
    expect(planFeaturesOff(parseFeatures(listing("off")), ["tx-checksum-ip-generic"])).toEqual({ off: [], fixedOn: [] });
    expect(planFeaturesOff(parseFeatures(listing("on [fixed]")), ["tx-checksum-ip-generic"])).toEqual({ off: [], fixedOn: ["tx-checksum-ip-generic"] });
  });
});

describe("ensureFeaturesOff", () => {
  const fake = (generic: string) => {
    const calls: string[][] = [];
    const runner: Runner = async (argv) => {
      calls.push([...argv]);
      return { code: 0, stdout: argv.includes("-k") ? listing(generic) : "", stderr: "" };
    };
    return { ip: new IpRoute("/proc/1/ns/net", runner), calls };
  };

  it("reads the features in the handle's namespace and changes only what is on", async () => {
    const on = fake("on");
    expect(await ensureFeaturesOff(on.ip, "twill.1", ["tx-checksum-ip-generic"])).toEqual(["tx-checksum-ip-generic"]);
    expect(on.calls).toEqual([
      ["nsenter", "--net=/proc/1/ns/net", "ethtool", "-k", "twill.1"],
      ["nsenter", "--net=/proc/1/ns/net", "ethtool", "-K", "twill.1", "tx-checksum-ip-generic", "off"],
    ]);
    const off = fake("off");
    expect(await ensureFeaturesOff(off.ip, "twill.1", ["tx-checksum-ip-generic"])).toEqual([]);
    expect(off.calls).toHaveLength(1);
  });

  it("fails naming the device and feature when the feature is fixed on", async () => {
    const err = await ensureFeaturesOff(fake("on [fixed]").ip, "twill.1", ["tx-checksum-ip-generic"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(String(err)).toMatch(/turn off tx-checksum-ip-generic on "twill.1": the driver does not let it change/);
  });
});
