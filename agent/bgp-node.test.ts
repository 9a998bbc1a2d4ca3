import { describe, expect, it } from "vitest";
import { nodeBgpSettings, parseAs, parseRouters, readBgpNodeSettings } from "./bgp-node.js";

describe("twilld's BGP flags", () => {
  it("reads ADDRESS@AS lists and refuses anything else", () => {
    expect(parseRouters("192.168.77.1@65000, FD00:77::1@4200000000")).toEqual([
      { address: "192.168.77.1", as: 65000 },
      { address: "fd00:77::1", as: 4200000000 },
    ]);
    expect(() => parseRouters("192.168.77.1")).toThrow(/not ADDRESS@AS/);
    expect(() => parseRouters("192.168.77.1@x")).toThrow(/not ADDRESS@AS/);
    expect(() => parseRouters("host@65000")).toThrow(/not ADDRESS@AS/);
    expect(() => parseRouters("192.168.77.1@0")).toThrow(/AS 0 is not an AS number/);
    expect(parseAs(65001, "--bgp-as")).toBe(65001);
    expect(() => parseAs(1.5, "--bgp-as")).toThrow(/--bgp-as 1.5/);
  });
});

describe("a Node's BGP settings", () => {
  it("reads the AS from the annotation or else the label, and the routers from the annotation", () => {
    expect(nodeBgpSettings({ labels: { "twill.dev/bgp-as": "65101" } })).toEqual({ as: 65101 });
    expect(nodeBgpSettings({ annotations: { "twill.dev/bgp-as": "65001", "twill.dev/bgp-routers": "10.1.0.1@65000" }, labels: { "twill.dev/bgp-as": "65101" } })).toEqual({
      as: 65001,
      routers: [{ address: "10.1.0.1", as: 65000 }],
    });
    expect(nodeBgpSettings({})).toEqual({});
  });

  it("names the annotation or label that is wrong", () => {
    expect(() => nodeBgpSettings({ annotations: { "twill.dev/bgp-as": "rack-1" } })).toThrow(/Node annotation twill.dev\/bgp-as "rack-1" is not an AS number/);
    expect(() => nodeBgpSettings({ labels: { "twill.dev/bgp-as": "0" } })).toThrow(/Node label twill.dev\/bgp-as 0/);
    expect(() => nodeBgpSettings({ annotations: { "twill.dev/bgp-routers": "10.1.0.1" } })).toThrow(/Node annotation twill.dev\/bgp-routers: "10.1.0.1" is not ADDRESS@AS/);
  });

  it("takes the flags over the Node, and asks the Node only for what the flags leave open", async () => {
    let asked = 0;
    const node = async () => {
      asked++;
      return { as: 65001, routers: [{ address: "10.1.0.1", as: 65000 }] };
    };
    expect(await readBgpNodeSettings({ as: 65009 }, node)).toEqual({ as: 65009, routers: [{ address: "10.1.0.1", as: 65000 }] });
    expect(await readBgpNodeSettings({ as: 1, routers: [] }, node)).toEqual({ as: 1, routers: [] });
    expect(asked).toBe(1);
    expect(await readBgpNodeSettings({}, null)).toEqual({});
  });
});
