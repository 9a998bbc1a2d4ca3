import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** NetworkPolicy metrics, registered in the agent's registry. */
export interface PolicyMetrics {
  enabled: Gauge;
  dropped: Counter<"namespace" | "pod" | "direction">;
  enforceSeconds: Histogram;
  applies: Counter;
  applyErrors: Counter;
  applySeconds: Histogram;
  rules: Gauge;
  setElements: Gauge;
  isolatedPods: Gauge;
  refused: Gauge;
  wholeCompiles: Counter<"reason">;
}

export function createPolicyMetrics(registry: Registry): PolicyMetrics {
  const registers = [registry];
  const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  return {
    enabled: new Gauge({ name: "twill_policy_enabled", help: "1 while this agent enforces NetworkPolicy", registers }),
    dropped: new Counter({
      name: "twill_policy_dropped_packets_total",
      help: "Packets dropped by NetworkPolicy, per local pod and direction",
      labelNames: ["namespace", "pod", "direction"],
      registers,
    }),
    enforceSeconds: new Histogram({
      name: "twill_policy_enforce_seconds",
      help: "From a policy, pod or namespace event to its rules being in the kernel",
      buckets,
      registers,
    }),
    applies: new Counter({ name: "twill_policy_applies_total", help: "nftables policy transactions applied", registers }),
    applyErrors: new Counter({ name: "twill_policy_apply_errors_total", help: "Policy compiles or applies that failed", registers }),
    applySeconds: new Histogram({ name: "twill_policy_apply_seconds", help: "Compiling and applying the policy ruleset", buckets, registers }),
    rules: new Gauge({ name: "twill_policy_rules", help: "Rules in the policy ruleset", registers }),
    setElements: new Gauge({ name: "twill_policy_set_elements", help: "Set and map elements in the policy ruleset", registers }),
    isolatedPods: new Gauge({ name: "twill_policy_isolated_pods", help: "Local pods that at least one policy isolates", registers }),
    refused: new Gauge({
      name: "twill_policy_refused_policies",
      help: "Policies selecting local pods that could not be compiled, enforced as allowing nothing (twilld status says why)",
      registers,
    }),
    wholeCompiles: new Counter({
      name: "twill_policy_whole_compiles_total",
      help: "Times every policy was compiled anew rather than a change alone: at start, after the table vanished or an update failed, or when the incremental compile failed",
      labelNames: ["reason"],
      registers,
    }),
  };
}
