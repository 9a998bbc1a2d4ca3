import type { Logger } from "../../shared/log.js";
import { readPolicyReady, type PolicyReady } from "../../shared/policy-ready.js";

/**
 * An ADD returns before the pod's containers start. When the pod's namespace has
 * NetworkPolicies, the node agent may not have put the new address in its ruleset yet, and the
 * pod's first connections would pass unfiltered (an egress policy denying them, say). So the
 * ADD waits, briefly, until the agent lists the address as enforced; the agent learns it from
 * the IPAM reservation this ADD made, typically within milliseconds.
 *
 * After `timeoutMs` the ADD goes on and says so: an agent that is down must not stop pods from
 * starting (the pod is filtered as soon as the agent is back).
 */

// A timer of its own, not node:timers/promises: loading that module would cost every ADD, most
// of which never wait.
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What is left to wait for: none when the namespace has no policy or every address is listed. Pure. */
export function addressesAwaitingPolicy(ready: PolicyReady | null, namespace: string | undefined, ips: string[]): string[] {
  if (!ready || namespace === undefined || !ready.namespaces.includes(namespace)) return [];
  const listed = new Set(ready.ips);
  return ips.filter((ip) => !listed.has(ip));
}

/**
 * Polls the ready file every `pollMs`: once the agent has written it, the wait goes on for half
 * an interval on average, and every ADD in a namespace with policies pays that. Reading the small
 * file costs far less than an interval, so the interval is short (`scripts/bench cni --policies`
 * measures the wait).
 */
export async function waitForPolicy(
  file: string,
  namespace: string | undefined,
  ips: string[],
  log: Logger,
  timeoutMs = 5_000,
  pollMs = 2,
): Promise<void> {
  let missing = addressesAwaitingPolicy(readPolicyReady(file), namespace, ips);
  if (missing.length === 0) return;
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    await sleep(pollMs);
    missing = addressesAwaitingPolicy(readPolicyReady(file), namespace, ips);
    if (missing.length === 0) {
      log.info("NetworkPolicy in force for the pod", { namespace, waitedMs: Date.now() - start });
      return;
    }
  }
  log.warn("NetworkPolicy not yet in force for the pod; going on (is twilld running?)", { namespace, ips: missing, waitedMs: Date.now() - start, file });
}
