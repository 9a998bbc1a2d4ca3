import { readFileSync } from "./fs-sync.js";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "./fs.js";

/**
 * What the node agent's NetworkPolicy enforcement tells the CNI plugin, beside the subnet
 * file: the namespaces that have policies, and this node's pod addresses the ruleset in the
 * kernel already accounts for. An ADD for a pod in one of those namespaces returns only once
 * its address is listed, so the pod's containers never start before its policy is in force.
 * The agent learns a new pod's address from the IPAM store at reservation time, before the
 * runtime reports it to the API.
 */

export interface PolicyReady {
  /** Namespaces with at least one NetworkPolicy: a new pod there may be selected by one. */
  namespaces: string[];
  /** This node's pod addresses in the ruleset in force. */
  ips: string[];
}

export const policyReadyPath = (subnetFile: string): string => join(dirname(subnetFile), "policy-ready.json");

export function writePolicyReady(path: string, ready: PolicyReady): void {
  // Rebuilt from the API on every start: no fsync.
  writeFileAtomic(path, JSON.stringify(ready) + "\n", 0o644, false);
}

/** The file's content, or null when there is none or it is unreadable (no agent enforcing). */
export function readPolicyReady(path: string): PolicyReady | null {
  try {
    const raw = JSON.parse(readFileSync(path, "utf8")) as Partial<PolicyReady>;
    if (!Array.isArray(raw.namespaces) || !Array.isArray(raw.ips)) return null;
    return { namespaces: raw.namespaces.filter(isString), ips: raw.ips.filter(isString) };
  } catch {
    return null;
  }
}

const isString = (v: unknown): v is string => typeof v === "string";
