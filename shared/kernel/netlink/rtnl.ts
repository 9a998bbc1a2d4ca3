import { formatIp, parseCidr, parseIp, type Family } from "../../net/cidr.js";
import type { AddrInfo, Link, LinkAddrs, RouteEntry } from "../types.js";
import {
  AF, IFA, IFA_F, IFF, IFINFO_LEN, IFLA, IFLA_BR, IFLA_BRPORT, IFLA_INFO, IFLA_VXLAN, NDA, NDMSG_LEN, NLM_F, NTF_SELF, NUD_NOARP, NUD_PERMANENT,
  RT_SCOPE, RT_TABLE_MAIN, RTA, RTEXT_FILTER_SKIP_STATS, RTM, RTN_UNICAST, RTNH_F_ONLINK, RTPROT, VETH_INFO, attrsAfter, be16, bytes,
  formatMac, ifInfoWithAttrs, macBytes, nested, readIfAddr, readIfInfo, readNdMsg, readRtMsg, str, u32, u8, type Attr, type Attrs,
  type Message, type Request,
} from "./codec.js";
import { NetlinkError, type NetlinkSocket } from "./socket.js";

/**
 * The rtnetlink operations the per-pod plugin needs, on one socket (one namespace). Reads
 * return the shapes `ip -json` prints (Link, LinkAddrs, RouteEntry), so code that decides on
 * kernel state does not care which way it was read.
 */

const ACK = NLM_F.REQUEST | NLM_F.ACK;
const CREATE = ACK | NLM_F.CREATE | NLM_F.EXCL;
const SKIP_STATS = u32(IFLA.EXT_MASK, RTEXT_FILTER_SKIP_STATS);

export interface SetLink {
  dev: string;
  mtu?: number;
  mac?: string;
  promisc?: boolean;
  up?: boolean;
}

export interface NewVeth {
  name: string;
  mac: string;
  mtu?: number;
  master: string;
  peer: { name: string; mac?: string; netnsFd: number };
}

export class Rtnl {
  constructor(private readonly sock: NetlinkSocket) {}

  /** A link by name, with master's name resolved; null when there is none (ENODEV). */
  link(name: string): Link | null {
    let msgs: Message[];
    try {
      msgs = this.sock.request(
        { type: RTM.GETLINK, flags: NLM_F.REQUEST, body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, name), SKIP_STATS] },
        `read link "${name}"`,
      );
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === 19) return null;
      throw err;
    }
    const link = msgs[0] ? toLink(msgs[0]) : null;
    if (link && link.master !== undefined) link.master = this.nameOf(Number(link.master));
    const under = link?.linkinfo?.info_data?.link;
    if (link && typeof under === "number") link.linkinfo!.info_data!.link = this.nameOf(under);
    return link;
  }

  /** Every link of the namespace. */
  links(): Link[] {
    const links = this.sock
      .request({ type: RTM.GETLINK, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } }, attrs: [SKIP_STATS] }, "list links")
      .filter((m) => m.type === RTM.NEWLINK)
      .map(toLink);
    const names = new Map(links.map((l) => [l.ifindex, l.ifname]));
    for (const l of links) {
      if (l.master !== undefined) l.master = names.get(Number(l.master)) ?? l.master;
      const under = l.linkinfo?.info_data?.link;
      if (typeof under === "number") l.linkinfo!.info_data!.link = names.get(under) ?? String(under);
    }
    return links;
  }

  /** Every address of the namespace, grouped by link as `ip -json addr show` does. */
  addrs(links: readonly Link[] = this.links()): LinkAddrs[] {
    const byIndex = new Map<number, LinkAddrs>(links.map((l) => [l.ifindex, { ifindex: l.ifindex, ifname: l.ifname, addr_info: [] }]));
    const msgs = this.sock.request({ type: RTM.GETADDR, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { ifaddr: { family: AF.UNSPEC, prefixlen: 0, flags: 0, scope: 0, index: 0 } } }, "list addresses");
    for (const m of msgs) {
      if (m.type !== RTM.NEWADDR) continue;
      const { index, info } = toAddr(m);
      byIndex.get(index)?.addr_info.push(info);
    }
    return [...byIndex.values()];
  }

  /** The addresses of one link. */
  addrsOf(link: Link): AddrInfo[] {
    return this.addrs([link])[0]?.addr_info ?? [];
  }

  /** Every route of the namespace, all tables, both families. */
  routes(links: readonly Link[] = this.links()): RouteEntry[] {
    const names = new Map(links.map((l) => [l.ifindex, l.ifname]));
    const msgs = this.sock.request(
      { type: RTM.GETROUTE, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { rtmsg: { family: AF.UNSPEC, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 } } },
      "list routes",
    );
    return msgs.filter((m) => m.type === RTM.NEWROUTE).map((m) => toRoute(m, names));
  }

  /** MTU, MAC, promiscuity and up on an existing link (ENODEV when there is none). */
  setLink(s: SetLink, op: string): void {
    const flags = (s.up ? IFF.UP : 0) | (s.promisc ? IFF.PROMISC : 0);
    const attrs: Attr[] = [str(IFLA.IFNAME, s.dev)];
    if (s.mtu !== undefined) attrs.push(u32(IFLA.MTU, s.mtu));
    if (s.mac) attrs.push(bytes(IFLA.ADDRESS, macBytes(s.mac)));
    this.sock.request({ type: RTM.NEWLINK, flags: ACK, body: { ifinfo: { family: AF.UNSPEC, index: 0, flags, change: flags } }, attrs }, op);
  }

  /**
   * A veth pair, node end up on `master`, the peer created straight inside the namespace open
   * at `peer.netnsFd` (IFLA_NET_NS_FD), so it never appears in this one.
   */
  addVeth(v: NewVeth, op: string): void {
    const mtu = v.mtu !== undefined ? [u32(IFLA.MTU, v.mtu)] : [];
    const peer = ifInfoWithAttrs({ family: AF.UNSPEC, index: 0, flags: 0, change: 0 }, [
      str(IFLA.IFNAME, v.peer.name),
      ...mtu,
      ...(v.peer.mac ? [bytes(IFLA.ADDRESS, macBytes(v.peer.mac))] : []),
      u32(IFLA.NET_NS_FD, v.peer.netnsFd),
    ]);
    const master = this.indexOf(v.master, op);
    this.sock.request(
      {
        type: RTM.NEWLINK,
        flags: CREATE,
        body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: IFF.UP, change: IFF.UP } },
        attrs: [
          str(IFLA.IFNAME, v.name), ...mtu, bytes(IFLA.ADDRESS, macBytes(v.mac)), u32(IFLA.MASTER, master),
          nested(IFLA.LINKINFO, [str(IFLA_INFO.KIND, "veth"), nested(IFLA_INFO.DATA, [bytes(VETH_INFO.PEER, peer)])]),
        ],
      },
      op,
    );
  }

  /** A bridge, down, with a fixed MAC; EEXIST when the name is taken. */
  addBridge(b: { name: string; mac: string; mtu?: number }, op: string): void {
    this.sock.request(
      {
        type: RTM.NEWLINK,
        flags: CREATE,
        body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } },
        attrs: [
          str(IFLA.IFNAME, b.name), bytes(IFLA.ADDRESS, macBytes(b.mac)), ...(b.mtu !== undefined ? [u32(IFLA.MTU, b.mtu)] : []),
          nested(IFLA.LINKINFO, [str(IFLA_INFO.KIND, "bridge")]),
        ],
      },
      op,
    );
  }

  /** Hairpin on a bridge port: IFLA_BRPORT_MODE in the port's AF_BRIDGE protocol info. */
  hairpin(dev: string, op: string): void {
    const index = this.indexOf(dev, op);
    this.sock.request(
      { type: RTM.SETLINK, flags: ACK, body: { ifinfo: { family: AF.BRIDGE, index, flags: 0, change: 0 } }, attrs: [nested(IFLA.PROTINFO, [u8(IFLA_BRPORT.MODE, 1)])] },
      op,
    );
  }

  /**
   * An address (`10.1.0.5/24`) as `ip addr add` puts it: IFA_LOCAL and IFA_ADDRESS, IPv6
   * without DAD. `replace` succeeds when it is there already.
   */
  addAddress(dev: string, cidr: string, replace: boolean, op: string): void {
    this.sock.request(addressRequest(RTM.NEWADDR, ACK | NLM_F.CREATE | (replace ? NLM_F.REPLACE : NLM_F.EXCL), this.indexOf(dev, op), cidr), op);
  }

  /** A route in the main table as `ip route add` makes it: protocol boot, link scope without a gateway. */
  addRoute(r: { dst: string; via?: string; dev: string }, op: string): void {
    const dst = parseCidr(r.dst);
    const via = r.via ? parseIp(r.via) : null;
    if (via && via.family !== dst.family) throw new Error(`${op}: gateway ${r.via} is not of the family of ${r.dst}`);
    const attrs: Attr[] = [];
    if (dst.prefix > 0) attrs.push(bytes(RTA.DST, ipBytes(dst.family, dst.network)));
    if (via) attrs.push(bytes(RTA.GATEWAY, ipBytes(via.family, via.value)));
    attrs.push(u32(RTA.OIF, this.indexOf(r.dev, op)));
    this.sock.request(
      {
        type: RTM.NEWROUTE,
        flags: CREATE,
        body: {
          rtmsg: {
            family: dst.family === 4 ? AF.INET : AF.INET6, dstLen: dst.prefix, srcLen: 0, tos: 0, table: RT_TABLE_MAIN,
            protocol: RTPROT.BOOT, scope: via || dst.family === 6 ? RT_SCOPE.UNIVERSE : RT_SCOPE.LINK, type: RTN_UNICAST, flags: 0,
          },
        },
        attrs,
      },
      op,
    );
  }

  /** The routes of one family in the main table with protocol `protocol`. */
  routesOf(family: Family, protocol: number | null, links: readonly Link[] = this.links()): RouteEntry[] {
    const names = new Map(links.map((l) => [l.ifindex, l.ifname]));
    const msgs = this.sock.request(
      { type: RTM.GETROUTE, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { rtmsg: { family: family === 4 ? AF.INET : AF.INET6, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 } } },
      `list IPv${family} routes`,
    );
    const out: RouteEntry[] = [];
    for (const m of msgs) {
      if (m.type !== RTM.NEWROUTE) continue;
      const r = readRtMsg(m.payload);
      if (protocol !== null && r.protocol !== protocol) continue;
      const route = toRoute(m, names);
      if (route.table === undefined) out.push(route);
    }
    return out;
  }

  /** Neighbors of both IP families on link `index` in state `state` (a NUD_* bit). */
  neighbors(index: number, state: number, op: string): { ip: string; mac: string }[] {
    const msgs = this.sock.request({ type: RTM.GETNEIGH, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { ndmsg: { family: AF.UNSPEC, index: 0, state: 0, flags: 0 } } }, op);
    const out: { ip: string; mac: string }[] = [];
    for (const m of msgs) {
      if (m.type !== RTM.NEWNEIGH) continue;
      const n = readNdMsg(m.payload);
      if (n.index !== index || !(n.state & state) || (n.family !== AF.INET && n.family !== AF.INET6)) continue;
      const a = attrsAfter(m.payload, NDMSG_LEN);
      const dst = a.raw(NDA.DST);
      const mac = a.raw(NDA.LLADDR);
      if (dst && mac) out.push({ ip: formatIpBytes(dst), mac: formatMac(mac) });
    }
    return out;
  }

  /** The forwarding entries of link `index` that send to a remote address (a VXLAN device's peers). */
  remoteFdb(index: number, op: string): { mac: string; dst: string }[] {
    const msgs = this.sock.request({ type: RTM.GETNEIGH, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { ndmsg: { family: AF.BRIDGE, index: 0, state: 0, flags: 0 } } }, op);
    const out: { mac: string; dst: string }[] = [];
    for (const m of msgs) {
      if (m.type !== RTM.NEWNEIGH) continue;
      const n = readNdMsg(m.payload);
      if (n.index !== index) continue;
      const a = attrsAfter(m.payload, NDMSG_LEN);
      const dst = a.raw(NDA.DST);
      const mac = a.raw(NDA.LLADDR);
      if (dst && mac) out.push({ mac: formatMac(mac), dst: formatIpBytes(dst) });
    }
    return out;
  }

  /** Runs change requests, each on its own (see NetlinkSocket.requestMany): each one's errno. */
  changeMany(reqs: readonly Omit<Request, "seq">[], op: string): number[] {
    return this.sock.requestMany(reqs, op);
  }

  /** A VXLAN device, down: VNI, UDP port, source address and underlay device fixed; no learning. */
  addVxlan(v: { name: string; mac: string; mtu: number; vni: number; port: number; local: string; dev: string }, op: string): void {
    const local = parseIp(v.local);
    this.sock.request(
      {
        type: RTM.NEWLINK,
        flags: CREATE,
        body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } },
        attrs: [
          str(IFLA.IFNAME, v.name), bytes(IFLA.ADDRESS, macBytes(v.mac)), u32(IFLA.MTU, v.mtu),
          nested(IFLA.LINKINFO, [
            str(IFLA_INFO.KIND, "vxlan"),
            nested(IFLA_INFO.DATA, [
              u32(IFLA_VXLAN.ID, v.vni), be16(IFLA_VXLAN.PORT, v.port), u32(IFLA_VXLAN.LINK, this.indexOf(v.dev, op)),
              bytes(local.family === 4 ? IFLA_VXLAN.LOCAL : IFLA_VXLAN.LOCAL6, ipBytes(local.family, local.value)), u8(IFLA_VXLAN.LEARNING, 0),
            ]),
          ]),
        ],
      },
      op,
    );
  }

  /** Bridged traffic of bridge `name` through the IPv4 and IPv6 netfilter hooks (ENODEV when there is none). */
  bridgeNetfilter(name: string, op: string): void {
    this.sock.request(
      {
        type: RTM.NEWLINK,
        flags: ACK,
        body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } },
        attrs: [
          str(IFLA.IFNAME, name),
          nested(IFLA.LINKINFO, [str(IFLA_INFO.KIND, "bridge"), nested(IFLA_INFO.DATA, [u8(IFLA_BR.NF_CALL_IPTABLES, 1), u8(IFLA_BR.NF_CALL_IP6TABLES, 1)])]),
        ],
      },
      op,
    );
  }

  /** Deletes an address (`10.1.0.5/24`) from `dev`. */
  deleteAddress(dev: string, cidr: string, op: string): void {
    this.sock.request(addressRequest(RTM.DELADDR, ACK, this.indexOf(dev, op), cidr), op);
  }

  /** The index of link `name`; ENODEV naming it when there is none. */
  indexOf(name: string, op: string): number {
    const link = this.link(name);
    if (!link) throw new NetlinkError(op, 19, `no link "${name}"`);
    return link.ifindex;
  }

  /** Deletes a link by name; false when there is none. */
  deleteLink(name: string, op: string): boolean {
    try {
      this.sock.request({ type: RTM.DELLINK, flags: ACK, body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, name)] }, op);
      return true;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === 19) return false;
      throw err;
    }
  }

  private nameOf(index: number): string {
    const msgs = this.sock.request(
      { type: RTM.GETLINK, flags: NLM_F.REQUEST, body: { ifinfo: { family: AF.UNSPEC, index, flags: 0, change: 0 } }, attrs: [SKIP_STATS] },
      `read link ${index}`,
    );
    return (msgs[0] && toLink(msgs[0]).ifname) ?? String(index);
  }
}

/** An address request (new or delete) for `cidr` on link `index`: IFA_LOCAL and IFA_ADDRESS, IPv6 without DAD. */
function addressRequest(type: number, flags: number, index: number, cidr: string): Omit<Request, "seq"> {
  const c = parseCidr(cidr);
  const ip = ipBytes(c.family, c.ip);
  const ifaFlags = c.family === 6 ? IFA_F.NODAD : 0;
  return {
    type,
    flags,
    body: { ifaddr: { family: c.family === 4 ? AF.INET : AF.INET6, prefixlen: c.prefix, flags: ifaFlags, scope: RT_SCOPE.UNIVERSE, index } },
    attrs: [bytes(IFA.LOCAL, ip), bytes(IFA.ADDRESS, ip), ...(ifaFlags ? [u32(IFA.FLAGS, ifaFlags)] : [])],
  };
}

/**
 * A route of twill's (`protocol`) through `via` on link `index`: `replace` makes or changes it
 * in place, `del` removes it (matching on what is given).
 */
export function routeRequest(op: "replace" | "del", r: { dst: string; via: string; onlink: boolean }, index: number | null, protocol: number): Omit<Request, "seq"> {
  const dst = parseCidr(r.dst);
  const via = r.via ? parseIp(r.via) : null;
  if (via && via.family !== dst.family) throw new Error(`gateway ${r.via} is not of the family of ${r.dst}`);
  const attrs: Attr[] = [];
  if (dst.prefix > 0) attrs.push(bytes(RTA.DST, ipBytes(dst.family, dst.network)));
  if (via) attrs.push(bytes(RTA.GATEWAY, ipBytes(via.family, via.value)));
  if (index !== null) attrs.push(u32(RTA.OIF, index));
  const family = dst.family === 4 ? AF.INET : AF.INET6;
  return op === "replace"
    ? {
        type: RTM.NEWROUTE,
        flags: ACK | NLM_F.CREATE | NLM_F.REPLACE,
        body: { rtmsg: { family, dstLen: dst.prefix, srcLen: 0, tos: 0, table: RT_TABLE_MAIN, protocol, scope: RT_SCOPE.UNIVERSE, type: RTN_UNICAST, flags: r.onlink ? RTNH_F_ONLINK : 0 } },
        attrs,
      }
    : {
        type: RTM.DELROUTE,
        flags: ACK,
        body: { rtmsg: { family, dstLen: dst.prefix, srcLen: 0, tos: 0, table: RT_TABLE_MAIN, protocol, scope: RT_SCOPE.NOWHERE, type: 0, flags: 0 } },
        attrs,
      };
}

/** A permanent neighbor (`replace`) or its removal (`del`) on link `index`. */
export function neighborRequest(op: "replace" | "del", n: { ip: string; mac: string }, index: number): Omit<Request, "seq"> {
  const ip = parseIp(n.ip);
  const family = ip.family === 4 ? AF.INET : AF.INET6;
  return op === "replace"
    ? {
        type: RTM.NEWNEIGH,
        flags: ACK | NLM_F.CREATE | NLM_F.REPLACE,
        body: { ndmsg: { family, index, state: NUD_PERMANENT, flags: 0 } },
        attrs: [bytes(NDA.DST, ipBytes(ip.family, ip.value)), bytes(NDA.LLADDR, macBytes(n.mac))],
      }
    : { type: RTM.DELNEIGH, flags: ACK, body: { ndmsg: { family, index, state: 0, flags: 0 } }, attrs: [bytes(NDA.DST, ipBytes(ip.family, ip.value))] };
}

/**
 * A VXLAN device's forwarding entry, MAC -> remote underlay address, on the device itself
 * (NTF_SELF), permanent: `replace` moves an entry with the same MAC to the new address in place.
 */
export function fdbRequest(op: "replace" | "del", f: { mac: string; dst: string }, index: number): Omit<Request, "seq"> {
  const dst = parseIp(f.dst);
  return {
    type: op === "replace" ? RTM.NEWNEIGH : RTM.DELNEIGH,
    flags: op === "replace" ? ACK | NLM_F.CREATE | NLM_F.REPLACE : ACK,
    body: { ndmsg: { family: AF.BRIDGE, index, state: op === "replace" ? NUD_NOARP | NUD_PERMANENT : 0, flags: NTF_SELF } },
    attrs: [bytes(NDA.LLADDR, macBytes(f.mac)), bytes(NDA.DST, ipBytes(dst.family, dst.value))],
  };
}

// ---- replies in `ip -json`'s shapes ---------------------------------------------------------

const FLAG_NAMES: [number, string][] = [
  [IFF.LOOPBACK, "LOOPBACK"], [IFF.BROADCAST, "BROADCAST"], [IFF.POINTOPOINT, "POINTOPOINT"], [IFF.MULTICAST, "MULTICAST"],
  [IFF.NOARP, "NOARP"], [IFF.PROMISC, "PROMISC"], [IFF.UP, "UP"], [IFF.LOWER_UP, "LOWER_UP"],
];
const OPERSTATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"];

/** An RTM_NEWLINK reply as `ip -json -details link show` prints it (master still an index). */
export function toLink(m: Message): Link {
  const info = readIfInfo(m.payload);
  const a = attrsAfter(m.payload, IFINFO_LEN);
  const linkinfo = a.nested(IFLA.LINKINFO);
  const mac = a.raw(IFLA.ADDRESS);
  const link: Link = {
    ifindex: info.index,
    ifname: a.str(IFLA.IFNAME) ?? "",
    flags: FLAG_NAMES.filter(([bit]) => info.flags & bit).map(([, name]) => name),
    mtu: a.u32(IFLA.MTU) ?? 0,
  };
  const oper = a.u8(IFLA.OPERSTATE);
  if (oper !== undefined) link.operstate = OPERSTATES[oper] ?? "UNKNOWN";
  if (mac) link.address = formatMac(mac);
  const master = a.u32(IFLA.MASTER);
  if (master !== undefined) link.master = String(master);
  const peer = a.u32(IFLA.LINK);
  if (peer !== undefined) link.link_index = peer;
  if (linkinfo) link.linkinfo = kindOf(linkinfo);
  return link;
}

function kindOf(linkinfo: Attrs): NonNullable<Link["linkinfo"]> {
  const out: NonNullable<Link["linkinfo"]> = {};
  const kind = linkinfo.str(IFLA_INFO.KIND);
  const slave = linkinfo.str(IFLA_INFO.SLAVE_KIND);
  if (kind !== undefined) out.info_kind = kind;
  if (slave !== undefined) out.info_slave_kind = slave;
  const data = linkinfo.nested(IFLA_INFO.DATA);
  if (kind === "vxlan" && data) out.info_data = vxlanData(data);
  return out;
}

/** A VXLAN device's settings: VNI, UDP port, source address, underlay (an index until resolved), learning. */
function vxlanData(d: Attrs): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const id = d.u32(IFLA_VXLAN.ID);
  if (id !== undefined) out.id = id;
  const port = d.u16be(IFLA_VXLAN.PORT);
  if (port !== undefined) out.port = port;
  const local = d.raw(IFLA_VXLAN.LOCAL);
  if (local) out.local = formatIpBytes(local);
  const local6 = d.raw(IFLA_VXLAN.LOCAL6);
  if (local6) out.local6 = formatIpBytes(local6);
  const link = d.u32(IFLA_VXLAN.LINK);
  if (link !== undefined) out.link = link;
  const learning = d.u8(IFLA_VXLAN.LEARNING);
  if (learning !== undefined) out.learning = learning !== 0;
  return out;
}

const SCOPES: Record<number, string> = { 0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere" };
const PROTOCOLS: Record<number, string> = { 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip" };
const TABLES: Record<number, string> = { 253: "default", 255: "local" };
const ROUTE_TYPES: Record<number, string> = { 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw" };

function toAddr(m: Message): { index: number; info: AddrInfo } {
  const h = readIfAddr(m.payload);
  const a = attrsAfter(m.payload, 8);
  const family: Family = h.family === AF.INET6 ? 6 : 4;
  const raw = a.raw(IFA.LOCAL) ?? a.raw(IFA.ADDRESS);
  return {
    index: h.index,
    info: { family: family === 4 ? "inet" : "inet6", local: raw ? formatIpBytes(raw) : "", prefixlen: h.prefixlen, scope: SCOPES[h.scope] ?? String(h.scope) },
  };
}

export function toRoute(m: Message, names: Map<number, string>): RouteEntry {
  const r = readRtMsg(m.payload);
  const a = attrsAfter(m.payload, 12);
  const dst = a.raw(RTA.DST);
  const full = r.family === AF.INET6 ? 128 : 32;
  const route: RouteEntry = { dst: r.dstLen === 0 || !dst ? "default" : r.dstLen === full ? formatIpBytes(dst) : `${formatIpBytes(dst)}/${r.dstLen}` };
  const gw = a.raw(RTA.GATEWAY);
  if (gw) route.gateway = formatIpBytes(gw);
  const oif = a.u32(RTA.OIF);
  if (oif !== undefined) route.dev = names.get(oif) ?? String(oif);
  route.protocol = PROTOCOLS[r.protocol] ?? String(r.protocol);
  route.scope = SCOPES[r.scope] ?? String(r.scope);
  const src = a.raw(RTA.PREFSRC);
  if (src) route.prefsrc = formatIpBytes(src);
  const metric = a.u32(RTA.PRIORITY);
  if (metric !== undefined) route.metric = metric;
  // A route's single next hop reports its flags in rtm_flags.
  if (r.flags & RTNH_F_ONLINK) route.flags = ["onlink"];
  const table = a.u32(RTA.TABLE) ?? r.table;
  if (table !== RT_TABLE_MAIN) route.table = TABLES[table] ?? String(table);
  if (r.type !== RTN_UNICAST) (route as RouteEntry & { type?: string }).type = ROUTE_TYPES[r.type] ?? String(r.type);
  return route;
}

/** An address's bytes in network order. */
export function ipBytes(family: Family, value: bigint): Uint8Array {
  const n = family === 4 ? 4 : 16;
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

export function formatIpBytes(b: Uint8Array): string {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return formatIp(b.length === 4 ? 4 : 6, v);
}
