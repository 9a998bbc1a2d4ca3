import type { BridgeSpec } from "./bridge.js";
import type { MasqSpec, MasqState } from "./nft.js";
import { KernelError, type Address, type Link, type LinkAddresses, type Route } from "./types.js";
import type { VethSpec } from "./veth.js";

/**
 * The kernel as the per-pod plugin sees it: a few kinds of change applied in order in one
 * namespace, and reads of links, addresses and routes, spoken over netlink in-process
 * (netlink/kernel.ts: no process start). Plans are built from NetSteps, pure data, so what ADD
 * does is decided and tested apart from the kernel.
 */

export type NetStep =
  /** MTU, MAC, promiscuity, up on an existing link. */
  | { op: "set-link"; dev: string; mtu?: number; mac?: string; promisc?: boolean; up: boolean }
  /** A veth pair, node end on its bridge and up, peer created inside the pod's namespace. */
  | { op: "add-veth"; veth: VethSpec }
  /** Hairpin on a bridge port. */
  | { op: "hairpin"; dev: string }
  /** An address; IPv6 without DAD; `replace` makes an address that is there a success. */
  | { op: "add-address"; dev: string; cidr: string; replace: boolean }
  /** A main-table route through `dev`. */
  | { op: "add-route"; dst: string; via?: string; dev: string };

/** A bridge as read back: the link with its addresses. */
export type BridgeState = Link & { addresses: Address[] };

export interface PodState {
  links: Link[];
  addresses: LinkAddresses[];
  routes: Route[];
}

export interface PodKernel {
  /**
   * Applies `steps` in order in `netns` (null: the node's, the one the plugin runs in) and
   * stops at the first failure: a KernelError whose batchLine is the failed step (1-based).
   */
  apply(netns: string | null, steps: readonly NetStep[], op: string): Promise<void>;
  /** apply() in the node namespace, then the bridge read back with its addresses. */
  applyAndReadBridge(steps: readonly NetStep[], bridge: string, op: string): Promise<BridgeState | null>;
  /** Creates the bridge, down; EEXIST (KernelError.exists) when the name is taken. */
  createBridge(spec: BridgeSpec): Promise<void>;
  link(netns: string | null, name: string): Promise<Link | null>;
  links(netns: string | null): Promise<Link[]>;
  /** Links, addresses and routes (all tables) inside a pod's namespace. */
  podState(netns: string): Promise<PodState>;
  /** The node's masquerade table of `network` (null: none); changes to it go through `nft -f`. */
  readMasquerade(network: string): Promise<MasqState | null>;
  /** Completes the network's masquerade table in one `nft -f` when `have` lacks something; true when it wrote. */
  writeMasquerade(spec: MasqSpec, have: MasqState | null): Promise<boolean>;
  /** Sets a sysctl of the node namespace unless it has the value already; true when it wrote. */
  setSysctl(key: string, value: string, opts?: { optional?: boolean }): boolean;
  /** Deletes a node link (a veth takes its peer along); false when it was not there. */
  deleteLink(name: string, what: string): Promise<boolean>;
  /** Releases sockets; the kernel object stays usable until then. */
  close(): void;
}

export { KernelError };
