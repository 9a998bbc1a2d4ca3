import { readFileSync } from "node:fs";
import type { BatchLine, IpRoute } from "./iproute.js";

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

/** One line: both ends with MTU and MAC, node end on the bridge and up, pod end in its namespace. */
export function vethAddLine(spec: VethSpec): BatchLine {
  const mtu = spec.mtu !== undefined ? ["mtu", spec.mtu] : [];
  return [
    "link", "add", "name", spec.name, ...mtu, "address", spec.mac, "master", spec.master, "up",
    "type", "veth", "peer", "name", spec.peer.name, ...mtu, ...(spec.peer.mac ? ["address", spec.peer.mac] : []), "netns", spec.peer.netns,
  ];
}

/** Hairpin: the bridge may send a frame back out of the port it came in on (pod to its own service IP). */
export const hairpinLine = (name: string): BatchLine => ["link", "set", "dev", name, "type", "bridge_slave", "hairpin", "on"];

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

/** Deletes a veth (both ends go). Returns false when it was not there. */
export async function deleteVeth(ip: IpRoute, name: string): Promise<boolean> {
  if (ip.netns === null && localLinkNames()?.has(name) === false) return false;
  return ip.deleteLink(name, "veth");
}
