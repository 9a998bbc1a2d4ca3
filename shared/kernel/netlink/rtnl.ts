import { formatIp, formatIp6Groups, parseCidr, parseIp, type Family } from "../../net/cidr.js";
import { normalizeDst } from "../routes.js";
import type { Address, Link, LinkAddresses, Route, Scope, VxlanSettings } from "../types.js";
import {
  AF, IFA, IFA_F, IFF, IFINFO_LEN, IFLA, IFLA_BR, IFLA_BRPORT, IFLA_INFO, IFLA_VXLAN, NDA, NDMSG_LEN, NLM_F, NTF_SELF, NUD_NOARP, NUD_PERMANENT,
  RT_SCOPE, RT_TABLE_MAIN, RTA, RTEXT_FILTER_SKIP_STATS, RTM, RTN_UNICAST, RTNH_F_ONLINK, RTPROT, VETH_INFO, attrsAfter, be16, bytes,
  formatMac, ifInfoWithAttrs, macBytes, nested, readIfAddr, readIfInfo, readNdMsg, readRtMsg, str, u32, u8, type Attr, type Attrs,
  type Message, type Request, type RtMsg,
} from "./codec.js";
import { NetlinkError, type NetlinkSocket } from "./socket.js";

/**
 * The rtnetlink operations the plugin and the agent need, on one socket (one namespace). Reads
 * are decoded into twill's kernel types (Link, LinkAddresses, Route): devices named, flags and
 * numbers kept as what they mean.
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
    const msg = this.linkMessage(name);
    return msg ? toLink(msg, (index) => this.nameOf(index)) : null;
  }

  /** Every link of the namespace. */
  links(): Link[] {
    const msgs = this.sock
      .request({ type: RTM.GETLINK, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } }, attrs: [SKIP_STATS] }, "list links")
      .filter((m) => m.type === RTM.NEWLINK);
    const names = new Map(msgs.map(linkIdentity));
    return msgs.map((m) => toLink(m, (index) => names.get(index) ?? String(index)));
  }

  /** Every address of the namespace, grouped by link (every link of `links`, with addresses or not). */
  addrs(links: readonly Link[] = this.links()): LinkAddresses[] {
    const byIndex = new Map<number, LinkAddresses>(links.map((l) => [l.index, { index: l.index, name: l.name, addresses: [] }]));
    const dump = (index: number): Omit<Request, "seq"> => ({
      type: RTM.GETADDR, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { ifaddr: { family: AF.UNSPEC, prefixlen: 0, flags: 0, scope: 0, index } },
    });
    // One link's addresses: the kernel picks them (an ADD reads the bridge's).
    const one = links.length === 1 ? this.sock.strictDump(dump(links[0]!.index), "list addresses") : null;
    const msgs = one ?? this.sock.request(dump(0), "list addresses");
    for (const m of msgs) {
      if (m.type !== RTM.NEWADDR) continue;
      const { index, address } = toAddr(m);
      byIndex.get(index)?.addresses.push(address);
    }
    return [...byIndex.values()];
  }

  /** The addresses of one link. */
  addrsOf(link: Link): Address[] {
    return this.addrs([link])[0]?.addresses ?? [];
  }

  /** Every route of the namespace, all tables, both families. */
  routes(links: readonly Link[] = this.links()): Route[] {
    return this.dumpRoutes(AF.UNSPEC, "list routes", links, () => true);
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

  /**
   * Hairpin on a bridge port, as `ip link set DEV type bridge_slave hairpin on` sets it: the
   * port's IFLA_BRPORT_MODE in the bridge's port settings (IFLA_INFO_SLAVE_DATA), the port named,
   * so no request for its index comes first.
   */
  hairpin(dev: string, op: string): void {
    this.sock.request(
      {
        type: RTM.NEWLINK,
        flags: ACK,
        body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } },
        attrs: [str(IFLA.IFNAME, dev), nested(IFLA.LINKINFO, [str(IFLA_INFO.SLAVE_KIND, "bridge"), nested(IFLA_INFO.SLAVE_DATA, [u8(IFLA_BRPORT.MODE, 1)])])],
      },
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
  routesOf(family: Family, protocol: number | null, links: readonly Link[] = this.links()): Route[] {
    const keep = (r: RtMsg) => protocol === null || r.protocol === protocol;
    return this.dumpRoutes(family === 4 ? AF.INET : AF.INET6, `list IPv${family} routes`, links, keep).filter((r) => r.table === "main");
  }

  /** A route dump of address family `af` (AF_UNSPEC: both), decoding only the routes `keep` takes by their header. */
  private dumpRoutes(af: number, op: string, links: readonly Link[], keep: (r: RtMsg) => boolean): Route[] {
    const names = new Map(links.map((l) => [l.index, l.name]));
    const msgs = this.sock.request(
      { type: RTM.GETROUTE, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { rtmsg: { family: af, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 } } },
      op,
    );
    return msgs.filter((m) => m.type === RTM.NEWROUTE && keep(readRtMsg(m.payload))).map((m) => toRoute(m, names));
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

  /**
   * A kernel WireGuard device, down, with no key and no peers (generic netlink configures
   * those); EOPNOTSUPP when the kernel has no such device type, EEXIST when the name is taken.
   */
  addWireguard(w: { name: string; mtu: number }, op: string): void {
    this.sock.request(
      {
        type: RTM.NEWLINK,
        flags: CREATE,
        body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } },
        attrs: [str(IFLA.IFNAME, w.name), u32(IFLA.MTU, w.mtu), nested(IFLA.LINKINFO, [str(IFLA_INFO.KIND, "wireguard")])],
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

  /**
   * The index of link `name`; ENODEV naming it when there is none. Read from the reply's header
   * alone: none of its attributes is decoded, nor its master named (one more request).
   */
  indexOf(name: string, op: string): number {
    const msg = this.linkMessage(name);
    if (!msg) throw new NetlinkError(op, 19, `no link "${name}"`);
    return readIfInfo(msg.payload).index;
  }

  /** The kernel's RTM_NEWLINK of link `name`, undecoded; null when there is none (ENODEV). */
  private linkMessage(name: string): Message | null {
    try {
      const msgs = this.sock.request(
        { type: RTM.GETLINK, flags: NLM_F.REQUEST, body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, name), SKIP_STATS] },
        `read link "${name}"`,
      );
      return msgs[0] ?? null;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === 19) return null;
      throw err;
    }
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
    return msgs[0] ? linkIdentity(msgs[0])[1] : String(index);
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

// ---- replies as twill's kernel types ---------------------------------------------------------

/** IF_OPER_* by value (RFC 2863 states). */
const OPERSTATES = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"];

/** An RTM_NEWLINK reply's index and name. */
function linkIdentity(m: Message): [number, string] {
  return [readIfInfo(m.payload).index, attrsAfter(m.payload, IFINFO_LEN).str(IFLA.IFNAME) ?? ""];
}

/** An RTM_NEWLINK reply as a Link; `nameOf` names the devices it points at by index (master, underlay). */
export function toLink(m: Message, nameOf: (index: number) => string): Link {
  const info = readIfInfo(m.payload);
  const a = attrsAfter(m.payload, IFINFO_LEN);
  const link: Link = {
    index: info.index,
    name: a.str(IFLA.IFNAME) ?? "",
    up: (info.flags & IFF.UP) !== 0,
    lowerUp: (info.flags & IFF.LOWER_UP) !== 0,
    mtu: a.u32(IFLA.MTU) ?? 0,
  };
  const oper = a.u8(IFLA.OPERSTATE);
  if (oper !== undefined) link.operState = OPERSTATES[oper] ?? "unknown";
  const mac = a.raw(IFLA.ADDRESS);
  if (mac) link.mac = formatMac(mac);
  const master = a.u32(IFLA.MASTER);
  if (master !== undefined) link.master = nameOf(master);
  const peer = a.u32(IFLA.LINK);
  if (peer !== undefined) link.peerIndex = peer;
  const linkinfo = a.nested(IFLA.LINKINFO);
  const kind = linkinfo?.str(IFLA_INFO.KIND);
  if (kind !== undefined) link.kind = kind;
  const portKind = linkinfo?.str(IFLA_INFO.SLAVE_KIND);
  if (portKind !== undefined) link.portKind = portKind;
  const data = linkinfo?.nested(IFLA_INFO.DATA);
  if (kind === "vxlan" && data) link.vxlan = vxlanData(data, nameOf);
  return link;
}

/**
 * A VXLAN device's settings. The kernel always reports VNI, port and learning; an attribute
 * missing all the same reads as what no spec asks for (VNI and port 0, learning on).
 */
function vxlanData(d: Attrs, nameOf: (index: number) => string): VxlanSettings {
  const out: VxlanSettings = {
    vni: d.u32(IFLA_VXLAN.ID) ?? 0,
    port: d.u16be(IFLA_VXLAN.PORT) ?? 0,
    learning: (d.u8(IFLA_VXLAN.LEARNING) ?? 1) !== 0,
  };
  const local = d.raw(IFLA_VXLAN.LOCAL) ?? d.raw(IFLA_VXLAN.LOCAL6);
  if (local) out.local = formatIpBytes(local);
  const underlay = d.u32(IFLA_VXLAN.LINK);
  if (underlay !== undefined) out.underlay = nameOf(underlay);
  return out;
}

const SCOPES: Record<number, Scope> = { 0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere" };
const scopeOf = (value: number): Scope => SCOPES[value] ?? value;

/** An RTM_NEWADDR reply: the index of its link and the address. */
export function toAddr(m: Message): { index: number; address: Address } {
  const h = readIfAddr(m.payload);
  const a = attrsAfter(m.payload, 8);
  const raw = a.raw(IFA.LOCAL) ?? a.raw(IFA.ADDRESS);
  return {
    index: h.index,
    address: { family: h.family === AF.INET6 ? 6 : 4, ip: raw ? formatIpBytes(raw) : "", prefixLength: h.prefixlen, scope: scopeOf(h.scope) },
  };
}

/** An RTM_NEWROUTE reply as a Route; `names` names output devices by index. */
export function toRoute(m: Message, names: ReadonlyMap<number, string>): Route {
  const r = readRtMsg(m.payload);
  const a = attrsAfter(m.payload, 12);
  const dst = a.raw(RTA.DST);
  const family: Family = dst ? (dst.length === 16 ? 6 : 4) : r.family === AF.INET6 ? 6 : 4;
  const route: Route = {
    family,
    dst: dst && r.dstLen > 0 ? normalizeDst(`${formatIpBytes(dst)}/${r.dstLen}`) : family === 4 ? "0.0.0.0/0" : "::/0",
    protocol: r.protocol,
    scope: scopeOf(r.scope),
    // A route's single next hop reports its flags in rtm_flags.
    onlink: (r.flags & RTNH_F_ONLINK) !== 0,
    table: "main",
  };
  const gw = a.raw(RTA.GATEWAY);
  if (gw) route.gateway = formatIpBytes(gw);
  const oif = a.u32(RTA.OIF);
  if (oif !== undefined) route.dev = names.get(oif) ?? String(oif);
  const src = a.raw(RTA.PREFSRC);
  if (src) route.prefsrc = formatIpBytes(src);
  const metric = a.u32(RTA.PRIORITY);
  if (metric !== undefined) route.metric = metric;
  const table = a.u32(RTA.TABLE) ?? r.table;
  if (table !== RT_TABLE_MAIN) route.table = table;
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
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) {
    let v = 0n;
    for (const x of b) v = (v << 8n) | BigInt(x);
    return formatIp(6, v);
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  return formatIp6Groups(groups);
}
