import type { LabelSelector } from "./types.js";

/** Does `labels` satisfy the selector (metav1.LabelSelector semantics)? Pure. */
export function matchesSelector(selector: LabelSelector, labels: Record<string, string>): boolean {
  // Every pod against every set's selectors is most of a whole compile: no entries array per call.
  const want = selector.matchLabels;
  if (want) for (const k in want) if (labels[k] !== want[k]) return false;
  for (const req of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, req.key);
    const values = req.values ?? [];
    switch (req.operator) {
      case "In":
        if (!has || !values.includes(labels[req.key]!)) return false;
        break;
      case "NotIn":
        if (has && values.includes(labels[req.key]!)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        // An operator this code does not know selects nothing rather than everything.
        return false;
    }
  }
  return true;
}

/**
 * Throws, saying what, for a selector matchesSelector could not evaluate. The API validates
 * selectors; this keeps a malformed one from being a refusal that depends on which pods exist
 * (it would throw only once a pod is evaluated against it).
 */
export function checkSelector(selector: LabelSelector): void {
  if (typeof selector !== "object" || selector === null) throw new Error("not a label selector");
  const expressions: unknown = selector.matchExpressions;
  if (expressions === undefined || expressions === null) return;
  if (!Array.isArray(expressions)) throw new Error("matchExpressions is not a list");
  for (const [i, req] of (expressions as unknown[]).entries()) {
    if (typeof req !== "object" || req === null) throw new Error(`matchExpressions[${i}] is not a requirement`);
    const values = (req as { values?: unknown }).values;
    if (values !== undefined && values !== null && !Array.isArray(values)) throw new Error(`matchExpressions[${i}].values is not a list`);
  }
}
