import { readReportFile, writeReportFile } from "../../report-file.js";
import { formatDuration } from "../../durations.js";
import { renderTable } from "../../table.js";
import type { DesiredPeer, Refusal } from "./plan.js";
import type { UapiDevice } from "./uapi.js";
import type { WireguardGoStatus } from "./wireguard-go.js";

/**
 * What the wireguard backend shows an operator: which device this node runs (the kernel's or
 * wireguard-go, and why), its port and public key, and a row per peer (endpoint, allowed IPs,
 * latest handshake, bytes each way), plus the leases refused. Built from plain data on every
 * reconcile, written to the state directory for `twilld status` (another process).
 */

export type WireguardMode = "kernel" | "userspace";

export interface WireguardPeerReport {
  /** The peer's node name. */
  peer: string;
  publicKey: string;
  endpoint: string;
  allowedIps: string[];
  /** Unix ms of the latest handshake the device saw; null: none yet (WireGuard shakes hands only when there is traffic). */
  lastHandshakeAt: number | null;
  rxBytes: number;
  txBytes: number;
}

export interface WireguardReport {
  /** Unix ms of the reconcile. */
  at: number;
  mode: WireguardMode;
  /** Why this mode (`configured`, or what auto found). */
  modeReason: string;
  device: string;
  listenPort: number;
  publicKey: string;
  /** Userspace mode: the supervised wireguard-go. */
  wireguardGo: WireguardGoStatus | null;
  peers: WireguardPeerReport[];
  refused: Refusal[];
}

/** A row per desired peer, with the device's own figures for it when it has the peer (as read before this round's set). */
export function peerReports(desired: readonly DesiredPeer[], device: UapiDevice | null): WireguardPeerReport[] {
  const byKey = new Map((device?.peers ?? []).map((p) => [p.publicKey, p]));
  return desired.map((d) => {
    const seen = byKey.get(d.publicKey);
    return {
      peer: d.nodeName,
      publicKey: d.publicKey,
      endpoint: d.endpoint,
      allowedIps: d.allowedIps,
      lastHandshakeAt: seen && seen.lastHandshakeSec > 0 ? seen.lastHandshakeSec * 1000 : null,
      rxBytes: seen?.rxBytes ?? 0,
      txBytes: seen?.txBytes ?? 0,
    };
  });
}

export const wireguardReportPath = (stateDir: string): string => `${stateDir}/wireguard.json`;
export const writeWireguardReport = (path: string, report: WireguardReport): void => writeReportFile(path, report);
export const readWireguardReport = (path: string): WireguardReport | null => readReportFile<WireguardReport>(path);

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** The `twilld status` lines for a wireguard node. */
export function renderWireguardReport(r: WireguardReport, now: number): string[] {
  const out: string[] = [];
  const go = r.wireguardGo;
  const daemon = go
    ? `, wireguard-go ${go.state}${go.pid !== null ? ` (pid ${go.pid})` : ""}, restarts ${go.restarts}${go.lastExit ? `, last exit: ${go.lastExit}` : ""}`
    : "";
  out.push(`WireGuard:    ${r.mode} (${r.modeReason})${daemon}, as of ${formatDuration(now - r.at)} ago`);
  out.push(`              device ${r.device}, port ${r.listenPort}, public key ${r.publicKey}`);
  for (const x of r.refused) out.push(`Warning:      no WireGuard peer for ${x.subject}: ${x.reason}`);
  out.push("");
  if (r.peers.length === 0) {
    out.push("WireGuard peers: none");
    return out;
  }
  out.push(`WireGuard peers (${r.peers.length}):`);
  out.push(
    ...renderTable([
      ["PEER", "ENDPOINT", "ALLOWED IPS", "LATEST HANDSHAKE", "RECEIVED", "SENT", "PUBLIC KEY"],
      ...r.peers.map((p) => [
        p.peer,
        p.endpoint,
        p.allowedIps.join(","),
        p.lastHandshakeAt === null ? "none yet" : `${formatDuration(Math.max(0, now - p.lastHandshakeAt))} ago`,
        formatBytes(p.rxBytes),
        formatBytes(p.txBytes),
        p.publicKey,
      ]),
    ]),
  );
  return out;
}
