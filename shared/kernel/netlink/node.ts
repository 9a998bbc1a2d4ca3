import { run, type Runner } from "../exec.js";
import { netTools } from "../tools.js";
import type {
  DatapathChange, DatapathWatch, KernelMoves, LinkSettings, NodeKernel, RefusedChange, TableWatch, WireguardLinkResult,
} from "../node-kernel.js";
import { KernelError, wrongKind } from "../types.js";
import { IFINFO_LEN, IFLA, NLMSG, NUD_PERMANENT, RTM, RTMGRP, attrsAfter, readNdMsg, type Message, type Request } from "./codec.js";
import { asKernelError } from "./kernel.js";
import { readCountersNetlink } from "./nftables.js";
import { Errno, errnoText, requireLibc, type Libc } from "./libc.js";
import { NETLINK, NetlinkError, NetlinkSocket, NetlinkSubscription } from "./socket.js";
import { Rtnl, fdbRequest, neighborRequest, routeRequest } from "./rtnl.js";
import { TWILL_ROUTE_PROTO, isDefaultRoute } from "../routes.js";

/**
 * The node agent's kernel over rtnetlink, in-process: one socket for requests and one per watch
 * for change notifications, all in the node's namespace (`netns`, null: the caller's). No
 * process is started but `nft` and `ethtool`.
 */
export function netlinkNode(c: Libc, netns: string | null = null, runner: Runner = run): NodeKernel {
  let sock: NetlinkSocket | null = null;
  let nfsock: NetlinkSocket | null = null;
  const rtnl = (): Rtnl => new Rtnl((sock ??= NetlinkSocket.open(c, netns)));
  const call = async <T>(op: string, fn: (nl: Rtnl) => T): Promise<T> => {
    try {
      return fn(rtnl());
    } catch (err) {
      throw asKernelError(err, op, undefined);
    }
  };
  /** `fn`'s result, or `none` when the device it names does not exist. */
  const onDevice = async <T>(op: string, none: T, fn: (nl: Rtnl) => T): Promise<T> => {
    try {
      return await call(op, fn);
    } catch (err) {
      if (err instanceof KernelError && err.notFound) return none;
      throw err;
    }
  };

  return {
    links: () => call("list links", (nl) => nl.links()),
    link: (name) => call(`read link "${name}"`, (nl) => nl.link(name)),
    async addrs(dev) {
      if (dev === undefined) return call("list addresses", (nl) => nl.addrs());
      return onDevice(`read addresses of "${dev}"`, [], (nl) => {
        const link = nl.link(dev);
        return link ? nl.addrs([link]) : [];
      });
    },
    defaultRoutes: (family) => call(`list IPv${family} routes`, (nl) => nl.routesOf(family, null).filter(isDefaultRoute)),
    ownedRoutes: () =>
      call("list twill's routes", (nl) => {
        const links = nl.links();
        return [4, 6].flatMap((f) =>
          nl.routesOf(f as 4 | 6, TWILL_ROUTE_PROTO, links).map((r) => ({
            dst: r.dst, via: r.gateway ?? "", dev: r.dev ?? "", onlink: r.onlink,
          })),
        );
      }),
    permanentNeighbors: (dev) =>
      onDevice(`list neighbors of "${dev}"`, [], (nl) =>
        nl.neighbors(nl.indexOf(dev, `list neighbors of "${dev}"`), NUD_PERMANENT, `list neighbors of "${dev}"`).map((n) => ({ ...n, dev })),
      ),
    fdb: (dev) =>
      onDevice(`list FDB of "${dev}"`, [], (nl) =>
        nl
          .remoteFdb(nl.indexOf(dev, `list FDB of "${dev}"`), `list FDB of "${dev}"`)
          .filter((e) => e.mac !== "00:00:00:00:00:00")
          .map((e) => ({ ...e, dev })),
      ),
    applyDatapath: (changes) => call("update peer routes, neighbors and FDB", (nl) => applyDatapath(nl, changes)),
    createVxlan: (spec) => call(`create VXLAN device "${spec.name}"`, (nl) => nl.addVxlan({ ...spec, dev: spec.dev }, `create VXLAN device "${spec.name}"`)),
    ensureWireguardLink: (name, mtu) => call(`create WireGuard device "${name}"`, (nl) => ensureWireguardLink(nl, name, mtu)),
    setLink: (s: LinkSettings, op) => call(op, (nl) => nl.setLink({ dev: s.dev, mtu: s.mtu, mac: s.mac, up: s.up }, op)),
    replaceAddress: (dev, cidr, op) => call(op, (nl) => nl.addAddress(dev, cidr, true, op)),
    deleteAddress: (dev, cidr, op) => call(op, (nl) => nl.deleteAddress(dev, cidr, op)),
    async bridgeNetfilter(name) {
      const op = `pass bridged traffic of "${name}" through netfilter`;
      return onDevice(op, false, (nl) => {
        nl.bridgeNetfilter(name, op);
        return true;
      });
    },
    deleteLink: (name, what) => onDevice(`delete ${what} "${name}"`, false, (nl) => nl.deleteLink(name, `delete ${what} "${name}"`)),
    ...netTools(netns, runner),
    async nftCounters(table) {
      try {
        return readCountersNetlink((nfsock ??= NetlinkSocket.open(c, netns, NETLINK.NETFILTER)), table);
      } catch (err) {
        throw asKernelError(err, `read the counters of nftables table inet ${table}`, undefined);
      }
    },
    watchDatapath: () => new NetlinkDatapathWatch(c, netns, () => rtnl()),
    watchTable: (family, table) => new NetlinkTableWatch(c, netns, family, table),
    close() {
      sock?.close();
      sock = null;
      nfsock?.close();
      nfsock = null;
    },
  };
}

/**
 * The kernel WireGuard device `name`: kept when there is one, else made (design §2: auto mode
 * is "try to create it"). A kernel without WireGuard refuses the device type with EOPNOTSUPP,
 * and then nothing is made. A link of another kind under that name (wireguard-go's TUN, which
 * has the same name) is refused, not taken for the kernel's device.
 */
export function ensureWireguardLink(nl: Rtnl, name: string, mtu: number): WireguardLinkResult {
  const op = `create WireGuard device "${name}"`;
  for (let attempt = 1; ; attempt++) {
    const link = nl.link(name);
    if (link) {
      const wrong = wrongKind(link, "wireguard", `"${name}"`, "a WireGuard device");
      if (wrong) throw new KernelError(op, `the name is taken: ${wrong}`);
      return "exists";
    }
    try {
      nl.addWireguard({ name, mtu }, op);
      return "created";
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === Errno.EOPNOTSUPP) return "unsupported";
      // Made by another writer in between: what it made is read once more.
      if (!(err instanceof NetlinkError && err.errno === Errno.EEXIST) || attempt > 1) throw err;
    }
  }
}

/**
 * The changes in the order they can be applied: FDB entries, stale routes, neighbors, new
 * routes (a new route never points at a neighbor that is not there yet).
 */
export function applyOrder(changes: readonly DatapathChange[]): DatapathChange[] {
  const rank = (c: DatapathChange): number => (c.kind === "fdb" ? 0 : c.kind === "neigh" ? 2 : c.op === "del" ? 1 : 3);
  return [...changes].sort((a, b) => rank(a) - rank(b));
}

function applyDatapath(nl: Rtnl, changes: readonly DatapathChange[]): RefusedChange[] {
  const ordered = applyOrder(changes);
  const refused: RefusedChange[] = [];
  const indexes = new Map<string, number | null>();
  const indexOf = (dev: string): number | null => {
    if (!indexes.has(dev)) indexes.set(dev, nl.link(dev)?.index ?? null);
    return indexes.get(dev)!;
  };
  const reqs: Omit<Request, "seq">[] = [];
  const sent: DatapathChange[] = [];
  for (const change of ordered) {
    try {
      reqs.push(changeRequest(change, indexOf));
      sent.push(change);
    } catch (err) {
      refused.push({ change, error: asKernelError(err, changeOp(change), undefined) as KernelError });
    }
  }
  const errnos = nl.changeMany(reqs, "update peer routes, neighbors and FDB");
  errnos.forEach((errno, i) => {
    const change = sent[i]!;
    // Deleting what is already gone is done.
    if (errno === 0 || (change.op === "del" && (errno === 2 || errno === 3 || errno === 19))) return;
    refused.push({ change, error: new KernelError(changeOp(change), errnoText(errno), { errno }) });
  });
  return refused;
}

/** The request for one change; a device that does not exist fails that change alone (ENODEV). */
function changeRequest(c: DatapathChange, indexOf: (dev: string) => number | null): Omit<Request, "seq"> {
  const dev = c.entry.dev;
  const index = dev ? indexOf(dev) : null;
  if (dev && index === null && !(c.kind === "route" && c.op === "del")) throw new KernelError(changeOp(c), `no link "${dev}"`, { errno: 19 });
  switch (c.kind) {
    case "route":
      return routeRequest(c.op, c.entry, index, TWILL_ROUTE_PROTO);
    case "neigh":
      return neighborRequest(c.op, c.entry, index!);
    case "fdb":
      return fdbRequest(c.op, c.entry, index!);
  }
}

/** What a change does, naming its entry, for its error. */
export function changeOp(c: DatapathChange): string {
  const verb = c.op === "del" ? "delete" : "set";
  switch (c.kind) {
    case "route":
      return `${verb} route ${c.entry.dst} via ${c.entry.via} dev ${c.entry.dev}`;
    case "neigh":
      return `${verb} neighbor ${c.entry.ip} lladdr ${c.entry.mac} dev ${c.entry.dev}`;
    case "fdb":
      return `${verb} FDB entry ${c.entry.mac} dst ${c.entry.dst} dev ${c.entry.dev}`;
  }
}

// ---- change notifications -----------------------------------------------------------------

const DATAPATH_GROUPS = RTMGRP.LINK | RTMGRP.NEIGH | RTMGRP.IPV4_IFADDR | RTMGRP.IPV4_ROUTE | RTMGRP.IPV6_IFADDR | RTMGRP.IPV6_ROUTE;

/**
 * One rtnetlink notification: could it change what twill programs for its peers? Any link,
 * address or route event counts (a link or address going away takes routes with it without a
 * route event); neighbors and FDB entries count on the VTEP only (ARP on the pod bridge, and
 * the bridge learning pods' MACs, are constant).
 */
export function touchesDatapath(m: Message, vtepIndex: number | null): boolean {
  if (m.type === RTM.NEWNEIGH || m.type === RTM.DELNEIGH) return vtepIndex !== null && readNdMsg(m.payload).index === vtepIndex;
  return m.type >= RTM.NEWLINK && m.type <= RTM.GETROUTE;
}

/** The name of the link a RTM_DELLINK notification removes, else null. */
export function deletedLinkName(m: Message): string | null {
  if (m.type !== RTM.DELLINK) return null;
  return attrsAfter(m.payload, IFINFO_LEN).str(IFLA.IFNAME) ?? null;
}

/**
 * Whether twill's entries may have changed since the last look, from the rtnetlink groups of
 * links, addresses, routes and neighbors (FDB entries are neighbors of family AF_BRIDGE). A
 * queue that overflowed, or a watch that could not start, counts as everything changed.
 */
class NetlinkDatapathWatch implements DatapathWatch {
  private sub: NetlinkSubscription | null = null;

  constructor(
    private readonly c: Libc,
    private readonly netns: string | null,
    private readonly rtnl: () => Rtnl,
  ) {}

  async sinceLast(vtepDev: string | null, devices: readonly (string | null | undefined)[] = []): Promise<KernelMoves> {
    if (!this.sub) {
      try {
        this.sub = NetlinkSubscription.open(this.c, this.netns, NETLINK.ROUTE, DATAPATH_GROUPS, "watch links, addresses, routes and neighbors");
      } catch {
        return { entries: true, devicesDeleted: true };
      }
      return { entries: true, devicesDeleted: false };
    }
    let vtepIndex: number | null = null;
    try {
      vtepIndex = vtepDev ? (this.rtnl().link(vtepDev)?.index ?? null) : null;
    } catch {
      return { entries: true, devicesDeleted: true };
    }
    let entries = false;
    const deleted = new Set<string>();
    let lost: boolean;
    try {
      lost = this.sub.drain((m) => {
        if (m.type === NLMSG.DONE || m.type === NLMSG.ERROR) return;
        if (touchesDatapath(m, vtepIndex)) entries = true;
        const gone = deletedLinkName(m);
        if (gone) deleted.add(gone);
      }, "read link, address, route and neighbor changes");
    } catch {
      this.close();
      return { entries: true, devicesDeleted: true };
    }
    return { entries: entries || lost, devicesDeleted: lost || [vtepDev, ...devices].some((d) => d && deleted.has(d)) };
  }

  close(): void {
    this.sub?.close();
    this.sub = null;
  }
}

const NFNL_SUBSYS_NFTABLES = 10;
/** NFNLGRP_NFTABLES as a bind() bit. */
const NFNLGRP_NFTABLES_BIT = 1 << (7 - 1);
const NFPROTO: Record<string, number> = { inet: 1, ip: 2, ip6: 10, arp: 3, bridge: 7, netdev: 5 };
/** NFT_MSG_NEWGEN: the end of a transaction, naming no table. */
const NFT_MSG_NEWGEN = 15;

/**
 * One nftables notification: a change inside `family table`? Every nftables object message
 * (table, chain, rule, set, element, object) carries its table's name as attribute 1.
 */
export function touchesTable(m: Message, family: string, table: string): boolean {
  if (m.type >> 8 !== NFNL_SUBSYS_NFTABLES || (m.type & 0xff) === NFT_MSG_NEWGEN) return false;
  if (m.payload[0] !== NFPROTO[family]) return false;
  return attrsAfter(m.payload, 4).str(1) === table;
}

/** Whether an nftables table may have changed since the last look, from nfnetlink's nftables group. */
class NetlinkTableWatch implements TableWatch {
  private sub: NetlinkSubscription | null = null;

  constructor(
    private readonly c: Libc,
    private readonly netns: string | null,
    private readonly family: string,
    private readonly table: string,
  ) {}

  async sinceLast(): Promise<boolean> {
    if (!this.sub) {
      try {
        this.sub = NetlinkSubscription.open(this.c, this.netns, NETLINK.NETFILTER, NFNLGRP_NFTABLES_BIT, `watch nftables table ${this.family} ${this.table}`);
      } catch {
        // Not following: every look reads the table.
      }
      return true;
    }
    let changed = false;
    try {
      const lost = this.sub.drain((m) => {
        if (touchesTable(m, this.family, this.table)) changed = true;
      }, `read changes of nftables table ${this.family} ${this.table}`);
      return changed || lost;
    } catch {
      this.close();
      return true;
    }
  }

  close(): void {
    this.sub?.close();
    this.sub = null;
  }
}

/** The kernel of the agent: netlink in the node's namespace; an error where this runtime cannot reach libc. */
export const nodeKernel = (netns: string | null = null): NodeKernel => netlinkNode(requireLibc("twilld"), netns);
