import { readFileSync } from "node:fs";

/**
 * The veth pair that joins a pod to the bridge. The pod end is created directly inside the
 * pod's namespace under its final name, so no half-configured interface ever shows up in the
 * node namespace and an interface of that name already in the pod makes creation fail (EEXIST)
 * instead of being silently reused.
 */

export interface VethSpec {
  /** The node end. */
  name: string;
  mac: string;
  mtu?: number;
  /** The bridge the node end is enslaved to. */
  master: string;
  peer: {
    name: string;
    /** Left to the kernel when absent. */
    mac?: string;
    /** A namespace path: /var/run/netns/NAME or /proc/PID/ns/net. */
    netns: string;
  };
}

/**
 * Names of the links in the namespace this process runs in, from /proc/net/dev (it follows the
 * reader's namespace): lets DEL skip starting `ip` when the link is already gone. Null when
 * /proc cannot tell.
 */
export function localLinkNames(): Set<string> | null {
  try {
    const text = readFileSync("/proc/self/net/dev", "utf8");
    return new Set(text.split("\n").slice(2).map((l) => l.split(":")[0]!.trim()).filter(Boolean));
  } catch {
    return null;
  }
}
