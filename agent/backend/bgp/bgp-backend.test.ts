import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseRoutes } from "./bird-answers.js";
import type { NetworkConfig, NodeLease } from "../../types.js";
import { renderBirdConfig } from "./bird-config.js";
import { birdInput, birdVersion, filteredRefusals, nodePeering, routerIdFor } from "./bgp-backend.js";

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

describe("filteredRefusals", () => {
  const fixture = readFileSync(join(import.meta.dirname, "fixtures", "mesh-show-route-filtered-all.txt"), "utf8");
  const input = {
    nodeName: "node-1",
    clusterCIDRs: ["10.244.0.0/16", "fd10:244::/32"],
    local: { routerId: "192.0.2.11", addresses: ["192.0.2.11", "2001:db8::11"], underlayDev: "eth0", subnets: ["10.244.1.0/24", "fd10:244:1::/64"], as: 64512 },
    peering: { mode: "mesh" as const },
    peers: [2, 3].map((i) => ({ nodeName: `node-${i}`, address: `192.0.2.1${i}`, subnets: [`10.244.${i}.0/24`, `fd10:244:${i}::/64`] })),
  };

  it("gives each route BIRD's filter refused twilld's own reason", () => {
    const refused = filteredRefusals(parseRoutes(fixture, "show route filtered all"), input);
    expect(refused.map((r) => [r.prefix, r.protocol, r.reason])).toEqual([
      // BIRD's best route for a prefix is looked at first.
      ["198.51.100.0/24", "mesh_node_2", "is outside the cluster CIDRs"],
      ["10.244.1.0/24", "mesh_node_2", "overlaps this node's own subnet"],
    ]);
  });

  it("says when only an older filter refused a route the leases now allow", () => {
    const route = parseRoutes(fixture, "show route filtered all").filter((r) => r.prefix === "198.51.100.0/24");
    const wider = { ...input, clusterCIDRs: [...input.clusterCIDRs, "198.51.100.0/24"], peers: [{ ...input.peers[0]!, subnets: ["198.51.100.0/24"] }] };
    expect(filteredRefusals(route, wider)).toEqual([expect.objectContaining({ prefix: "198.51.100.0/24", reason: expect.stringMatching(/older leases/) })]);
  });
});

describe("birdVersion", () => {
  const says = (out: string) => async () => ({ code: 0, stdout: "", stderr: out });
  it("is BIRD's 2.x version", async () => {
    expect(await birdVersion("bird", says("BIRD version 2.0.12\n"))).toBe("2.0.12");
  });
  it("refuses BIRD 1.x and a missing BIRD, saying what to install", async () => {
    await expect(birdVersion("bird", says("BIRD version 1.6.8\n"))).rejects.toThrow(/needs BIRD 2; "bird --version" says "BIRD version 1.6.8"/);
    await expect(birdVersion("/nonexistent/bird", async () => { throw new Error("failed to start /nonexistent/bird: ENOENT"); })).rejects.toThrow(/cannot be started .*ENOENT.*install Debian's bird2/);
  });
});
