import { readReportFile, writeReportFile } from "../report-file.js";
import type { Direction } from "./types.js";

/**
 * What the running agent enforces, kept in the state directory for `twilld status` (another
 * process), like the datapath report.
 */

export interface PolicyReport {
  enabled: boolean;
  /** Why enforcement is off (a datastore with no API) or not yet in place. */
  reason?: string;
  /** Unix ms of the last successful apply. */
  appliedAt?: number;
  /** The last apply's failure, cleared by the next success. */
  error?: string;
  /** Enforcement is in place but incomplete (no br_netfilter: same-node traffic unfiltered). */
  warning?: string;
  policies: { policy: string; types: Direction[]; pods: string[] }[];
  /** Policies that could not be compiled: their pods get them as allowing nothing. */
  refused?: { policy: string; reason: string; pods: string[] }[];
  /** Packets dropped by policy per local pod since the agent started. */
  drops: { pod: string; ingress: number; egress: number }[];
  ruleset?: { rules: number; elements: number; bytes: number; compileMs: number; applyMs: number };
}

export const policyReportPath = (stateDir: string): string => `${stateDir}/policy.json`;

export const writePolicyReport = (path: string, report: PolicyReport): void => writeReportFile(path, report);

export const readPolicyReport = (path: string): PolicyReport | null => readReportFile<PolicyReport>(path);

/** The `twilld status` lines for NetworkPolicy. Pure. */
export function renderPolicyReport(r: PolicyReport | null, now: number): string[] {
  if (!r) return ["NetworkPolicy: no report (the agent is not running or predates policy enforcement)"];
  if (!r.enabled) return [`NetworkPolicy: not enforced: ${r.reason ?? "disabled"}`];
  const out: string[] = [];
  const when = r.appliedAt === undefined ? "not applied yet" : `applied ${Math.max(0, Math.round((now - r.appliedAt) / 1000))}s ago`;
  const size = r.ruleset ? `, ${r.ruleset.rules} rules, ${r.ruleset.elements} set elements` : "";
  out.push(`NetworkPolicy: enforced (${when}${size})${r.reason ? `: ${r.reason}` : ""}`);
  if (r.error) out.push(`Warning:      the last policy apply failed: ${r.error}`);
  if (r.warning) out.push(`Warning:      ${r.warning}`);
  for (const x of r.refused ?? []) {
    out.push(`Refused:      ${x.policy}: ${x.reason}; enforced as allowing nothing for ${x.pods.join(",")}`);
  }
  if (r.policies.length === 0) {
    out.push("Policies selecting this node's pods: none");
    return out;
  }
  const drops = new Map(r.drops.map((d) => [d.pod, d]));
  out.push(`Policies selecting this node's pods (${r.policies.length}):`);
  const rows = [["POLICY", "TYPES", "PODS"], ...r.policies.map((p) => [p.policy, p.types.join(","), p.pods.join(",")])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) out.push(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
  const dropping = [...drops.values()].filter((d) => d.ingress + d.egress > 0);
  for (const d of dropping) out.push(`Dropped:      ${d.pod}: ${d.ingress} in, ${d.egress} out`);
  return out;
}
