import { readDatapathReport, type DatapathReport } from "./datapath-report.js";
import { formatDuration } from "./durations.js";
import { errorMessage } from "./errors.js";
import { backendText } from "./status.js";
import { renderTable } from "./table.js";
import type { NodeLease, SubnetStore } from "./types.js";

/**
 * `twilld nodes`: every node in the datastore, this one included, and whether this node's
 * datapath reaches it, as the running agent's last reconcile found (its datapath report).
 */

export type Reach = "self" | "yes" | "no" | "unknown";

export interface NodeRow {
  name: string;
  subnets: string[];
  publicIP: string;
  backend: NodeLease["backend"];
  /** Unix ms when the node first claimed its subnets. */
  acquiredAt?: number;
  reach: Reach;
  /** Why this node cannot reach it. */
  why?: string;
}

export interface NodesReport {
  nodeName: string;
  nodes: NodeRow[];
  datastoreError?: string;
}

export function buildNodes(nodeName: string, leases: readonly NodeLease[], datapath: DatapathReport | null, datastoreError?: string): NodesReport {
  const unreachable = new Map<string, string[]>();
  for (const e of datapath?.errors ?? []) unreachable.set(e.peer, [...(unreachable.get(e.peer) ?? []), e.message]);
  for (const e of datapath?.refused ?? []) unreachable.set(e.peer, [...(unreachable.get(e.peer) ?? []), `record refused: ${e.message}`]);
  const nodes = [...leases]
    .sort((a, b) => a.nodeName.localeCompare(b.nodeName))
    .map((l): NodeRow => {
      const why = unreachable.get(l.nodeName);
      const reach: Reach = l.nodeName === nodeName ? "self" : !datapath || datapath.failed ? "unknown" : why ? "no" : "yes";
      return {
        name: l.nodeName,
        subnets: l.subnets,
        publicIP: l.publicIP,
        backend: l.backend,
        ...(l.acquiredAt !== undefined ? { acquiredAt: l.acquiredAt } : {}),
        reach,
        ...(reach === "no" ? { why: why!.join("; ") } : {}),
      };
    });
  return { nodeName, nodes, ...(datastoreError ? { datastoreError } : {}) };
}

export async function gatherNodes(store: SubnetStore, nodeName: string, datapathPath: string): Promise<NodesReport> {
  try {
    return buildNodes(nodeName, await store.list(), readDatapathReport(datapathPath));
  } catch (err) {
    return buildNodes(nodeName, [], null, errorMessage(err));
  }
}

export function renderNodes(r: NodesReport, now: number): string {
  if (r.datastoreError) return `Datastore unreachable: ${r.datastoreError}\n`;
  if (r.nodes.length === 0) return "No nodes in the datastore\n";
  const rows = [
    ["NAME", "SUBNETS", "PUBLIC IP", "BACKEND", "AGE", "REACHABLE"],
    ...r.nodes.map((n) => [
      n.name,
      n.subnets.join(","),
      n.publicIP,
      backendText(n),
      n.acquiredAt === undefined ? "-" : formatDuration(now - n.acquiredAt),
      n.reach === "self" ? "(this node)" : n.reach,
    ]),
  ];
  const out = renderTable(rows);
  for (const n of r.nodes) if (n.why) out.push(`Unreachable: ${n.name}: ${n.why}`);
  if (r.nodes.some((n) => n.reach === "unknown")) out.push("Reachability is unknown until the agent on this node has reconciled (its datapath report).");
  return out.join("\n") + "\n";
}
