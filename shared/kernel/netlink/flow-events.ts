import { readFileSync } from "node:fs";
import { NLM_F, attrsAfter, be16, be32, bytes, u8, type Attrs, type Message, type Request } from "./codec.js";
import { Errno, requireLibc, type Libc } from "./libc.js";
import { formatIpBytes } from "./rtnl.js";
import { NETLINK, NetlinkError, NetlinkSubscription } from "./socket.js";

/**
 * A node's flow events, read over nfnetlink without blocking: conntrack's new and ended
 * connections (ctnetlink's multicast groups) and the packets nftables rules hand to an nflog
 * group (`log group G prefix "..."`, twill's drop rules). Both speak nfnetlink: a nfgenmsg
 * (family, version, res_id), then attributes whose numbers are in network order, whether or
 * not the kernel marks them NLA_F_NET_BYTEORDER (the codec masks the flag off the type).
 * Numbers: include/uapi/linux/netfilter/{nfnetlink,nfnetlink_conntrack,nfnetlink_log}.h.
 */

/** nfnetlink.h: NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_ULOG; a message's type is subsystem << 8 | message. */
const NFNL_SUBSYS = { CTNETLINK: 1, ULOG: 4 } as const;
/**
 * nfnetlink.h enum nfnetlink_groups: NFNLGRP_CONNTRACK_NEW = 1, _UPDATE = 2, _DESTROY = 3, as
 * bind() bits (1 << (group - 1)). Updates because a TCP connection's end is its close (the
 * state TIME_WAIT or CLOSE), not its DESTROY: conntrack keeps a closed entry for the TIME_WAIT
 * timeout and its garbage collector may notice it a minute after that.
 */
const CONNTRACK_GROUPS = (1 << (1 - 1)) | (1 << (2 - 1)) | (1 << (3 - 1));
/** nfnetlink_conntrack.h enum cntl_msg_types. */
const IPCTNL_MSG_CT = { NEW: 0, DELETE: 2 } as const;
/** enum ctattr_type. */
const CTA = { TUPLE_ORIG: 1, TUPLE_REPLY: 2, STATUS: 3, PROTOINFO: 4, MARK: 8, COUNTERS_ORIG: 9, COUNTERS_REPLY: 10, ID: 12, ZONE: 18 } as const;
/** enum ctattr_protoinfo, enum ctattr_protoinfo_tcp. */
const CTA_PROTOINFO_TCP = 1;
const CTA_PROTOINFO_TCP_STATE = 1;
/** enum tcp_conntrack (nf_conntrack_tcp.h): a connection closed, one way or the other. */
const TCP_CONNTRACK_CLOSED = new Set([7 /* TIME_WAIT */, 8 /* CLOSE */]);
/** enum ctattr_tuple. */
const CTA_TUPLE = { IP: 1, PROTO: 2 } as const;
/** enum ctattr_ip. */
const CTA_IP = { V4_SRC: 1, V4_DST: 2, V6_SRC: 3, V6_DST: 4 } as const;
/** enum ctattr_l4proto. */
const CTA_PROTO = { NUM: 1, SRC_PORT: 2, DST_PORT: 3, ICMP_ID: 4, ICMP_TYPE: 5, ICMP_CODE: 6, ICMPV6_ID: 7, ICMPV6_TYPE: 8, ICMPV6_CODE: 9 } as const;
/** enum ctattr_counters: both 64-bit. */
const CTA_COUNTERS = { PACKETS: 1, BYTES: 2 } as const;

/** nfnetlink_log.h enum nfulnl_msg_types. */
const NFULNL_MSG = { PACKET: 0, CONFIG: 1 } as const;
const NFLOG_PACKET = (NFNL_SUBSYS.ULOG << 8) | NFULNL_MSG.PACKET;
/** enum nfulnl_attr_type. */
const NFULA = { PACKET_HDR: 1, TIMESTAMP: 3, IFINDEX_INDEV: 4, IFINDEX_OUTDEV: 5, PAYLOAD: 9, PREFIX: 10, SEQ: 12 } as const;
/** enum nfulnl_attr_config. */
const NFULA_CFG = { CMD: 1, MODE: 2, NLBUFSIZ: 3, TIMEOUT: 4, QTHRESH: 5, FLAGS: 6 } as const;
/** enum nfulnl_msg_config_cmds; PF_UNBIND is never sent: it unbinds the family for every listener. */
const NFULNL_CFG_CMD_BIND = 1;
const NFULNL_COPY_PACKET = 0x02;
/** NFULNL_CFG_F_SEQ: each packet carries NFULA_SEQ, the group's own count, so a gap tells how many were lost. */
const NFULNL_CFG_F_SEQ = 0x0001;

/** How much of a dropped packet the kernel copies: enough for an IPv6 header, a few extension headers and the ports. */
const COPY_RANGE = 160;
/** The kernel's batch of logged packets, kept below the subscription's receive buffer so no batch is truncated. */
const NFLOG_BATCH_BYTES = 16 * 1024;
/** Each packet is sent at once (a batch of one), or after 1/100 s at the latest. */
const NFLOG_QTHRESH = 1;
const NFLOG_TIMEOUT_CS = 1;
/** The queue of each socket: conntrack sends one event per connection, and a busy node makes thousands a second. */
const RECEIVE_BUFFER = 4 * 1024 * 1024;

const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;
/** CAP_NET_ADMIN's bit in /proc/…/status CapEff. */
const CAP_NET_ADMIN = 12;

export type FlowProtocol = "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6" | `proto-${number}`;

/** An ICMP flow's or packet's type and code (and echo id, where there is one). */
export interface IcmpFields {
  type: number;
  code: number;
  id?: number;
}

/** Who talked to whom: a packet's, or a connection's original direction (as the client sent it). */
export interface FlowAddresses {
  family: 4 | 6;
  protocol: FlowProtocol;
  src: string;
  dst: string;
  sport: number | null;
  dport: number | null;
}

export interface ConntrackEvent extends FlowAddresses {
  /**
   * "new": conntrack confirmed the connection's first packet. "end": it was destroyed, or (TCP)
   * it closed; a TCP connection may so end twice, by its close and by its DESTROY, with one id.
   */
  kind: "new" | "end";
  /** An end by the TCP close (an update), not by the DESTROY that may follow it. */
  closed?: true;
  id: number | null;
  /** Reply direction: differs from the original when NAT happened (a Service's DNAT shows here as replySrc = the backend pod). */
  replySrc: string;
  replyDst: string;
  replySport: number | null;
  replyDport: number | null;
  /** When accounting is on: [original, reply]. */
  packets: [number, number] | null;
  bytes: [number, number] | null;
  /** CTA_STATUS: IPS_* bits (include/uapi/linux/netfilter/nf_conntrack_common.h), when sent. */
  status?: number;
  /** CTA_ZONE, when the connection is in a zone other than the default. */
  zone?: number;
  /** CTA_MARK (ct mark), when sent. */
  mark?: number;
  /** ICMP and ICMPv6 flows: the original direction's type, code and id (their ports are null). */
  icmp?: IcmpFields;
}

export interface DroppedPacket extends FlowAddresses {
  /** The nft rule's `log group G prefix "..."`. */
  prefix: string;
  inIfindex: number | null;
  outIfindex: number | null;
  /** NF_INET_* hook the rule ran in (0 prerouting … 4 postrouting), when sent. */
  hook?: number;
  /** When the packet arrived, ms since the epoch; only when the kernel had stamped it. */
  timestampMs?: number;
  /** ICMP and ICMPv6 packets: type and code (their ports are null). */
  icmp?: IcmpFields;
}

/** A node's flow events, read without blocking. */
export interface FlowEvents {
  /** Hands over everything queued; returns how many notifications were lost to overflow since the last drain (ENOBUFS counts as >= 1). */
  drain(on: { conntrack(e: ConntrackEvent): void; dropped(p: DroppedPacket): void }): { lost: number };
  close(): void;
}

/** The nflog group is bound by another socket of the namespace: the kernel lets one listener have a group. */
export class NflogGroupTaken extends NetlinkError {
  constructor(
    op: string,
    errno: number,
    readonly group: number,
  ) {
    super(op, errno, `nflog group ${group} is taken by another process`);
    this.name = "NflogGroupTaken";
  }
}

/**
 * Opens the sources asked for in the namespace at `netns` (null: the caller's): conntrack's
 * NEW and DESTROY events, and nflog group `nflogGroup`. Conntrack only reports connections it
 * tracks, and a namespace tracks none until a rule or NAT there needs conntrack.
 */
export function openFlowEvents(
  o: { netns: string | null; nflogGroup: number | null; conntrack: boolean },
  c: Libc = requireLibc("twilld flows"),
): FlowEvents {
  const where = o.netns === null ? "" : ` in ${o.netns}`;
  const ct = o.conntrack ? NetlinkSubscription.open(c, o.netns, NETLINK.NETFILTER, CONNTRACK_GROUPS, `listen to conntrack events${where}`, RECEIVE_BUFFER) : null;
  let log: NetlinkSubscription | null = null;
  if (o.nflogGroup !== null) {
    try {
      log = bindNflog(c, o.netns, o.nflogGroup, `listen to nflog group ${o.nflogGroup}${where}`);
    } catch (err) {
      ct?.close();
      throw err;
    }
  }
  const nflogLoss = new SequenceLoss();
  return {
    drain(on) {
      let lost = 0;
      if (ct) {
        lost += ct.drainCounting((m) => {
          const e = decodeConntrack(m);
          if (e) on.conntrack(e);
        }, `read conntrack events${where}`);
      }
      if (log) {
        const overflows = log.drainCounting((m) => {
          if (m.type !== NFLOG_PACKET) return;
          nflogLoss.saw(attrsAfter(m.payload, NFGENMSG_LEN).u32be(NFULA.SEQ));
          const p = decodeNflog(m);
          if (p) on.dropped(p);
        }, `read nflog group ${o.nflogGroup}${where}`);
        lost += nflogLoss.take(overflows);
      }
      return { lost };
    },
    close() {
      ct?.close();
      log?.close();
    },
  };
}

function bindNflog(c: Libc, netns: string | null, group: number, op: string): NetlinkSubscription {
  const sub = NetlinkSubscription.open(c, netns, NETLINK.NETFILTER, 0, op, RECEIVE_BUFFER);
  try {
    for (const req of nflogBindRequests(group)) sub.configure(req, op);
    return sub;
  } catch (err) {
    sub.close();
    // A group bound by another socket is EPERM (the instance's peer_portid is not ours), as is
    // a caller without CAP_NET_ADMIN; EBUSY is this socket binding it twice.
    if (err instanceof NetlinkError && (err.errno === Errno.EBUSY || (err.errno === Errno.EPERM && hasNetAdmin()))) throw new NflogGroupTaken(op, err.errno, group);
    throw err;
  }
}

/** Whether this process may configure netfilter (CAP_NET_ADMIN in its effective set). */
function hasNetAdmin(): boolean {
  try {
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/thread-self/status", "utf8"))?.[1];
    return capEff !== undefined && ((BigInt(`0x${capEff}`) >> BigInt(CAP_NET_ADMIN)) & 1n) === 1n;
  } catch {
    return false;
  }
}

/**
 * The requests that bind nflog group `group` to the socket that sends them and make the kernel
 * copy each packet's first COPY_RANGE bytes to it at once, each numbered. One request: the
 * kernel binds first and then applies the settings, so a refused bind leaves nothing behind.
 * The group goes in nfgenmsg's res_id; the family is AF_UNSPEC (binding a family, PF_BIND,
 * is a thing of kernels before 3.17).
 */
export function nflogBindRequests(group: number): Omit<Request, "seq">[] {
  // struct nfulnl_msg_config_mode: __be32 copy_range, __u8 copy_mode, __u8 _pad (packed).
  const mode = new Uint8Array(6);
  new DataView(mode.buffer).setUint32(0, COPY_RANGE, false);
  mode[4] = NFULNL_COPY_PACKET;
  return [
    {
      type: (NFNL_SUBSYS.ULOG << 8) | NFULNL_MSG.CONFIG,
      flags: NLM_F.REQUEST | NLM_F.ACK,
      body: { nfgen: { family: 0, resId: group } },
      attrs: [
        u8(NFULA_CFG.CMD, NFULNL_CFG_CMD_BIND),
        bytes(NFULA_CFG.MODE, mode),
        be32(NFULA_CFG.NLBUFSIZ, NFLOG_BATCH_BYTES),
        be32(NFULA_CFG.TIMEOUT, NFLOG_TIMEOUT_CS),
        be32(NFULA_CFG.QTHRESH, NFLOG_QTHRESH),
        be16(NFULA_CFG.FLAGS, NFULNL_CFG_F_SEQ),
      ],
    },
  ];
}

/**
 * Packets lost on an nflog socket, from the gaps in NFULA_SEQ. An overflow (ENOBUFS) shows
 * before the next packet tells how many went: it counts one at once, as credit, and the gap
 * found later counts what the credit does not cover.
 */
export class SequenceLoss {
  private next: number | null = null;
  private gaps = 0;
  private credit = 0;

  saw(seq: number | undefined): void {
    if (seq === undefined) return;
    if (this.next !== null) this.gaps += (seq - this.next) >>> 0;
    this.next = (seq + 1) >>> 0;
  }

  /** Lost since the last call, given the overflows the socket reported meanwhile. */
  take(overflows: number): number {
    let lost = Math.max(this.gaps - this.credit, 0);
    this.credit = Math.max(this.credit - this.gaps, 0);
    this.gaps = 0;
    if (overflows > 0 && lost === 0) {
      lost = 1;
      this.credit++;
    }
    return lost;
  }
}

const NFGENMSG_LEN = 4;

const familyOf = (nfgenFamily: number | undefined): 4 | 6 | null => (nfgenFamily === AF_INET ? 4 : nfgenFamily === AF_INET6 ? 6 : null);

export function protocolName(n: number): FlowProtocol {
  switch (n) {
    case IPPROTO.TCP:
      return "TCP";
    case IPPROTO.UDP:
      return "UDP";
    case IPPROTO.SCTP:
      return "SCTP";
    case IPPROTO.ICMP:
      return "ICMP";
    case IPPROTO.ICMPV6:
      return "ICMPv6";
    default:
      return `proto-${n}`;
  }
}

// ---- conntrack --------------------------------------------------------------------------

interface Tuple {
  src: string;
  dst: string;
  proto: number;
  sport: number | null;
  dport: number | null;
  icmp?: IcmpFields;
}

function readTuple(a: Attrs | undefined, family: 4 | 6): Tuple | null {
  const ip = a?.nested(CTA_TUPLE.IP);
  const l4 = a?.nested(CTA_TUPLE.PROTO);
  const src = ip?.raw(family === 4 ? CTA_IP.V4_SRC : CTA_IP.V6_SRC);
  const dst = ip?.raw(family === 4 ? CTA_IP.V4_DST : CTA_IP.V6_DST);
  const proto = l4?.u8(CTA_PROTO.NUM);
  const width = family === 4 ? 4 : 16;
  if (!l4 || !src || !dst || src.length !== width || dst.length !== width || proto === undefined) return null;
  const t: Tuple = { src: formatIpBytes(src), dst: formatIpBytes(dst), proto, sport: l4.u16be(CTA_PROTO.SRC_PORT) ?? null, dport: l4.u16be(CTA_PROTO.DST_PORT) ?? null };
  const v6 = proto === IPPROTO.ICMPV6;
  const type = l4.u8(v6 ? CTA_PROTO.ICMPV6_TYPE : CTA_PROTO.ICMP_TYPE);
  if (type !== undefined) {
    const id = l4.u16be(v6 ? CTA_PROTO.ICMPV6_ID : CTA_PROTO.ICMP_ID);
    t.icmp = { type, code: l4.u8(v6 ? CTA_PROTO.ICMPV6_CODE : CTA_PROTO.ICMP_CODE) ?? 0, ...(id !== undefined ? { id } : {}) };
  }
  return t;
}

/** CTA_COUNTERS_*: 64-bit in network order; a JavaScript number holds any count a connection reaches. */
function counters(a: Attrs, type: number): [packets: number, bytes: number] | null {
  const c = a.nested(type);
  const p = c?.raw(CTA_COUNTERS.PACKETS);
  const b = c?.raw(CTA_COUNTERS.BYTES);
  if (!p || !b || p.length < 8 || b.length < 8) return null;
  const be64 = (x: Uint8Array): number => Number(new DataView(x.buffer, x.byteOffset, 8).getBigUint64(0, false));
  return [be64(p), be64(b)];
}

/**
 * A ctnetlink event as a ConntrackEvent, or null for anything else. The kernel sends a new
 * connection as IPCTNL_MSG_CT_NEW with NLM_F_CREATE (an update of one has no CREATE), and an
 * ended one as IPCTNL_MSG_CT_DELETE, with its counters when nf_conntrack_acct is on
 * (net/netfilter/nf_conntrack_netlink.c, ctnetlink_conntrack_event). Of the updates, only a TCP
 * connection's move to TIME_WAIT or CLOSE is one: its end.
 */
export function decodeConntrack(m: Message): ConntrackEvent | null {
  if (m.type >> 8 !== NFNL_SUBSYS.CTNETLINK) return null;
  const msg = m.type & 0xff;
  const family = familyOf(m.payload[0]);
  if (!family) return null;
  const a = attrsAfter(m.payload, NFGENMSG_LEN);
  const closed = msg === IPCTNL_MSG_CT.NEW && !(m.flags & NLM_F.CREATE) && tcpClosed(a);
  const kind = msg === IPCTNL_MSG_CT.DELETE || closed ? "end" : msg === IPCTNL_MSG_CT.NEW && m.flags & NLM_F.CREATE ? "new" : null;
  if (!kind) return null;
  const orig = readTuple(a.nested(CTA.TUPLE_ORIG), family);
  const reply = readTuple(a.nested(CTA.TUPLE_REPLY), family);
  if (!orig || !reply) return null;
  const co = counters(a, CTA.COUNTERS_ORIG);
  const cr = counters(a, CTA.COUNTERS_REPLY);
  const e: ConntrackEvent = {
    kind,
    id: a.u32be(CTA.ID) ?? null,
    family,
    protocol: protocolName(orig.proto),
    src: orig.src,
    dst: orig.dst,
    sport: orig.sport,
    dport: orig.dport,
    replySrc: reply.src,
    replyDst: reply.dst,
    replySport: reply.sport,
    replyDport: reply.dport,
    packets: co && cr ? [co[0], cr[0]] : null,
    bytes: co && cr ? [co[1], cr[1]] : null,
  };
  const status = a.u32be(CTA.STATUS);
  const zone = a.u16be(CTA.ZONE);
  const mark = a.u32be(CTA.MARK);
  if (closed) e.closed = true;
  if (status !== undefined) e.status = status;
  if (zone !== undefined) e.zone = zone;
  if (mark !== undefined) e.mark = mark;
  if (orig.icmp) e.icmp = orig.icmp;
  return e;
}

/** An update's TCP state, when it says the connection closed. */
function tcpClosed(a: Attrs): boolean {
  const state = a.nested(CTA.PROTOINFO)?.nested(CTA_PROTOINFO_TCP)?.u8(CTA_PROTOINFO_TCP_STATE);
  return state !== undefined && TCP_CONNTRACK_CLOSED.has(state);
}

// ---- nflog ------------------------------------------------------------------------------

/** What the first bytes of an IP packet tell: addresses, protocol, and ports or ICMP type where they were copied. */
export interface PacketHeaders {
  family: 4 | 6;
  proto: number;
  src: string;
  dst: string;
  sport: number | null;
  dport: number | null;
  icmp?: IcmpFields;
}

/** IPv6 extension headers skipped to reach the transport header (RFC 8200 §4): hop-by-hop, routing, destination options. */
const IPV6_EXT = { HOP_BY_HOP: 0, ROUTING: 43, FRAGMENT: 44, AH: 51, DEST_OPTS: 60 } as const;

/**
 * The headers of an IPv4 or IPv6 packet, from as many bytes of it as were copied; null when
 * not even the IP header is there. A fragment other than the first carries no ports.
 */
export function parseIpPacket(p: Uint8Array): PacketHeaders | null {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const version = p.length > 0 ? p[0]! >> 4 : 0;
  let proto: number;
  let l4: number;
  let firstFragment = true;
  let family: 4 | 6;
  let src: Uint8Array;
  let dst: Uint8Array;
  if (version === 4) {
    const ihl = (p[0]! & 0x0f) * 4;
    if (p.length < 20 || ihl < 20) return null;
    family = 4;
    proto = p[9]!;
    src = p.subarray(12, 16);
    dst = p.subarray(16, 20);
    firstFragment = (v.getUint16(6, false) & 0x1fff) === 0;
    l4 = ihl;
  } else if (version === 6) {
    if (p.length < 40) return null;
    family = 6;
    src = p.subarray(8, 24);
    dst = p.subarray(24, 40);
    proto = p[6]!;
    l4 = 40;
    for (;;) {
      if (proto === IPV6_EXT.HOP_BY_HOP || proto === IPV6_EXT.ROUTING || proto === IPV6_EXT.DEST_OPTS) {
        if (l4 + 2 > p.length) break;
        [proto, l4] = [p[l4]!, l4 + (p[l4 + 1]! + 1) * 8];
      } else if (proto === IPV6_EXT.FRAGMENT) {
        if (l4 + 8 > p.length) break;
        firstFragment = (v.getUint16(l4 + 2, false) & 0xfff8) === 0;
        [proto, l4] = [p[l4]!, l4 + 8];
      } else if (proto === IPV6_EXT.AH) {
        if (l4 + 2 > p.length) break;
        [proto, l4] = [p[l4]!, l4 + (p[l4 + 1]! + 2) * 4];
      } else break;
    }
  } else return null;
  const h: PacketHeaders = { family, proto, src: formatIpBytes(src), dst: formatIpBytes(dst), sport: null, dport: null };
  if (!firstFragment) return h;
  if ((proto === IPPROTO.TCP || proto === IPPROTO.UDP || proto === IPPROTO.SCTP) && l4 + 4 <= p.length) {
    h.sport = v.getUint16(l4, false);
    h.dport = v.getUint16(l4 + 2, false);
  } else if ((proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) && l4 + 2 <= p.length) {
    h.icmp = { type: p[l4]!, code: p[l4 + 1]! };
  }
  return h;
}

/**
 * An nflog packet message as a DroppedPacket, or null for anything else (a packet whose IP
 * header was not copied, or of neither IP family). The addresses come from the packet itself:
 * an inet table logs both families into one group.
 */
export function decodeNflog(m: Message): DroppedPacket | null {
  if (m.type !== NFLOG_PACKET) return null;
  const a = attrsAfter(m.payload, NFGENMSG_LEN);
  const payload = a.raw(NFULA.PAYLOAD);
  const h = payload ? parseIpPacket(payload) : null;
  if (!h) return null;
  const p: DroppedPacket = {
    prefix: a.str(NFULA.PREFIX) ?? "",
    family: h.family,
    protocol: protocolName(h.proto),
    src: h.src,
    dst: h.dst,
    sport: h.sport,
    dport: h.dport,
    inIfindex: a.u32be(NFULA.IFINDEX_INDEV) ?? null,
    outIfindex: a.u32be(NFULA.IFINDEX_OUTDEV) ?? null,
  };
  // struct nfulnl_msg_packet_hdr: __be16 hw_protocol, __u8 hook, __u8 _pad.
  const hdr = a.raw(NFULA.PACKET_HDR);
  if (hdr && hdr.length >= 3) p.hook = hdr[2]!;
  // struct nfulnl_msg_packet_timestamp: __be64 sec, __be64 usec.
  const ts = a.raw(NFULA.TIMESTAMP);
  if (ts && ts.length >= 16) {
    const tv = new DataView(ts.buffer, ts.byteOffset, 16);
    p.timestampMs = Number(tv.getBigUint64(0, false)) * 1000 + Math.floor(Number(tv.getBigUint64(8, false)) / 1000);
  }
  if (h.icmp) p.icmp = h.icmp;
  return p;
}
