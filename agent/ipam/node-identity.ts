import { networkInterfaces } from "node:os";
import { formatIp, parseIp } from "../../shared/net/cidr.js";

/**
 * Whether the node name twilld was given is this node, before leak recovery trusts "the pods
 * of node N" to be this node's pods. A name that differs from kubelet's (the hostname default,
 * a typo, a node re-registered under another name) lists no pods, or another node's: every
 * reservation here would then look leaked and be released under running pods.
 *
 * The name must be a Node in the API, and one of its status.addresses must be an address of
 * one of this host's interfaces. kubelet's InternalIP is the address of one of the node's
 * interfaces (--node-ip must be, and without it kubelet takes the default route's), clouds
 * included (the VPC address on eth0); an ExternalIP may be NAT's and on no interface, so any
 * one match suffices. The underlay address twilld detected is not used: --public-ip may be a
 * second NIC kubelet does not report, and `twilld ipam` in another process does not know it.
 * Loopback addresses prove nothing (every host has them) and are left out.
 */

export interface RawNode {
  metadata?: { name?: string };
  status?: { addresses?: { type?: string; address?: string }[] };
}

/** Why `node` (null: no Node of that name) is not shown to be this host; null when it is. */
export function nodeIdentityProblem(nodeName: string, node: RawNode | null, ownAddresses: readonly string[]): string | null {
  if (node === null) return `no Node named "${nodeName}" in the API: --node-name must be kubelet's node name`;
  const own = new Set(ownAddresses.flatMap(canonical).filter((ip) => !isLoopback(ip)));
  const listed = (node.status?.addresses ?? []).flatMap((a) => (a.type === "Hostname" ? [] : canonical(a.address)));
  if (listed.some((ip) => own.has(ip))) return null;
  const theirs = listed.length > 0 ? listed.join(", ") : "none";
  return `Node "${nodeName}" is not this host: none of its addresses (${theirs}) is on this host's interfaces; --node-name must be kubelet's node name`;
}

/** This host's interface addresses (the network namespace twilld runs in: the node's). */
export const hostAddresses = (): string[] =>
  Object.values(networkInterfaces()).flatMap((addrs) => (addrs ?? []).map((a) => a.address));

function canonical(text: unknown): string[] {
  if (typeof text !== "string") return [];
  try {
    const ip = parseIp(text.split("%")[0]!);
    return [formatIp(ip.family, ip.value)];
  } catch {
    return [];
  }
}

const isLoopback = (ip: string): boolean => ip === "::1" || ip.startsWith("127.");
