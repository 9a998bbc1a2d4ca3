import { readFileSync } from "node:fs";
import { writeFileAtomic } from "../shared/fs.js";
import type { PeerError } from "./types.js";

/**
 * The outcome of the agent's last datapath reconcile, kept in a file in the state directory
 * so `twilld status` (another process) can say which peers this node cannot reach and why,
 * e.g. a host-gw peer on another L2 segment (flannel#598 only says "invalid argument").
 */

export interface DatapathReport {
  backend: string;
  /** Unix ms of the reconcile. */
  at: number;
  changes: number;
  /** Peers the backend cannot reach, with the reason. */
  errors: PeerError[];
  /** Set when the reconcile itself failed. */
  failed?: string;
}

export const datapathReportPath = (stateDir: string) => `${stateDir}/datapath.json`;

export function writeDatapathReport(path: string, report: DatapathReport): void {
  // Rewritten every resync and rebuilt by the next one: no fsync.
  writeFileAtomic(path, JSON.stringify(report) + "\n", 0o644, false);
}

export function readDatapathReport(path: string): DatapathReport | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as DatapathReport;
  } catch {
    return null;
  }
}
