import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseProtocols } from "./bird-answers.js";
import type { BirdSession } from "./bird-config.js";
import { renderBgpReport, sessionReports, sessionStates, type BgpReport } from "./bgp-report.js";

const fixture = (name: string) => readFileSync(join(import.meta.dirname, "fixtures", name), "utf8");

const session = (protocol: string, peer: string, neighbor: string, as: number): BirdSession => ({ protocol, peer, neighbor, local: "192.0.2.10", as, families: [4] });

describe("sessionReports", () => {
  it("reads an established session's uptime and prefixes per family", () => {
    const protocols = parseProtocols(fixture("routers-show-protocols-all.txt"));
    const bgp = protocols.filter((p) => p.proto === "BGP");
    const sessions = bgp.map((p) => session(p.name, p.neighborAddress!, p.neighborAddress!, p.neighborAS!));
    const reports = sessionReports(sessions, protocols, "2026-12-07 00:30:00.000");
    const up = reports.filter((r) => r.up);
    expect(up.length).toBeGreaterThan(0);
    for (const r of up) {
      expect(r.state).toBe("Established");
      expect(r.reason).toBeNull();
      expect(r.sinceMs).toBeGreaterThan(0);
      expect(r.channels.length).toBeGreaterThan(0);
      expect(r.channels[0]).toEqual({ family: expect.any(Number), received: expect.any(Number), filtered: expect.any(Number), announced: expect.any(Number) });
    }
  });

  it("gives a session that is not up BIRD's reason", () => {
    const protocols = parseProtocols(fixture("routers-show-protocols-bad-peer-as.txt"));
    const [report] = sessionReports([session("tor4_192_0_2_1", "192.0.2.1", "192.0.2.1", 65000)], protocols, null);
    expect(report).toMatchObject({ up: false, state: "Active", sinceMs: null });
    expect(report!.reason).toMatch(/./);
  });

  it("says when BIRD does not run a session yet, or does not answer", () => {
    const s = [session("mesh_node_2", "node-2", "192.0.2.12", 64512)];
    expect(sessionReports(s, [], null)[0]).toMatchObject({ up: false, state: "not configured yet" });
    expect(sessionReports(s, null, null)[0]).toMatchObject({ up: false, state: "BIRD not answering" });
    expect(sessionStates(sessionReports(s, null, null))).toEqual(new Map([["node-2", "BIRD not answering: BIRD not answering"]]));
  });
});

describe("renderBgpReport", () => {
  const report: BgpReport = {
    at: 1_000,
    bird: { state: "running", pid: 42, gracefulRestart: false, restarts: 1, lastExit: "killed by SIGKILL", restartAt: null, configError: null, answering: true, gracefulRestartRecovery: false },
    sessions: [
      { peer: "192.168.77.1", protocol: "tor4_192_168_77_1", neighbor: "192.168.77.1", as: 65000, state: "Established", up: true, sinceMs: 65_000, reason: null, channels: [{ family: 4, received: 2, filtered: 1, announced: 1 }] },
      { peer: "fd00:77::1", protocol: "tor6_fd00_77__1", neighbor: "fd00:77::1", as: 65000, state: "Active", up: false, sinceMs: 3_000, reason: "Socket: Connection refused", channels: [] },
    ],
    refusedConfig: [{ subject: "node-9", reason: "subnet 10.9.0.0/24 is outside the cluster CIDRs" }],
    refusedRoutes: [{ prefix: "198.51.100.0/24", protocol: "tor4_192_168_77_1", via: "192.168.77.1", dev: "eth0", reason: "is outside the cluster CIDRs" }],
  };

  it("shows BIRD, every session with its counts, and what was refused", () => {
    const text = renderBgpReport(report, 3_000).join("\n");
    expect(text).toMatch(/^BIRD: +running \(pid 42\), restarts 1/m);
    expect(text).toMatch(/192\.168\.77\.1 +192\.168\.77\.1 +65000 +Established +1m7s +2\/1\/1 +-/);
    expect(text).toMatch(/Down: +fd00:77::1: Socket: Connection refused/);
    expect(text).toMatch(/not peered\/filtered: node-9: subnet 10\.9\.0\.0\/24 is outside/);
    expect(text).toMatch(/Refused: +route 198\.51\.100\.0\/24 from tor4_192_168_77_1: is outside the cluster CIDRs/);
  });

  it("says when BIRD does not answer, and why it last ended", () => {
    const text = renderBgpReport({ ...report, bird: { ...report.bird, answering: false, state: "restarting" } }, 3_000).join("\n");
    expect(text).toMatch(/BIRD: +not answering \(restarting, last exit: killed by SIGKILL\)/);
  });
});
