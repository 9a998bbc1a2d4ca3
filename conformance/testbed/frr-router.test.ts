import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FrrAnswerError, frrConfigInput, parseBgpSummary, parseZebraRoutes, renderFrrConfig, ROUTER_GRACEFUL_RESTART_S } from "./frr-router.js";

/**
 * The router's FRR config rendered from plain data, and FRR 8.4's JSON answers read from
 * recordings (fixtures/: the privileged test's router, three dual-stack nodes, nodes 1 and 2
 * on segment a, node 3 on segment b).
 */

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, "fixtures", name), "utf8");
const DUAL = { family: "dual", segments: ["a", "b"], clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/56"], subnetLen: { 4: 24, 6: 64 } } as const;
const lines = (text: string): string[] => text.split("\n");

describe("renderFrrConfig", () => {
  it("peers each family of a dual-stack underlay by listen ranges, taking only pod subnets of the cluster", () => {
    const { bgpd, zebra } = renderFrrConfig(frrConfigInput(DUAL));
    expect(lines(zebra)[0]).toBe("frr defaults datacenter");
    expect(lines(bgpd)[0]).toBe("frr defaults datacenter");
    expect(bgpd).toContain("ip prefix-list twill-pods4 seq 5 permit 10.244.0.0/16 ge 24 le 24\n");
    expect(bgpd).toContain("ipv6 prefix-list twill-pods6 seq 5 permit fd00:10:244::/56 ge 64 le 64\n");
    const router = bgpd.slice(bgpd.indexOf("router bgp"));
    expect(lines(router)).toEqual([
      "router bgp 65000",
      " bgp router-id 192.168.77.1",
      " no bgp ebgp-requires-policy",
      " no bgp default ipv4-unicast",
      " bgp graceful-restart",
      ` bgp graceful-restart restart-time ${ROUTER_GRACEFUL_RESTART_S}`,
      ` bgp graceful-restart stalepath-time ${ROUTER_GRACEFUL_RESTART_S}`,
      " neighbor nodes peer-group",
      " neighbor nodes remote-as external",
      " bgp listen range 192.168.77.0/24 peer-group nodes",
      " bgp listen range 192.168.88.0/24 peer-group nodes",
      " neighbor nodes6 peer-group",
      " neighbor nodes6 remote-as external",
      " bgp listen range fd00:77::/64 peer-group nodes6",
      " bgp listen range fd00:88::/64 peer-group nodes6",
      " address-family ipv4 unicast",
      "  neighbor nodes activate",
      "  neighbor nodes prefix-list twill-pods4 in",
      " exit-address-family",
      " address-family ipv6 unicast",
      "  neighbor nodes6 activate",
      "  neighbor nodes6 prefix-list twill-pods6 in",
      "  neighbor nodes6 route-map twill-prefer-global in",
      " exit-address-family",
      "exit",
      "",
    ]);
    expect(bgpd).toContain("route-map twill-prefer-global permit 10\n set ipv6 next-hop prefer-global\n");
  });

  it("peers only the families the underlay and the cluster both have", () => {
    const v4 = renderFrrConfig(frrConfigInput({ ...DUAL, family: 4 })).bgpd;
    expect(v4).toContain("neighbor nodes activate");
    expect(v4).not.toMatch(/nodes6|ipv6|fd00/);
    const v4Pods = renderFrrConfig(frrConfigInput({ ...DUAL, clusterCIDRs: ["10.244.0.0/16"] })).bgpd;
    expect(v4Pods).not.toMatch(/nodes6|ipv6|fd00/);
    const v6 = renderFrrConfig(frrConfigInput({ ...DUAL, family: 6, segments: ["a"] })).bgpd;
    expect(v6).not.toMatch(/neighbor nodes |ip prefix-list|192\.168/);
    expect(v6).toContain(" bgp listen range fd00:77::/64 peer-group nodes6\n");
  });

  it("takes the first segment's router leg as router ID, a fixed one on an IPv6-only underlay, and another AS when given", () => {
    expect(frrConfigInput({ ...DUAL, segments: ["b", "a"] }).routerId).toBe("192.168.88.1");
    expect(frrConfigInput({ ...DUAL, family: 6 }).routerId).toBe("192.0.2.1");
    expect(lines(renderFrrConfig(frrConfigInput({ ...DUAL, as: 64999 })).bgpd)).toContain("router bgp 64999");
  });

  it("matches a cluster CIDR of the subnet length exactly, lists several CIDRs of a family, and refuses a length that does not fit", () => {
    const input = frrConfigInput({ ...DUAL, clusterCIDRs: ["10.244.0.0/24", "10.245.0.0/16"] });
    const { bgpd } = renderFrrConfig(input);
    expect(bgpd).toContain("ip prefix-list twill-pods4 seq 5 permit 10.244.0.0/24\n");
    expect(bgpd).toContain("ip prefix-list twill-pods4 seq 10 permit 10.245.0.0/16 ge 24 le 24\n");
    expect(() => renderFrrConfig({ ...input, subnetLen: { 4: 8 } })).toThrow(/length 8 does not fit cluster CIDR 10.244.0.0\/24/);
    expect(() => renderFrrConfig({ ...input, subnetLen: {} })).toThrow(/length undefined/);
    expect(() => renderFrrConfig({ ...input, clusterCIDRs: ["10.244.0.0/16; bgp"] })).toThrow();
  });
});

describe("parseBgpSummary", () => {
  it("reads every session of both families from a recorded answer", () => {
    const sessions = parseBgpSummary(fixture("frr-show-bgp-summary.json"));
    expect(sessions.map(({ family, peer, remoteAs, state, pfxRcd, pfxSnt }) => `${family} ${peer} AS${remoteAs} ${state} ${pfxRcd}/${pfxSnt}`)).toEqual([
      "4 192.168.77.11 AS65001 Established 1/3",
      "4 192.168.77.12 AS65002 Established 1/3",
      "4 192.168.88.13 AS65003 Established 1/3",
      "6 fd00:77::11 AS65001 Established 1/3",
      "6 fd00:77::12 AS65002 Established 1/3",
      "6 fd00:88::13 AS65003 Established 1/3",
    ]);
    expect(sessions[0]!.uptimeMs).toBe(2000);
  });

  it("takes a session not up yet as 0 prefixes, no family as no session, and refuses what is not FRR's JSON", () => {
    const answer = JSON.stringify({ ipv4Unicast: { peers: { "192.168.77.11": { remoteAs: 65001, state: "Active" } } } });
    expect(parseBgpSummary(answer)).toEqual([{ family: 4, peer: "192.168.77.11", remoteAs: 65001, state: "Active", pfxRcd: 0, pfxSnt: 0, uptimeMs: 0 }]);
    expect(parseBgpSummary("{}")).toEqual([]);
    expect(() => parseBgpSummary("% Unknown command")).toThrow(FrrAnswerError);
    expect(() => parseBgpSummary("[]")).toThrow(/not a JSON object/);
    expect(() => parseBgpSummary(JSON.stringify({ ipv6Unicast: {} }))).toThrow(/no peers in ipv6Unicast/);
    expect(() => parseBgpSummary(JSON.stringify({ ipv4Unicast: { peers: { x: { state: "Established" } } } }))).toThrow(/malformed peer x/);
  });
});

describe("parseZebraRoutes", () => {
  it("reads zebra's BGP routes with their next hops from a recorded answer", () => {
    const routes = parseZebraRoutes(fixture("frr-show-ipv6-route-bgp.json"), "show ipv6 route bgp json");
    expect(routes.map((r) => `${r.prefix} ${r.protocol} ${r.selected && r.installed ? "installed" : "-"} ${r.nexthops.map((n) => `${n.ip}@${n.dev}`).join(",")}`)).toEqual([
      "fd00:10:244:1::/64 bgp installed fd00:77::11@r-a",
      "fd00:10:244:2::/64 bgp installed fd00:77::12@r-a",
      "fd00:10:244:3::/64 bgp installed fd00:88::13@r-b",
    ]);
  });

  it("refuses a route without a next hop list", () => {
    expect(parseZebraRoutes("{}")).toEqual([]);
    expect(() => parseZebraRoutes(JSON.stringify({ "10.244.1.0/24": {} }))).toThrow(/no route list for 10.244.1.0\/24/);
    expect(() => parseZebraRoutes(JSON.stringify({ "10.244.1.0/24": [{ prefix: "10.244.1.0/24" }] }))).toThrow(/malformed route/);
  });
});
