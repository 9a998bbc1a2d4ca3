import type { FdbSpec } from "./fdb.js";
import type { NeighSpec } from "./neigh.js";
import type { RouteSpec } from "./routes.js";
import type { NetTools } from "./tools.js";
import type { KernelError, Link, LinkAddresses, Route } from "./types.js";
import type { VxlanSpec } from "./vxlan.js";

/**
 * The kernel as the node agent sees it: the node namespace's links, addresses and routes, the
 * entries twill owns for its peers (routes with twill's protocol, permanent neighbors and FDB
 * entries on the VTEP), the few device changes the agent makes, and whether anything moved
 * since it last looked. One implementation speaks rtnetlink in-process (netlink/node.ts); tests
 * of the decisions above it use plain fakes. nftables rulesets go through `nft -f`, one process
 * per change, and ethtool runs once per VTEP.
 */

export type WireguardLinkResult = "created" | "exists" | "unsupported";

/** One change to a peer entry. */
export type DatapathChange =
  | { op: "replace" | "del"; kind: "route"; entry: RouteSpec }
  | { op: "replace" | "del"; kind: "neigh"; entry: NeighSpec }
  | { op: "replace" | "del"; kind: "fdb"; entry: FdbSpec };

/** A change the kernel refused, with why. */
export interface RefusedChange {
  change: DatapathChange;
  error: KernelError;
}

export interface KernelMoves {
  /** twill's entries may have changed. */
  entries: boolean;
  /** One of the devices asked about was deleted (and perhaps made again). */
  devicesDeleted: boolean;
}

/** What moved in the kernel since the last look; the first look counts everything as moved. */
export interface DatapathWatch {
  sinceLast(vtepDev: string | null, devices?: readonly (string | null | undefined)[]): Promise<KernelMoves>;
  close(): void;
}

/** Whether an nftables table may have changed since the last look (true the first time). */
export interface TableWatch {
  sinceLast(): Promise<boolean>;
  close(): void;
}

export interface LinkSettings {
  dev: string;
  mac?: string;
  mtu?: number;
  up?: boolean;
}

export interface NodeKernel extends NetTools {
  /** Every link, master and underlay devices named. */
  links(): Promise<Link[]>;
  /** One link by name, or null when there is none. */
  link(name: string): Promise<Link | null>;
  /** Addresses by link: every link's, or `dev`'s alone (none when it does not exist). */
  addrs(dev?: string): Promise<LinkAddresses[]>;
  /** The main table's default routes of one family. */
  defaultRoutes(family: 4 | 6): Promise<Route[]>;
  /** Every route twill owns (its protocol) in the main table, both families. */
  ownedRoutes(): Promise<RouteSpec[]>;
  /** Permanent neighbors on `dev` (none when it does not exist). */
  permanentNeighbors(dev: string): Promise<NeighSpec[]>;
  /** FDB entries with a remote destination on the VXLAN device `dev` (none when it does not exist). */
  fdb(dev: string): Promise<FdbSpec[]>;
  /**
   * Applies every change, each on its own: FDB entries, then stale routes, neighbors, new
   * routes (a route never points at a neighbor not there yet). Returns the refused ones.
   */
  applyDatapath(changes: readonly DatapathChange[]): Promise<RefusedChange[]>;
  /** Creates a VXLAN device, down; KernelError.exists when the name is taken. */
  createVxlan(spec: VxlanSpec): Promise<void>;
  /**
   * Makes a kernel WireGuard device `name` (down, at `mtu`) unless one is there: "exists" when
   * a WireGuard device of that name was there already (its MTU left as it is), "unsupported"
   * when the kernel has no WireGuard device type (EOPNOTSUPP: nothing is made). A link of that
   * name of another kind (wireguard-go's TUN) is a KernelError.
   */
  ensureWireguardLink(name: string, mtu: number): Promise<WireguardLinkResult>;
  setLink(s: LinkSettings, op: string): Promise<void>;
  /** Adds an address (`10.1.0.0/32`), or keeps it when it is there. */
  replaceAddress(dev: string, cidr: string, op: string): Promise<void>;
  deleteAddress(dev: string, cidr: string, op: string): Promise<void>;
  /** Passes bridged traffic of bridge `name` through netfilter; false when there is no such bridge. */
  bridgeNetfilter(name: string): Promise<boolean>;
  /** Deletes a link; false when it was not there. */
  deleteLink(name: string, what: string): Promise<boolean>;
  /** The named counters of nftables table `inet TABLE`, name -> packets; null when there is no such table. */
  nftCounters(table: string): Promise<Map<string, number> | null>;
  /** A watch of links, addresses, routes and the VTEP's neighbors and FDB. */
  watchDatapath(): DatapathWatch;
  /** A watch of one nftables table. */
  watchTable(family: string, table: string): TableWatch;
  /** Releases sockets; a later call opens them again. */
  close(): void;
}
