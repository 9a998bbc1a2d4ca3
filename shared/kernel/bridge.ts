import { existsSync } from "../fs-sync.js";
import type { NodeKernel } from "./node-kernel.js";
import { KernelError, wrongKind, type Link } from "./types.js";
import type { NetStep, PodKernel } from "./pod-kernel.js";

/**
 * The node's pod bridge (`cni0`). Many ADDs run at once on a fresh node, so creating it must
 * never fail because another ADD won the race (plugins#366, "could not add IP address to cni0:
 * file exists"): creation treats EEXIST as success and then verifies what is there, and the
 * settings every ADD applies (MTU, up, gateway address) are idempotent writes, never adds.
 */

export interface BridgeSpec {
  name: string;
  /** Set at creation and never changed: a bridge otherwise takes the lowest MAC of its ports,
   * so it would change as pods come and go and leave stale gateway entries in pods' ARP caches. */
  mac: string;
  mtu?: number;
  promisc?: boolean;
}

/** Why `link` cannot serve as the bridge, or null when it can. */
export function bridgeMismatch(link: Link | null, spec: BridgeSpec): string | null {
  if (!link) return `bridge "${spec.name}" does not exist`;
  const notBridge = wrongKind(link, "bridge", `"${spec.name}"`);
  if (notBridge) return notBridge;
  if (!link.up) return `bridge "${spec.name}" is down`;
  if (spec.mtu !== undefined && link.mtu !== spec.mtu) return `bridge "${spec.name}" has MTU ${link.mtu}, want ${spec.mtu}`;
  return null;
}

/** The idempotent settings every ADD applies to an existing bridge: MTU, promiscuity, up. */
export function bridgeSettingsStep(spec: BridgeSpec): NetStep {
  return { op: "set-link", dev: spec.name, ...(spec.mtu !== undefined ? { mtu: spec.mtu } : {}), ...(spec.promisc ? { promisc: true } : {}), up: true };
}

/** Puts `cidr` (the gateway, `10.1.0.1/24`) on the bridge; `replace` is a no-op when it is there. */
export function bridgeAddressStep(spec: BridgeSpec, cidr: string): NetStep {
  // No DAD for the gateway (add-address never asks for it): pods would route through a
  // tentative address for a second or more.
  return { op: "add-address", dev: spec.name, cidr, replace: true };
}

/**
 * Creates the bridge when it is missing; another process creating it first is success. Then
 * reads it back and fails, naming it, when what exists cannot serve as the bridge.
 */
export async function ensureBridge(kernel: PodKernel, spec: BridgeSpec): Promise<Link> {
  try {
    await kernel.createBridge(spec);
    // A bridge must not autoconfigure from router advertisements that pods send; /proc/sys
    // acts on the namespace the plugin runs in, which is the bridge's.
    kernel.setSysctl(`net/ipv6/conf/${spec.name}/accept_ra`, "0", { optional: true });
  } catch (err) {
    if (!(err instanceof KernelError && err.exists)) throw err;
  }
  const link = await kernel.link(null, spec.name);
  if (!link) throw new Error(`bridge "${spec.name}" vanished right after it was created`);
  const notBridge = wrongKind(link, "bridge", `"${spec.name}"`);
  if (notBridge) throw new Error(notBridge);
  return link;
}

/**
 * Makes bridged traffic of `name` (pod to pod on one node, which never leaves layer 2) pass
 * the IPv4/IPv6 netfilter hooks and conntrack, so nftables `inet` rules and stateful matching
 * apply to it. Per bridge (IFLA_BR_NF_CALL_IPTABLES), not the global
 * net.bridge.bridge-nf-call-* sysctls: nothing else on the node changes. Needs br_netfilter
 * in the kernel. False when the bridge does not exist (yet).
 */
export const ensureBridgeNetfilter = (kernel: Pick<NodeKernel, "bridgeNetfilter">, name: string): Promise<boolean> => kernel.bridgeNetfilter(name);

/**
 * Is br_netfilter in the kernel? Without it the bridge's nf_call_* options do nothing and
 * bridged traffic bypasses the IP hooks. Its sysctl directory exists exactly when it is loaded
 * (the module is global, so any namespace's view tells).
 */
export const bridgeNetfilterLoaded = (): boolean => existsSync("/proc/sys/net/bridge");
