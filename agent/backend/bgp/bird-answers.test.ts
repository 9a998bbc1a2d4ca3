import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  answerLines,
  BirdAnswerError,
  elapsedMs,
  finalReply,
  parseConfigureReply,
  parseProtocols,
  parseRoutes,
  parseStatus,
  replyError,
} from "./bird-answers.js";

/**
 * Answers recorded from bird 2.0.12 over its control socket (fixtures/), configured by
 * bird-config.ts, in namespaces: node-1 (192.0.2.11) with node-2 (announcing its subnets, node-1's
 * subnet and 198.51.100.0/24) and node-3 (leased, not running). `mesh-*`: the node mesh, AS
 * 64512. `routers-*`: eBGP to a router (AS 65000) at 192.0.2.1 and 2001:db8::1, nodes in AS
 * 65001 and 65002; `routers-show-status-graceful-restart` right after `bird -R`.
 */
const fixture = (name: string): string => readFileSync(join(import.meta.dirname, "fixtures", `${name}.txt`), "utf8");

describe("answerLines and the final reply", () => {
  it("gives continuation lines their record's code and keeps tabs and inner spaces", () => {
    const lines = answerLines(fixture("mesh-show-route-all"));
    expect(lines.slice(0, 5)).toEqual([
      { code: 1007, text: "Table master4:" },
      { code: 1007, text: "10.244.1.0/24        unreachable [twill_pods4 2026-12-07 00:27:48.462] * (200)" },
      { code: 1008, text: "\tType: static univ" },
      { code: 1007, text: "10.244.2.0/24        unicast [mesh_node_2 2026-12-07 00:27:49.309] * (100) [i]" },
      { code: 1007, text: "\tvia 192.0.2.12 on eth0" },
    ]);
    expect(lines.at(-1)).toEqual({ code: 0, text: "" });
  });

  it("leaves out spontaneous printouts", () => {
    expect(answerLines("+0023 log line\n0000 \n")).toEqual([{ code: 0, text: "" }]);
  });

  it("tells errors (8xxx, 9xxx) from results", () => {
    expect(replyError(fixture("mesh-show-status"))).toBeNull();
    expect(replyError(fixture("show-protocols-no-match"))).toEqual({ code: 8003, message: "No protocols match" });
    expect(replyError(fixture("parse-error"))).toEqual({ code: 9001, message: "syntax error, unexpected CF_SYM_UNDEFINED" });
    expect(() => finalReply("1002-half an answer\n")).toThrow(/not a whole BIRD answer/);
  });
});

describe("parseProtocols", () => {
  it("reads every protocol row, and a BGP session's peer, AS, state and channels", () => {
    const protocols = parseProtocols(fixture("mesh-show-protocols-all"));
    expect(protocols.map((p) => [p.name, p.proto, p.state])).toEqual([
      ["twill_device", "Device", "up"],
      ["twill_direct", "Direct", "up"],
      ["twill_kernel4", "Kernel", "up"],
      ["twill_kernel6", "Kernel", "up"],
      ["twill_pods4", "Static", "up"],
      ["twill_pods6", "Static", "up"],
      ["mesh_node_2", "BGP", "up"],
      ["mesh_node_3", "BGP", "start"],
    ]);
    const node2 = protocols.find((p) => p.name === "mesh_node_2")!;
    expect(node2).toMatchObject({
      since: "2026-12-07 00:27:49.241",
      info: "Established",
      bgpState: "Established",
      neighborAddress: "192.0.2.12",
      neighborAS: 64512,
      localAS: 64512,
      lastError: null,
    });
    expect(node2.channels.map((c) => [c.name, c.state, c.table, c.inputFilter, c.imported, c.filtered, c.exported])).toEqual([
      ["ipv4", "UP", "master4", "mesh_node_2_import4", 1, 2, 1],
      ["ipv6", "UP", "master6", "mesh_node_2_import6", 1, 0, 1],
    ]);
    expect(node2.channels[0]!.importUpdates).toEqual({ received: 3, rejected: 0, filtered: 2, ignored: 0, accepted: 1 });
    expect(node2.channels[0]!.importWithdraws).toEqual({ received: 0, rejected: 0, filtered: null, ignored: 2, accepted: 0 });
  });

  it("reads a session that does not come up: its state, the reason, and its channels down", () => {
    const node3 = parseProtocols(fixture("mesh-show-protocols-all")).find((p) => p.name === "mesh_node_3")!;
    expect(node3).toMatchObject({
      state: "start",
      info: "Connect       Socket: No route to host",
      bgpState: "Connect",
      neighborAddress: "192.0.2.13",
      lastError: "Socket: No route to host",
    });
    expect(node3.channels.map((c) => [c.name, c.state, c.imported])).toEqual([["ipv4", "DOWN", 0], ["ipv6", "DOWN", 0]]);
    const router = parseProtocols(fixture("routers-show-protocols-bad-peer-as"));
    expect(router).toHaveLength(1);
    expect(router[0]).toMatchObject({ name: "tor4_192_0_2_1", bgpState: "Active", neighborAS: 65009, localAS: 65001, lastError: "Socket: Connection reset by peer" });
  });

  it("reads sessions to routers, one family each", () => {
    const bgp = parseProtocols(fixture("routers-show-protocols-all")).filter((p) => p.proto === "BGP");
    expect(bgp.map((p) => [p.name, p.neighborAddress, p.neighborAS, p.localAS, p.channels.map((c) => c.name)])).toEqual([
      ["tor4_192_0_2_1", "192.0.2.1", 65000, 65001, ["ipv4"]],
      ["tor6_2001_db8__1", "2001:db8::1", 65000, 65001, ["ipv6"]],
    ]);
    expect(bgp[0]!.channels[0]).toMatchObject({ imported: 1, filtered: 1, exported: 1 });
  });

  it("reads the short form (no details), and an unknown name as no protocol", () => {
    const rows = parseProtocols("2002-Name       Proto      Table      State  Since         Info\n1002-mesh_node_3 BGP        ---        start  2026-12-07 00:28:04.453  Active        \n0000 \n", "show protocols");
    expect(rows).toMatchObject([{ name: "mesh_node_3", state: "start", since: "2026-12-07 00:28:04.453", info: "Active", bgpState: null, channels: [] }]);
    expect(parseProtocols(fixture("show-protocols-no-match"))).toEqual([]);
    expect(() => parseProtocols(fixture("parse-error"), "show nonsense")).toThrow(BirdAnswerError);
    expect(() => parseProtocols("1002-what is this\n0000 \n")).toThrow(/unreadable protocol row/);
  });
});

describe("parseRoutes", () => {
  it("reads each route's prefix, first hop, interface, protocol and BGP attributes", () => {
    const routes = parseRoutes(fixture("mesh-show-route-all"));
    expect(routes.map((r) => [r.table, r.prefix, r.kind, r.protocol, r.primary, r.via, r.dev, r.bgpNextHop])).toEqual([
      ["master4", "10.244.1.0/24", "unreachable", "twill_pods4", true, null, null, null],
      ["master4", "10.244.2.0/24", "unicast", "mesh_node_2", true, "192.0.2.12", "eth0", "192.0.2.12"],
      ["master6", "fd10:244:1::/64", "unreachable", "twill_pods6", true, null, null, null],
      ["master6", "fd10:244:2::/64", "unicast", "mesh_node_2", true, "2001:db8::12", "eth0", "2001:db8::12"],
    ]);
    expect(routes[3]).toMatchObject({ since: "2026-12-07 00:27:49.309", from: "192.0.2.12", preference: 100, asPath: [] });
    expect(routes[1]!.attributes).toEqual({ "BGP.origin": "IGP", "BGP.as_path": "", "BGP.next_hop": "192.0.2.12", "BGP.local_pref": "100" });
  });

  it("reads the AS path, and the global next hop of an IPv6 route that also carries a link-local one", () => {
    const routes = parseRoutes(fixture("routers-show-route-all")).filter((r) => r.kind === "unicast");
    expect(routes.map((r) => [r.prefix, r.protocol, r.from, r.via, r.dev, r.bgpNextHop, r.asPath])).toEqual([
      ["10.244.2.0/24", "tor4_192_0_2_1", "192.0.2.1", "192.0.2.12", "eth0", "192.0.2.12", [65000, 65002]],
      ["fd10:244:2::/64", "tor6_2001_db8__1", "2001:db8::1", "2001:db8::12", "eth0", "2001:db8::12", [65000, 65002]],
    ]);
  });

  it("lists what the filters refused, from whom", () => {
    const mesh = parseRoutes(fixture("mesh-show-route-filtered-all"), "show route filtered all");
    expect(mesh.map((r) => [r.prefix, r.protocol, r.via, r.primary])).toEqual([
      ["10.244.1.0/24", "mesh_node_2", "192.0.2.12", false],
      ["198.51.100.0/24", "mesh_node_2", "192.0.2.12", true],
    ]);
    const routers = parseRoutes(fixture("routers-show-route-filtered-all"), "show route filtered all");
    expect(routers.map((r) => [r.prefix, r.protocol, r.asPath])).toEqual([["198.51.100.0/24", "tor4_192_0_2_1", [65000, 65002]]]);
  });

  it("reads a second route of one prefix, AS sets, device routes, and refuses what it cannot read", () => {
    const answer = [
      "1007-Table master4:",
      " 10.244.5.0/24        unicast [tor4_a 2026-12-07 00:00:01.000] * (100/0) [AS65005i]",
      " \tvia 192.0.2.1 on eth0",
      "1012-\tBGP.as_path: 65000 {65005 65006}",
      "1007-                     unicast [tor4_b 2026-12-07 00:00:02.000 from 192.0.2.2] (100) [AS65005i]",
      " \tdev eth1",
      "0000 ",
      "",
    ].join("\n");
    const routes = parseRoutes(answer);
    expect(routes.map((r) => [r.prefix, r.protocol, r.primary, r.via, r.dev, r.from])).toEqual([
      ["10.244.5.0/24", "tor4_a", true, "192.0.2.1", "eth0", null],
      ["10.244.5.0/24", "tor4_b", false, null, "eth1", "192.0.2.2"],
    ]);
    expect(routes[0]!.asPath).toEqual([65000, [65005, 65006]]);
    expect(parseRoutes("8001 Network not found\n")).toEqual([]);
    expect(() => parseRoutes("1007-10.0.0.0/8 what [x\n0000 \n")).toThrow(/unreadable route line/);
  });
});

describe("parseStatus", () => {
  it("reads the router ID and times, with no recovery running", () => {
    expect(parseStatus(fixture("mesh-show-status"))).toEqual({
      version: "2.0.12",
      routerId: "192.0.2.11",
      serverTime: "2026-12-07 00:27:59.539",
      lastReboot: "2026-12-07 00:27:48.462",
      lastReconfiguration: "2026-12-07 00:27:48.462",
      state: "Daemon is up and running",
      gracefulRestart: false,
      gracefulRestartDetail: [],
    });
  });

  it("sees graceful restart recovery in progress (0024)", () => {
    const status = parseStatus(fixture("routers-show-status-graceful-restart"));
    expect(status.gracefulRestart).toBe(true);
    expect(status.gracefulRestartDetail).toEqual(["Waiting for 2 channels to recover", "Wait timer is 9.665/10"]);
    expect(status.state).toBe("Daemon is up and running");
  });

  it("gives a session's uptime from its since and the server time, both BIRD's clock", () => {
    const status = parseStatus(fixture("mesh-show-status"));
    const node2 = parseProtocols(fixture("mesh-show-protocols-all")).find((p) => p.name === "mesh_node_2")!;
    expect(elapsedMs(node2.since, status.serverTime)).toBe(10_298);
    expect(elapsedMs("2026-12-31 23:59:59.500", "2027-01-01 00:00:00.250")).toBe(750);
    expect(elapsedMs("00:27:49.241", status.serverTime)).toBeNull();
  });
});

describe("parseConfigureReply", () => {
  it("tells a good file, a reload done, one still in progress and a refused file apart", () => {
    expect(parseConfigureReply(fixture("configure-check-ok"))).toEqual({ code: 20, message: "Configuration OK", outcome: "checked" });
    expect(parseConfigureReply(fixture("configure-ok"))).toEqual({ code: 3, message: "Reconfigured", outcome: "reconfigured" });
    expect(parseConfigureReply(fixture("configure-in-progress"))).toEqual({ code: 4, message: "Reconfiguration in progress", outcome: "in progress" });
    for (const name of ["configure-error", "configure-check-error"]) {
      expect(parseConfigureReply(fixture(name))).toEqual({
        code: 8002,
        message: "/tmp/bgpw/rec/mesh-n1-bad.conf:70:68 syntax error, unexpected '}'",
        outcome: "refused",
      });
    }
    expect(parseConfigureReply("0006 Reconfiguration ignored, shutting down\n").outcome).toBe("ignored");
    expect(parseConfigureReply(fixture("parse-error")).outcome).toBe("refused");
  });
});
