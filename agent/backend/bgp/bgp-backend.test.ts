import { describe, expect, it } from "vitest";
import type { NetworkConfig, NodeLease } from "../../types.js";
import { renderBirdConfig } from "./bird-config.js";
import { birdInput, nodePeering, routerIdFor } from "./bgp-backend.js";

describe("routerIdFor", () => {
  it("is the node's IPv4 underlay address when it has one", () => {
    expect(routerIdFor("node-1", ["fd00::1", "192.168.77.11"])).toBe("192.168.77.11");
  });

  it("is a stable ID from the name on an IPv6-only node, different per name and never 0.0.0.0", () => {
    const a = routerIdFor("node-1", ["fd00::1"]);
    expect(a).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(a).not.toBe("0.0.0.0");
    expect(routerIdFor("node-1", ["fd00::2"])).toBe(a);
    expect(routerIdFor("node-2", ["fd00::1"])).not.toBe(a);
  });
});

describe("nodePeering", () => {
  const routers = [{ address: "192.0.2.1", as: 65000 }];
  it("takes the node's own AS and routers over the network config's", () => {
    expect(nodePeering({ mode: "routers", as: 64512, routers }, {})).toEqual({ as: 64512, peering: { mode: "routers", routers } });
    const own = [{ address: "198.51.100.1", as: 65100 }];
    expect(nodePeering({ mode: "routers", as: 64512, routers }, { as: 65001, routers: own })).toEqual({ as: 65001, peering: { mode: "routers", routers: own } });
    expect(nodePeering({ mode: "mesh", as: 64600, routers: [] }, { routers: own })).toEqual({ as: 64600, peering: { mode: "mesh" } });
  });
});

describe("birdInput", () => {
  const network: NetworkConfig = { clusterCIDRs: ["10.244.0.0/16"], subnetLen: { 4: 24 }, backend: { type: "bgp", vni: 1, port: 4789 }, ipMasq: true };
  const lease = (name: string, n: number, as?: number): NodeLease => ({
    nodeName: name, subnets: [`10.244.${n}.0/24`], publicIP: `192.0.2.${10 + n}`, backend: { type: "bgp", ...(as !== undefined ? { as } : {}) },
  });

  it("hands each peer's published AS to the routers filter, which accepts its prefix only from that origin", () => {
    const input = birdInput(
      network,
      { nodeName: "node-1", routerId: "192.0.2.11", addresses: ["192.0.2.11"], underlayDev: "eth0", as: 65001 },
      { mode: "routers", routers: [{ address: "192.0.2.1", as: 65000 }] },
      lease("node-1", 1, 65001),
      [lease("node-2", 2, 65002), lease("node-3", 3)],
    );
    expect(input.local.subnets).toEqual(["10.244.1.0/24"]);
    expect(input.peers).toEqual([
      { nodeName: "node-2", address: "192.0.2.12", subnets: ["10.244.2.0/24"], as: 65002 },
      { nodeName: "node-3", address: "192.0.2.13", subnets: ["10.244.3.0/24"] },
    ]);
    const config = renderBirdConfig(input);
    expect(config.text).toMatch(/net = 10\.244\.2\.0\/24 && bgp_path\.last = 65002/);
    // A peer that published no AS cannot be told from a hijack: refused, not trusted.
    expect(config.refused).toEqual([{ subject: "node-3", reason: expect.stringMatching(/AS undefined is not a 32-bit AS number/) }]);
  });
});
