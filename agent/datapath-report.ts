import { readReportFile, writeReportFile } from "./report-file.js";
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
  /** Peer records refused by admission (agent/peers.ts): never programmed. */
  refused?: PeerError[];
}

export const datapathReportPath = (stateDir: string) => `${stateDir}/datapath.json`;

export const writeDatapathReport = (path: string, report: DatapathReport): void => writeReportFile(path, report);

export const readDatapathReport = (path: string): DatapathReport | null => readReportFile<DatapathReport>(path);
