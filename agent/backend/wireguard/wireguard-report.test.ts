import { describe, expect, it } from "vitest";
import { formatBytes, peerReports, renderWireguardReport, type WireguardReport } from "./wireguard-report.js";

const desired = [
  { nodeName: "node-2", publicKey: "K2=", endpoint: "192.0.2.2:51820", allowedIps: ["10.244.2.0/24", "fd00:10:244:2::/64"], persistentKeepalive: 0 },
  { nodeName: "node-3", publicKey: "K3=", endpoint: "[fd00:90::3]:51820", allowedIps: ["10.244.3.0/24"], persistentKeepalive: 0 },
];

describe("the wireguard status report", () => {
  it("joins each desired peer to the device's figures by public key; a peer the device lacks has none", () => {
    const device = {
      privateKey: null, listenPort: 51820, fwmark: 0,
      peers: [
        { publicKey: "K2=", endpoint: "192.0.2.2:51820", allowedIps: [], persistentKeepalive: 0, lastHandshakeSec: 1_700_000_000, rxBytes: 1536, txBytes: 10 },
        { publicKey: "OLD=", endpoint: null, allowedIps: [], persistentKeepalive: 0, lastHandshakeSec: 0, rxBytes: 5, txBytes: 5 },
      ],
    };
    expect(peerReports(desired, device)).toEqual([
      { peer: "node-2", publicKey: "K2=", endpoint: "192.0.2.2:51820", allowedIps: ["10.244.2.0/24", "fd00:10:244:2::/64"], lastHandshakeAt: 1_700_000_000_000, rxBytes: 1536, txBytes: 10 },
      { peer: "node-3", publicKey: "K3=", endpoint: "[fd00:90::3]:51820", allowedIps: ["10.244.3.0/24"], lastHandshakeAt: null, rxBytes: 0, txBytes: 0 },
    ]);
  });

  it("renders the mode, wireguard-go, the key and a row per peer, with handshake ages from now", () => {
    const now = 1_700_000_100_000;
    const report: WireguardReport = {
      at: now - 4_000, mode: "userspace", modeReason: "auto: the kernel has no WireGuard device type",
      device: "twill-wg", listenPort: 51820, publicKey: "PUB=",
      wireguardGo: { state: "running", pid: 42, restarts: 1, lastExit: "signal SIGKILL", restartAt: null },
      peers: peerReports(desired, { privateKey: null, listenPort: 51820, fwmark: 0, peers: [{ publicKey: "K2=", endpoint: null, allowedIps: [], persistentKeepalive: 0, lastHandshakeSec: 1_700_000_000, rxBytes: 3 * 1024 * 1024, txBytes: 999 }] }),
      refused: [{ subject: "node-4", reason: "no WireGuard public key published" }],
    };
    const text = renderWireguardReport(report, now).join("\n");
    expect(text).toContain("WireGuard:    userspace (auto: the kernel has no WireGuard device type), wireguard-go running (pid 42), restarts 1, last exit: signal SIGKILL, as of 4s ago");
    expect(text).toContain("device twill-wg, port 51820, public key PUB=");
    expect(text).toContain("Warning:      no WireGuard peer for node-4: no WireGuard public key published");
    expect(text).toMatch(/node-2\s+192\.0\.2\.2:51820\s+10\.244\.2\.0\/24,fd00:10:244:2::\/64\s+1m40s ago\s+3\.0 MiB\s+999 B\s+K2=/);
    expect(text).toMatch(/node-3\s+\[fd00:90::3\]:51820\s+10\.244\.3\.0\/24\s+none yet\s+0 B\s+0 B/);
    expect(renderWireguardReport({ ...report, mode: "kernel", modeReason: "configured", wireguardGo: null, peers: [], refused: [] }, now)).toEqual([
      "WireGuard:    kernel (configured), as of 4s ago",
      "              device twill-wg, port 51820, public key PUB=",
      "",
      "WireGuard peers: none",
    ]);
  });

  it("formats byte counts in binary units", () => {
    expect([0, 1023, 1024, 1536, 5 * 1024 ** 3].map(formatBytes)).toEqual(["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 GiB"]);
  });
});
