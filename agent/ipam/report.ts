import type { SkippedName } from "../../ipam/store.js";
import { formatDuration } from "../durations.js";
import { readReportFile, writeReportFile } from "../report-file.js";

/**
 * The leak recovery's last sweep, in a file of the state directory, so `twilld status` (another
 * process) can say whether leaked addresses are being released, and if not, why: above all a
 * node name that is not this node's, under which it refuses to release anything.
 */
export interface LeakReport {
  /** Unix ms of the sweep. */
  at: number;
  /**
   * releasing: judged against this node's pods; boot-only: no pods in the datastore, only
   * reservations from before the last boot; refused: the node name is not shown to be this
   * node's; blind: pods cannot be read. Nothing is released while refused or blind.
   */
  state: "releasing" | "boot-only" | "refused" | "blind";
  /** Why refused, blind or boot-only. */
  reason?: string;
  /** Unix ms since the state has been what it is. */
  since: number;
  reservations: number;
  suspects: number;
  /** Store files skipped as no canonical address. */
  skipped: SkippedName[];
}

export const leakReportPath = (stateDir: string) => `${stateDir}/leaks.json`;

export const writeLeakReport = (path: string, report: LeakReport): void => writeReportFile(path, report);

export const readLeakReport = (path: string): LeakReport | null => readReportFile<LeakReport>(path);

/** `twilld status` lines for the report (none when the agent wrote none: leak recovery off). */
export function renderLeakReport(r: LeakReport | null, now: number): string[] {
  if (!r) return [];
  const state = {
    releasing: "releasing leaked addresses",
    "boot-only": "releasing only reservations from before the last boot",
    refused: "REFUSING to release anything",
    blind: "releasing nothing: pods cannot be read",
  }[r.state];
  const lines = [
    `Leak recovery: ${state} (${r.reservations} reservations, ${r.suspects} suspected; last sweep ${formatDuration(Math.max(0, now - r.at))} ago)`,
  ];
  if (r.reason && r.state !== "releasing") lines.push(`  why: ${r.reason} (for ${formatDuration(Math.max(0, now - r.since))})`);
  for (const s of r.skipped) lines.push(`  skipped store file ${JSON.stringify(s.name)}: ${s.why}`);
  return lines;
}
