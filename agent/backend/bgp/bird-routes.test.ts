import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseRoutes, parseStatus, type BirdRoute, type BirdStatus } from "./bird-answers.js";
import type { BirdConfigInput, BirdPeer } from "./bird-config.js";
import { keepInstalled, planBirdRoutes, routesToInstall } from "./bird-routes.js";

/**
 * The fixtures are bird-answers.test.ts's, recorded on node-1 (192.0.2.11, 2001:db8::11 on eth0,
 * pods 10.244.1.0/24 and fd10:244:1::/64) with node-2 leasing 10.244.2.0/24 and fd10:244:2::/64:
 * a mesh in AS 64512, and routers mode behind 192.0.2.1 and 2001:db8::1 (AS 65000) with node-1
 * in AS 65001 and node-2 in AS 65002. The rest are the same answers on plain data, as a hostile
 * peer, router or filter would make them.
 */
const fixture = (name: string): string => readFileSync(join(import.meta.dirname, "fixtures", `${name}.txt`), "utf8");

const lease = (i: number, as?: number): BirdPeer => ({
  nodeName: `node-${i}`,
  address: `192.0.2.1${i}`,
  subnets: [`10.244.${i}.0/24`, `fd10:244:${i}::/64`],
  ...(as === undefined ? {} : { as }),
});

const mesh = (peers: BirdPeer[] = [lease(2), lease(3)]): BirdConfigInput => ({
  nodeName: "node-1",
  clusterCIDRs: ["10.244.0.0/16", "fd10:244::/32"],
  local: { routerId: "192.0.2.11", addresses: ["192.0.2.11", "2001:db8::11"], underlayDev: "eth0", subnets: ["10.244.1.0/24", "fd10:244:1::/64"], as: 64512 },
  peering: { mode: "mesh" },
  peers,
});

const routers = (peers: BirdPeer[] = [lease(2, 65002), lease(3, 65003)], localAs = 65001): BirdConfigInput => ({
  ...mesh(peers),
  local: { ...mesh().local, as: localAs },
  peering: { mode: "routers", routers: [{ address: "192.0.2.1", as: 65000 }, { address: "2001:db8::1", as: 65000 }] },
});

/** A route as parseRoutes gives it: BIRD's best, on eth0, learned by `protocol`. */
const route = (prefix: string, protocol: string, via: string | null, more: Partial<BirdRoute> = {}): BirdRoute => ({
  table: prefix.includes(":") ? "master6" : "master4",
  prefix,
  kind: "unicast",
  protocol,
  since: "2026-12-07 00:27:49.309",
  from: null,
  primary: true,
  preference: 100,
  via,
  dev: "eth0",
  bgpNextHop: via,
  asPath: [],
  attributes: {},
  ...more,
});

const NODE2 = [
  { dst: "10.244.2.0/24", via: "192.0.2.12", dev: "eth0", onlink: false },
  { dst: "fd10:244:2::/64", via: "2001:db8::12", dev: "eth0", onlink: false },
];

describe("planBirdRoutes from recorded answers", () => {
  it("installs a mesh peer's subnets via BIRD's first hop on the underlay, and not this node's own announcements", () => {
    const plan = planBirdRoutes(parseRoutes(fixture("mesh-show-route-all")), mesh());
    expect(plan).toEqual({ routes: NODE2, refused: [] });
  });

  it("installs what the routers carry from node-2's AS", () => {
    const plan = planBirdRoutes(parseRoutes(fixture("routers-show-route-all")), routers());
    expect(plan).toEqual({ routes: NODE2, refused: [] });
  });

  it("refuses a prefix outside the cluster, even when it reached the table", () => {
    const plan = planBirdRoutes(parseRoutes(fixture("routers-show-route-filtered-all")), routers());
    expect(plan.routes).toEqual([]);
    expect(plan.refused).toEqual([
      { prefix: "198.51.100.0/24", protocol: "tor4_192_0_2_1", via: "192.0.2.12", dev: "eth0", reason: "is outside the cluster CIDRs" },
    ]);
  });
});

describe("planBirdRoutes in a mesh, against hostile routes", () => {
  const reasons = (routes: BirdRoute[], config = mesh()) => planBirdRoutes(routes, config).refused.map((r) => `${r.prefix} ${r.protocol}: ${r.reason}`);

  it("refuses another node's subnet learned from the wrong peer, and takes it from its owner", () => {
    const plan = planBirdRoutes(
      [route("10.244.3.0/24", "mesh_node_2", "192.0.2.12"), route("10.244.3.0/24", "mesh_node_3", "192.0.2.13", { primary: false })],
      mesh(),
    );
    expect(plan.routes).toEqual([{ dst: "10.244.3.0/24", via: "192.0.2.13", dev: "eth0", onlink: false }]);
    expect(plan.refused.map((r) => r.reason)).toEqual(["is not leased to node-2, the session's peer (it is node-3's)"]);
  });

  it("prefers BIRD's best route when several pass", () => {
    const plan = planBirdRoutes([route("10.244.3.0/24", "mesh_node_3", "192.0.2.1", { primary: false }), route("10.244.3.0/24", "mesh_node_3", "192.0.2.13")], mesh());
    expect(plan.routes.map((r) => r.via)).toEqual(["192.0.2.13"]);
  });

  it("refuses prefixes outside the cluster, this node's own subnet or a piece of it, and prefixes nobody leases", () => {
    const routes = [
      route("0.0.0.0/0", "mesh_node_2", "192.0.2.12"),
      route("198.51.100.0/24", "mesh_node_2", "192.0.2.12"),
      route("10.244.1.0/24", "mesh_node_2", "192.0.2.12"),
      route("10.244.1.128/25", "mesh_node_2", "192.0.2.12"),
      route("fd10:244:1::/64", "mesh_node_2", "2001:db8::12"),
      route("10.244.9.0/24", "mesh_node_2", "192.0.2.12"),
      route("10.244.2.0/25", "mesh_node_2", "192.0.2.12"),
    ];
    expect(planBirdRoutes(routes, mesh()).routes).toEqual([]);
    expect(reasons(routes)).toEqual([
      "0.0.0.0/0 mesh_node_2: is outside the cluster CIDRs",
      "198.51.100.0/24 mesh_node_2: is outside the cluster CIDRs",
      "10.244.1.0/24 mesh_node_2: overlaps this node's own subnet",
      "10.244.1.128/25 mesh_node_2: overlaps this node's own subnet",
      "fd10:244:1::/64 mesh_node_2: overlaps this node's own subnet",
      "10.244.9.0/24 mesh_node_2: is not leased to node-2, the session's peer",
      "10.244.2.0/25 mesh_node_2: is not leased to node-2, the session's peer",
    ]);
  });

  it("refuses a first hop on another device, a missing or foreign-family first hop, and a route that is not unicast", () => {
    const routes = [
      route("10.244.2.0/24", "mesh_node_2", "10.244.2.7", { dev: "cni0" }),
      route("fd10:244:2::/64", "mesh_node_2", null),
      route("10.244.3.0/24", "mesh_node_3", "2001:db8::13"),
      route("fd10:244:3::/64", "mesh_node_3", null, { kind: "blackhole", dev: null }),
    ];
    expect(planBirdRoutes(routes, mesh()).routes).toEqual([]);
    expect(reasons(routes)).toEqual([
      "10.244.2.0/24 mesh_node_2: leaves by cni0, not by the underlay device eth0",
      "fd10:244:2::/64 mesh_node_2: has no first hop",
      "10.244.3.0/24 mesh_node_3: first hop 2001:db8::13 is not IPv4",
      "fd10:244:3::/64 mesh_node_3: is a blackhole route, not a unicast one",
    ]);
  });

  it("refuses routes from a protocol that is no mesh session, and from a peer whose lease is gone", () => {
    const routes = [route("10.244.2.0/24", "tor4_192_0_2_1", "192.0.2.12"), route("10.244.3.0/24", "mesh_node_3", "192.0.2.13")];
    expect(reasons(routes, mesh([lease(2)]))).toEqual([
      "10.244.2.0/24 tor4_192_0_2_1: came from tor4_192_0_2_1, not a mesh session of this node",
      "10.244.3.0/24 mesh_node_3: came from mesh_node_3, not a mesh session of this node",
    ]);
  });

  it("refuses a prefix two leases claim, from either", () => {
    const claims = { ...lease(3), subnets: ["10.244.2.0/24"] };
    const routes = [route("10.244.2.0/24", "mesh_node_2", "192.0.2.12"), route("10.244.2.0/24", "mesh_node_3", "192.0.2.13", { primary: false })];
    const plan = planBirdRoutes(routes, mesh([lease(2), claims]));
    expect(plan.routes).toEqual([]);
    expect(plan.refused).toHaveLength(2);
  });

  it("skips this node's own static routes and the read-only underlay tables without reporting them", () => {
    const routes = [
      route("10.244.1.0/24", "twill_pods4", null, { kind: "unreachable", dev: null }),
      route("192.0.2.0/24", "twill_direct", null, { table: "twill_underlay4" }),
      route("10.244.2.0/24", "twill_kernel4", "192.0.2.12", { table: "twill_underlay4" }),
    ];
    expect(planBirdRoutes(routes, mesh())).toEqual({ routes: [], refused: [] });
  });
});

describe("planBirdRoutes behind routers: the origin AS tells the owner", () => {
  const plan = (routes: BirdRoute[], config = routers()) => planBirdRoutes(routes, config);

  it("accepts a lease's prefix only from its owner's AS", () => {
    const result = plan([
      route("10.244.2.0/24", "tor4_192_0_2_1", "192.0.2.12", { asPath: [65000, 65003] }),
      route("10.244.3.0/24", "tor4_192_0_2_1", "192.0.2.13", { asPath: [65000, 65003] }),
    ]);
    expect(result.routes).toEqual([{ dst: "10.244.3.0/24", via: "192.0.2.13", dev: "eth0", onlink: false }]);
    expect(result.refused.map((r) => r.reason)).toEqual(["originates from AS 65003, not from AS 65002 of node-2, whose lease it is"]);
  });

  it("ignores a router sending this node's own subnet back, and reports it from any other origin", () => {
    const echo = route("10.244.1.0/24", "tor4_192_0_2_1", "192.0.2.1", { asPath: [65000, 65001] });
    expect(plan([echo])).toEqual({ routes: [], refused: [] });
    const hijack = route("10.244.1.0/24", "tor4_192_0_2_1", "192.0.2.1", { asPath: [65000, 65003] });
    expect(plan([hijack]).refused.map((r) => r.reason)).toEqual(["overlaps this node's own subnet"]);
    // In a mesh there is no echo: a peer sending this node's subnet is reported.
    expect(planBirdRoutes([route("10.244.1.0/24", "mesh_node_2", "192.0.2.12", { asPath: [] })], mesh()).refused).toHaveLength(1);
  });

  it("takes an empty AS path as this node's own AS: a lease in that AS only", () => {
    const routes = [route("10.244.2.0/24", "tor4_192_0_2_1", "192.0.2.12", { asPath: [] })];
    expect(plan(routes).refused.map((r) => r.reason)).toEqual(["originates from AS 65001, not from AS 65002 of node-2, whose lease it is"]);
    expect(plan(routes, routers([lease(2, 65001)])).routes.map((r) => r.dst)).toEqual(["10.244.2.0/24"]);
  });

  it("refuses an AS set origin, a route without its AS path, a lease without an AS, an unknown router and a prefix nobody leases", () => {
    const result = plan(
      [
        route("10.244.2.0/24", "tor4_192_0_2_1", "192.0.2.12", { asPath: [65000, [65002, 65003]] }),
        route("fd10:244:2::/64", "tor6_2001_db8__1", "2001:db8::12", { asPath: null }),
        route("10.244.4.0/24", "tor4_192_0_2_1", "192.0.2.14", { asPath: [65000, 65004] }),
        route("10.244.3.0/24", "tor4_192_0_2_99", "192.0.2.13", { asPath: [65000, 65003] }),
        route("10.244.5.0/24", "tor4_192_0_2_1", "192.0.2.15", { asPath: [65000, 65005] }),
      ],
      routers([lease(2, 65002), lease(3, 65003), lease(4)]),
    );
    expect(result.routes).toEqual([]);
    expect(result.refused.map((r) => `${r.prefix}: ${r.reason}`)).toEqual([
      "10.244.2.0/24: originates from an AS set, not from node-2's AS 65002",
      "fd10:244:2::/64: has no AS path to tell its origin by",
      "10.244.4.0/24: is leased to node-4, whose AS is unknown",
      "10.244.3.0/24: came from tor4_192_0_2_99, not a router session of this node",
      "10.244.5.0/24: is leased to no other node",
    ]);
  });
});

describe("keepInstalled and routesToInstall", () => {
  const running = parseStatus(fixture("mesh-show-status"));
  const recovering = parseStatus(fixture("routers-show-status-graceful-restart"));
  const shuttingDown: BirdStatus = { ...running, state: "Shutdown in progress" };
  const installed = [...NODE2, { dst: "10.244.3.0/24", via: "192.0.2.13", dev: "eth0", onlink: false }];
  const planned = [{ dst: "10.244.2.0/24", via: "192.0.2.1", dev: "eth0", onlink: false }];

  it("keeps what is installed while BIRD is down, recovering from a graceful restart or shutting down", () => {
    expect(keepInstalled(null)).toBe(true);
    expect(keepInstalled(recovering)).toBe(true);
    expect(keepInstalled(shuttingDown)).toBe(true);
    expect(keepInstalled(running)).toBe(false);
  });

  it("prunes to the plan when BIRD's table is whole, and otherwise only replaces", () => {
    expect(routesToInstall(planned, installed, running)).toEqual(planned);
    expect(routesToInstall(planned, installed, recovering)).toEqual([planned[0], installed[1], installed[2]]);
    expect(routesToInstall([], installed, null)).toEqual(installed);
  });
});
