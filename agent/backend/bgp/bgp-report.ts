import { readReportFile, writeReportFile } from "../../report-file.js";
import { formatDuration } from "../../durations.js";
import { renderTable } from "../../table.js";
import { elapsedMs, type BirdProtocol } from "./bird-answers.js";
import type { BirdSession, Refusal } from "./bird-config.js";
import type { RefusedRoute } from "./bird-routes.js";
import type { BirdSupervisorStatus } from "./bird-supervisor.js";

/**
 * What the bgp backend shows an operator: every BGP session of this node's BIRD (peer, state,
 * uptime, prefixes received and announced per family, and why it is not up), what was
 * refused, and BIRD's own state. Built from plain data on every poll, written to the state
 * directory for `twilld status` (another process), and rendered there.
 */

export interface BgpChannelCounts {
  family: 4 | 6;
  /** Routes imported (accepted) from the peer. */
  received: number;
  /** Routes the peer sent that the import filter refused (kept by `import keep filtered`). */
  filtered: number;
  /** Routes announced to the peer. */
  announced: number;
}

export interface BgpSessionReport {
  /** The peer node (mesh) or the router's address (routers). */
  peer: string;
  protocol: string;
  neighbor: string;
  as: number;
  /** BIRD's BGP state (`Established`, `Active`, `Connect`, `Idle`), or why there is none. */
  state: string;
  up: boolean;
  /** How long the session has been in its state, when BIRD says. */
  sinceMs: number | null;
  /** Why a session is not up (BIRD's last error or info), else null. */
  reason: string | null;
  channels: BgpChannelCounts[];
}

export interface BgpReport {
  /** Unix ms of the poll. */
  at: number;
  bird: BirdSupervisorStatus & { answering: boolean; gracefulRestartRecovery: boolean };
  sessions: BgpSessionReport[];
  /** Leases, routers or local values left out of bird.conf. */
  refusedConfig: Refusal[];
  /** Routes BIRD learned that twilld did not install. */
  refusedRoutes: RefusedRoute[];
}

/**
 * One report per session bird.conf names, matched to BIRD's protocol rows by name; a session
 * BIRD does not run yet (the file not applied, BIRD down) says so. `serverTime` is BIRD's
 * `show status` time, for the uptimes.
 */
export function sessionReports(sessions: readonly BirdSession[], protocols: readonly BirdProtocol[] | null, serverTime: string | null): BgpSessionReport[] {
  const byName = new Map((protocols ?? []).map((p) => [p.name, p]));
  return sessions.map((s) => {
    const base = { peer: s.peer, protocol: s.protocol, neighbor: s.neighbor, as: s.as };
    const p = byName.get(s.protocol);
    if (!p) {
      const state = protocols === null ? "BIRD not answering" : "not configured yet";
      return { ...base, state, up: false, sinceMs: null, reason: state, channels: [] };
    }
    const up = p.state === "up" && (p.bgpState ?? "Established") === "Established";
    const state = p.bgpState ?? (p.state === "down" ? "Down" : p.info.split(/\s{2,}/)[0] || p.state);
    const info = p.info.split(/\s{2,}/).slice(1).join(" ").trim();
    return {
      ...base,
      state,
      up,
      sinceMs: serverTime ? elapsedMs(p.since, serverTime) : null,
      reason: up ? null : (p.lastError ?? (info || `protocol ${p.state}`)),
      channels: p.channels
        .filter((c) => c.name === "ipv4" || c.name === "ipv6")
        .map((c) => ({ family: c.name === "ipv4" ? 4 : 6, received: c.imported, filtered: c.filtered, announced: c.exported })),
    };
  });
}

/** The state of the sessions as one key: a change of it is logged. */
export const sessionStates = (reports: readonly BgpSessionReport[]): Map<string, string> =>
  new Map(reports.map((r) => [r.peer, r.up ? "Established" : `${r.state}${r.reason ? `: ${r.reason}` : ""}`]));

export const bgpReportPath = (stateDir: string): string => `${stateDir}/bgp.json`;
export const writeBgpReport = (path: string, report: BgpReport): void => writeReportFile(path, report);
export const readBgpReport = (path: string): BgpReport | null => readReportFile<BgpReport>(path);

/** The `twilld status` lines for a bgp node. */
export function renderBgpReport(r: BgpReport, now: number): string[] {
  const out: string[] = [];
  const b = r.bird;
  const age = formatDuration(now - r.at);
  const recovering = b.gracefulRestartRecovery ? ", graceful restart recovery" : "";
  const bird = b.answering
    ? `${b.state}${b.pid !== null ? ` (pid ${b.pid})` : ""}${recovering}`
    : `not answering (${b.state}${b.lastExit ? `, last exit: ${b.lastExit}` : ""})`;
  out.push(`BIRD:         ${bird}, restarts ${b.restarts}, as of ${age} ago`);
  if (b.configError) out.push(`Warning:      BIRD refused its configuration: ${b.configError}; the previous one runs`);
  for (const c of r.refusedConfig) out.push(`Warning:      not peered/filtered: ${c.subject}: ${c.reason}`);
  for (const x of r.refusedRoutes) out.push(`Refused:      route ${x.prefix} from ${x.protocol}: ${x.reason}`);
  out.push("");
  if (r.sessions.length === 0) {
    out.push("BGP sessions: none");
    return out;
  }
  out.push(`BGP sessions (${r.sessions.length}):`);
  const counts = (s: BgpSessionReport, f: 4 | 6) => {
    const c = s.channels.find((x) => x.family === f);
    return c ? `${c.received}/${c.filtered}/${c.announced}` : "-";
  };
  out.push(
    ...renderTable([
      ["PEER", "NEIGHBOR", "AS", "STATE", "SINCE", "IPV4 RCVD/FILT/SENT", "IPV6 RCVD/FILT/SENT"],
      // The report is rewritten on a change and every few seconds: its times age with it.
      ...r.sessions.map((s) => [s.peer, s.neighbor, String(s.as), s.state, s.sinceMs === null ? "-" : formatDuration(s.sinceMs + Math.max(0, now - r.at)), counts(s, 4), counts(s, 6)]),
    ]),
  );
  for (const s of r.sessions) if (!s.up && s.reason) out.push(`Down:         ${s.peer}: ${s.reason}`);
  return out;
}
