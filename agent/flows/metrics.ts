import { Counter, type Registry } from "prom-client";
import type { FlowRecord } from "./record.js";

/** Why a flow was not recorded. */
export type LostReason = "overflow" | "rate" | "unknown-prefix";
const LOST_REASONS: readonly LostReason[] = ["overflow", "rate", "unknown-prefix"];

/** Distinct values a tenant-named label takes before the rest count as "other". */
export const LABEL_VALUES_MAX = 200;

/**
 * Flow metrics, registered in the agent's registry. Labels carry tenants' names (namespaces,
 * policies), so each takes at most {@link LABEL_VALUES_MAX} distinct values, the first seen, and
 * the rest count as "other": a tenant creating namespaces or policies by the thousand cannot
 * grow the agent's series without end.
 */
export interface FlowMetrics {
  flows: Counter<"namespace" | "verdict">;
  policyDrops: Counter<"namespace" | "policy">;
  lost: Counter<"reason">;
  /** Counts a record: a connection at its start, a drop; a connection's end is the same flow again. */
  count(r: FlowRecord): void;
  countLost(reason: LostReason, n?: number): void;
}

export function createFlowMetrics(registry: Registry, labelValuesMax = LABEL_VALUES_MAX): FlowMetrics {
  const registers = [registry];
  const flows = new Counter({
    name: "twill_flows_total",
    help: "Connections of this node's pods allowed, and packets policy dropped, per namespace of this node's pod",
    labelNames: ["namespace", "verdict"] as const,
    registers,
  });
  const policyDrops = new Counter({
    name: "twill_flow_drops_total",
    help: "Packets policy dropped as flows report them (at most the drop log's rate), per namespace of this node's pod and the first policy isolating it",
    labelNames: ["namespace", "policy"] as const,
    registers,
  });
  const lost = new Counter({
    name: "twill_flows_lost_total",
    help: "Flows not recorded: the kernel's queue overflowed, over the flow rate, or a dropped packet's prefix no rule of the plan has",
    labelNames: ["reason"] as const,
    registers,
  });
  for (const reason of LOST_REASONS) lost.inc({ reason }, 0);
  const namespace = boundedLabel(labelValuesMax);
  const policy = boundedLabel(labelValuesMax);
  return {
    flows,
    policyDrops,
    lost,
    count(r) {
      if (r.event === "end") return;
      const ns = namespace(r.pod.slice(0, r.pod.indexOf("/")));
      flows.inc({ namespace: ns, verdict: r.verdict });
      if (r.verdict === "dropped") policyDrops.inc({ namespace: ns, policy: policy(r.policies[0] ?? "none") });
    },
    countLost(reason, n = 1) {
      lost.inc({ reason }, n);
    },
  };
}

/** A label's value as given while fewer than `max` distinct values have been, then "other" for new ones. */
export function boundedLabel(max: number): (value: string) => string {
  const seen = new Set<string>();
  return (value) => {
    if (seen.has(value)) return value;
    if (seen.size >= max) return "other";
    seen.add(value);
    return value;
  };
}
