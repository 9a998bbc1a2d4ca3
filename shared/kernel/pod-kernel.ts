import type { BridgeSpec } from "./bridge.js";
import { IpRoute, KernelError, type AddrInfo, type BatchLine, type Link, type LinkAddrs, type RouteEntry } from "./iproute.js";
import { ensureMasquerade, readMasquerade, type MasqSpec, type MasqState } from "./nft.js";
import { ensureSysctl } from "./sysctl.js";
import { localLinkNames, type VethSpec } from "./veth.js";

/**
 * The kernel as the per-pod plugin sees it: a few kinds of change applied in order in one
 * namespace, and reads of links, addresses and routes. Two implementations make the same
 * changes: netlink spoken in-process (the compiled plugin: no process start) and iproute2
 * (`ip -batch` and `nft list`, where Bun's FFI is not available). Plans are built from NetSteps, so what ADD
 * does is decided once, whichever way it reaches the kernel.
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
export type BridgeState = Link & { addr_info?: AddrInfo[] };

export interface PodState {
  links: Link[];
  addrs: LinkAddrs[];
  routes: RouteEntry[];
}

export interface PodKernel {
  readonly kind: "netlink" | "iproute2";
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

/** A step as an `ip -batch` line. */
export function stepLine(s: NetStep): BatchLine {
  switch (s.op) {
    case "set-link":
      return [
        "link", "set", "dev", s.dev,
        ...(s.mtu !== undefined ? ["mtu", s.mtu] : []),
        ...(s.mac ? ["address", s.mac] : []),
        ...(s.promisc ? ["promisc", "on"] : []),
        ...(s.up ? ["up"] : []),
      ];
    case "add-veth": {
      const v = s.veth;
      const mtu = v.mtu !== undefined ? ["mtu", v.mtu] : [];
      return [
        "link", "add", "name", v.name, ...mtu, "address", v.mac, "master", v.master, "up",
        "type", "veth", "peer", "name", v.peer.name, ...mtu, ...(v.peer.mac ? ["address", v.peer.mac] : []), "netns", v.peer.netns,
      ];
    }
    case "hairpin":
      return ["link", "set", "dev", s.dev, "type", "bridge_slave", "hairpin", "on"];
    case "add-address":
      // No DAD: the address is usable at once; DAD would hold an IPv6 pod for a second or more (k8s#54651).
      return ["addr", s.replace ? "replace" : "add", s.cidr, "dev", s.dev, ...(s.cidr.includes(":") ? ["nodad"] : [])];
    case "add-route":
      return ["route", "add", s.dst, ...(s.via ? ["via", s.via] : []), "dev", s.dev];
  }
}

/** What both kernels do the same way: `nft -f` (a process either way) and /proc/sys. */
export const nodeWrites: Pick<PodKernel, "writeMasquerade" | "setSysctl"> = {
  writeMasquerade: (spec, have) => ensureMasquerade(new IpRoute(null), spec, have),
  setSysctl: ensureSysctl,
};

/** The plugin's kernel through `ip` processes: one `ip -batch` per namespace and change set. */
export function iprouteKernel(): PodKernel {
  const node = new IpRoute(null);
  return {
    kind: "iproute2",
    apply: (netns, steps, op) => new IpRoute(netns).batch(steps.map(stepLine), op),
    async applyAndReadBridge(steps, bridge, op) {
      const out = await node.batchRead([...steps.map(stepLine), ["addr", "show", "dev", bridge]], op);
      return (out[0] as BridgeState[] | undefined)?.[0] ?? null;
    },
    async createBridge(spec) {
      await node.exec(
        ["link", "add", "name", spec.name, "address", spec.mac, ...(spec.mtu !== undefined ? ["mtu", spec.mtu] : []), "type", "bridge"],
        `create bridge "${spec.name}"`,
      );
    },
    link: (netns, name) => (netns === null ? node : new IpRoute(netns)).link(name),
    links: (netns) => (netns === null ? node : new IpRoute(netns)).links(),
    async podState(netns) {
      const out = await new IpRoute(netns).batchRead(
        [["link", "show"], ["addr", "show"], ["route", "show", "table", "all"]],
        `read the pod network in ${netns}`,
      );
      const [links, addrs, routes] = out as [Link[], LinkAddrs[], RouteEntry[]];
      return { links, addrs, routes };
    },
    readMasquerade: (network) => readMasquerade(node, network),
    ...nodeWrites,
    async deleteLink(name, what) {
      // /proc tells for free when there is nothing to delete: no `ip` start on a repeated DEL.
      if (localLinkNames()?.has(name) === false) return false;
      return node.deleteLink(name, what);
    },
    close() {},
  };
}

export { KernelError };
