import { readFileSync } from "node:fs";
import { writeFileAtomic } from "../shared/fs.js";

/**
 * The agent's state reports (`datapath.json`, `policy.json`) that `twilld status` reads: JSON
 * rewritten on every change and rebuilt by the next one, so no fsync.
 */
export function writeReportFile(path: string, report: unknown): void {
  writeFileAtomic(path, JSON.stringify(report) + "\n", 0o644, false);
}

/** The report, or null when it is missing or unreadable (an agent that has not written one yet). */
export function readReportFile<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return null;
  }
}
