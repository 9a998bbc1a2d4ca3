/**
 * Netlink messages as bytes and back, with no I/O: a message is a header plus a fixed family
 * struct (ifinfomsg, ifaddrmsg, rtmsg, nfgenmsg, genlmsghdr) plus attributes. Attributes are
 * addressed by name through the tables below, never by offsets written at the call site.
 * Layouts follow include/uapi/linux/{netlink,rtnetlink,if_link,if_addr,genetlink}.h; integers
 * are host order (little-endian on every machine twill runs on), 4-byte aligned.
 */

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;
/**
 * `n` padded to 4. The loops over attributes and messages pad inline, `(n + 3) & ~3`: a small
 * function called for each of the hundreds of attributes an ADD reads is compiled by the JIT
 * twice (Baseline, then DFG) in a process that exits a moment later.
 */
export const align4 = (n: number): number => (n + 3) & ~3;

export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  /** Dump: ROOT | MATCH. */
  DUMP: 0x300,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  /** On a dump part: the object changed while it was being dumped, so the parts disagree. */
  DUMP_INTR: 0x10,
} as const;

export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3 } as const;

export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
} as const;

export const AF = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10 } as const;

export const IFF = {
  UP: 0x1,
  BROADCAST: 0x2,
  LOOPBACK: 0x8,
  POINTOPOINT: 0x10,
  NOARP: 0x80,
  PROMISC: 0x100,
  MULTICAST: 0x1000,
  LOWER_UP: 0x10000,
} as const;

/** NLA_F_NESTED: set on nested attributes, as the kernel's strict validation wants. */
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

/** Attribute numbers by name, one table per attribute space. */
export const IFLA = {
  ADDRESS: 1, IFNAME: 3, MTU: 4, LINK: 5, MASTER: 10, PROTINFO: 12, OPERSTATE: 16, LINKINFO: 18, NET_NS_FD: 28, EXT_MASK: 29,
} as const;
export const IFLA_INFO = { KIND: 1, DATA: 2, SLAVE_KIND: 4, SLAVE_DATA: 5 } as const;
/** IFLA_VXLAN_*: a VXLAN device's settings inside IFLA_INFO_DATA. PORT is in network order. */
export const IFLA_VXLAN = { ID: 1, LINK: 3, LOCAL: 4, LEARNING: 7, PORT: 15, LOCAL6: 17 } as const;
/** IFLA_BR_*: a bridge's settings inside IFLA_INFO_DATA. */
export const IFLA_BR = { NF_CALL_IPTABLES: 36, NF_CALL_IP6TABLES: 37 } as const;
export const VETH_INFO = { PEER: 1 } as const;
export const IFLA_BRPORT = { MODE: 4 } as const;
export const IFA = { ADDRESS: 1, LOCAL: 2, FLAGS: 8 } as const;
export const IFA_F = { NODAD: 0x02 } as const;
export const RTA = { DST: 1, OIF: 4, GATEWAY: 5, PRIORITY: 6, PREFSRC: 7, TABLE: 15 } as const;
export const RT_SCOPE = { UNIVERSE: 0, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
export const RTPROT = { BOOT: 3 } as const;
/** rtm_flags: the next hop is on the device whether or not a prefix there covers it. */
export const RTNH_F_ONLINK = 4;
/** NDA_*: a neighbour's or FDB entry's attributes. */
export const NDA = { DST: 1, LLADDR: 2 } as const;
/** ndm_state and ndm_flags values. */
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;
/**
 * rtnetlink multicast groups as bind() bits (RTMGRP_*): link, neighbour, and each family's
 * addresses and routes.
 */
export const RTMGRP = { LINK: 0x1, NEIGH: 0x4, IPV4_IFADDR: 0x10, IPV4_ROUTE: 0x40, IPV6_IFADDR: 0x100, IPV6_ROUTE: 0x400 } as const;
export const RT_TABLE_MAIN = 254;
/** IFLA_EXT_MASK value: leave the statistics out of link replies. */
export const RTEXT_FILTER_SKIP_STATS = 8;
export const RTN_UNICAST = 1;

// ---- attributes ---------------------------------------------------------------------------

/** One attribute to encode: a number's width is its type's, a nested list is NLA_F_NESTED. */
export type AttrValue =
  | { u8: number }
  | { u16: number }
  /** A 16-bit number in network order (a UDP port). */
  | { be16: number }
  | { u32: number }
  /** A 32-bit number in network order (nfnetlink_log's settings). */
  | { be32: number }
  | { str: string }
  | { bytes: Uint8Array }
  | { nested: Attr[] };
export type Attr = [type: number, value: AttrValue];

export const u8 = (type: number, v: number): Attr => [type, { u8: v }];
export const u16 = (type: number, v: number): Attr => [type, { u16: v }];
export const u32 = (type: number, v: number): Attr => [type, { u32: v }];
export const be16 = (type: number, v: number): Attr => [type, { be16: v }];
export const be32 = (type: number, v: number): Attr => [type, { be32: v }];
export const str = (type: number, v: string): Attr => [type, { str: v }];
export const bytes = (type: number, v: Uint8Array): Attr => [type, { bytes: v }];
export const nested = (type: number, attrs: Attr[]): Attr => [type, { nested: attrs }];

const utf8 = new TextEncoder();
const utf8Text = new TextDecoder();

function payloadLength(v: AttrValue): number {
  if ("u8" in v) return 1;
  if ("u16" in v || "be16" in v) return 2;
  if ("u32" in v || "be32" in v) return 4;
  if ("str" in v) return utf8Length(v.str) + 1;
  if ("bytes" in v) return v.bytes.length;
  return attrsLength(v.nested);
}

/** The UTF-8 length of `s`, without encoding it when it is ASCII (every name twill sends). */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return utf8.encode(s).length;
  return s.length;
}

/** Bytes the attributes take, each padded to 4. */
export function attrsLength(attrs: readonly Attr[]): number {
  let n = 0;
  for (let i = 0; i < attrs.length; i++) n += (NLA_HDRLEN + payloadLength(attrs[i]![1]) + 3) & ~3;
  return n;
}

/**
 * Writes `attrs` at `offset` of a zeroed buffer sized by {@link attrsLength}; returns the offset
 * after them. One pass: each length is written once its payload is (a nested one's after its
 * attributes), so no length is computed twice.
 */
export function writeAttrs(view: DataView, offset: number, attrs: readonly Attr[]): number {
  for (let i = 0; i < attrs.length; i++) {
    const [type, v] = attrs[i]!;
    const at = offset + NLA_HDRLEN;
    let end: number;
    if ("nested" in v) end = writeAttrs(view, at, v.nested);
    else if ("u8" in v) {
      view.setUint8(at, v.u8);
      end = at + 1;
    } else if ("u16" in v) {
      view.setUint16(at, v.u16, true);
      end = at + 2;
    } else if ("be16" in v) {
      view.setUint16(at, v.be16, false);
      end = at + 2;
    } else if ("u32" in v) {
      view.setUint32(at, v.u32 >>> 0, true);
      end = at + 4;
    } else if ("be32" in v) {
      view.setUint32(at, v.be32 >>> 0, false);
      end = at + 4;
    } else if ("str" in v) {
      // The NUL after it is the buffer's zero.
      end = at + utf8.encodeInto(v.str, new Uint8Array(view.buffer, view.byteOffset + at)).written + 1;
    } else {
      new Uint8Array(view.buffer, view.byteOffset + at).set(v.bytes);
      end = at + v.bytes.length;
    }
    view.setUint16(offset, end - offset, true);
    view.setUint16(offset + 2, "nested" in v ? type | NLA_F_NESTED : type, true);
    offset = (end + 3) & ~3;
  }
  return offset;
}

/** Decoded attributes: the last one of each type wins, as in the kernel's nla_parse. */
export class Attrs {
  private readonly byType = new Map<number, Uint8Array>();
  private readonly list: [number, Uint8Array][] = [];

  constructor(data: Uint8Array) {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let off = 0;
    while (off + NLA_HDRLEN <= data.byteLength) {
      const len = view.getUint16(off, true);
      if (len < NLA_HDRLEN || off + len > data.byteLength) break;
      const type = view.getUint16(off + 2, true) & NLA_TYPE_MASK;
      const payload = data.subarray(off + NLA_HDRLEN, off + len);
      this.byType.set(type, payload);
      this.list.push([type, payload]);
      off += (len + 3) & ~3;
    }
  }

  has(type: number): boolean {
    return this.byType.has(type);
  }

  raw(type: number): Uint8Array | undefined {
    return this.byType.get(type);
  }

  u8(type: number): number | undefined {
    const b = this.byType.get(type);
    return b && b.length >= 1 ? b[0] : undefined;
  }

  /** The payload of `type` as a view of its first `width` bytes, when it has that many. */
  private fixed(type: number, width: number): DataView | undefined {
    const b = this.byType.get(type);
    return b && b.length >= width ? new DataView(b.buffer, b.byteOffset, width) : undefined;
  }

  u32(type: number): number | undefined {
    return this.fixed(type, 4)?.getUint32(0, true);
  }

  /** A 16-bit attribute in host order. */
  u16(type: number): number | undefined {
    return this.fixed(type, 2)?.getUint16(0, true);
  }

  /** A 64-bit attribute in host order (a byte counter). */
  u64(type: number): bigint | undefined {
    return this.fixed(type, 8)?.getBigUint64(0, true);
  }

  /** A 16-bit attribute in network order (a port). */
  u16be(type: number): number | undefined {
    return this.fixed(type, 2)?.getUint16(0, false);
  }

  /** A 32-bit attribute in network order, as nftables writes its numbers. */
  u32be(type: number): number | undefined {
    return this.fixed(type, 4)?.getUint32(0, false);
  }

  /** Every attribute of `type` in order: the elements of a list (NFTA_LIST_ELEM). */
  all(type: number): Attrs[] {
    return this.list.filter(([t]) => t === type).map(([, b]) => new Attrs(b));
  }

  /** A NUL-terminated string attribute. */
  str(type: number): string | undefined {
    const b = this.byType.get(type);
    if (!b) return undefined;
    const end = b.indexOf(0);
    return utf8Text.decode(end < 0 ? b : b.subarray(0, end));
  }

  nested(type: number): Attrs | undefined {
    const b = this.byType.get(type);
    return b ? new Attrs(b) : undefined;
  }
}

// ---- family structs -----------------------------------------------------------------------

/** struct ifinfomsg (16 bytes). */
export interface IfInfo {
  family: number;
  type?: number;
  index: number;
  flags: number;
  change: number;
}
/** struct ifaddrmsg (8 bytes). */
export interface IfAddr {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
}
/** struct rtmsg (12 bytes). */
export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

/** struct ndmsg (12 bytes): a neighbour or, with family AF_BRIDGE, an FDB entry. */
export interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
}

/** struct nfgenmsg (4 bytes): nfnetlink's header, for nftables, conntrack and nflog. */
export interface NfGen {
  family: number;
  /** res_id, network order: the subsystem's resource (nflog's group); 0 when absent. */
  resId?: number;
}

/** struct genlmsghdr (4 bytes): generic netlink's header, the family's command and version. */
export interface GenlHeader {
  cmd: number;
  version: number;
}
export const GENL_HDRLEN = 4;

export type Body = { ifinfo: IfInfo } | { ifaddr: IfAddr } | { rtmsg: RtMsg } | { ndmsg: NdMsg } | { rtgen: number } | { nfgen: NfGen } | { genl: GenlHeader };

export const IFINFO_LEN = 16;
export const NDMSG_LEN = 12;
const bodyLength = (b: Body): number => ("ifinfo" in b ? IFINFO_LEN : "ifaddr" in b ? 8 : "rtmsg" in b || "ndmsg" in b ? 12 : "genl" in b ? GENL_HDRLEN : 4);

function writeBody(view: DataView, at: number, b: Body): void {
  if ("ifinfo" in b) writeIfInfo(view, at, b.ifinfo);
  else if ("ifaddr" in b) {
    const a = b.ifaddr;
    view.setUint8(at, a.family);
    view.setUint8(at + 1, a.prefixlen);
    view.setUint8(at + 2, a.flags & 0xff);
    view.setUint8(at + 3, a.scope);
    view.setInt32(at + 4, a.index, true);
  } else if ("rtmsg" in b) {
    const r = b.rtmsg;
    [r.family, r.dstLen, r.srcLen, r.tos, r.table, r.protocol, r.scope, r.type].forEach((v, i) => view.setUint8(at + i, v));
    view.setUint32(at + 8, r.flags, true);
  } else if ("ndmsg" in b) {
    const n = b.ndmsg;
    view.setUint8(at, n.family);
    view.setInt32(at + 4, n.index, true);
    view.setUint16(at + 8, n.state, true);
    view.setUint8(at + 10, n.flags);
  } else if ("nfgen" in b) {
    // version NFNETLINK_V0
    view.setUint8(at, b.nfgen.family);
    view.setUint16(at + 2, b.nfgen.resId ?? 0, false);
  } else if ("genl" in b) {
    // reserved stays 0
    view.setUint8(at, b.genl.cmd);
    view.setUint8(at + 1, b.genl.version);
  } else view.setUint8(at, b.rtgen);
}

export function writeIfInfo(view: DataView, at: number, i: IfInfo): void {
  view.setUint8(at, i.family);
  view.setUint16(at + 2, i.type ?? 0, true);
  view.setInt32(at + 4, i.index, true);
  view.setUint32(at + 8, i.flags >>> 0, true);
  view.setUint32(at + 12, i.change >>> 0, true);
}

export function readIfInfo(b: Uint8Array): IfInfo {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { family: v.getUint8(0), type: v.getUint16(2, true), index: v.getInt32(4, true), flags: v.getUint32(8, true), change: v.getUint32(12, true) };
}

export function readIfAddr(b: Uint8Array): IfAddr {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { family: v.getUint8(0), prefixlen: v.getUint8(1), flags: v.getUint8(2), scope: v.getUint8(3), index: v.getInt32(4, true) };
}

export function readRtMsg(b: Uint8Array): RtMsg {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    family: v.getUint8(0), dstLen: v.getUint8(1), srcLen: v.getUint8(2), tos: v.getUint8(3),
    table: v.getUint8(4), protocol: v.getUint8(5), scope: v.getUint8(6), type: v.getUint8(7), flags: v.getUint32(8, true),
  };
}

export function readGenl(b: Uint8Array): GenlHeader {
  return { cmd: b[0] ?? 0, version: b[1] ?? 0 };
}

export function readNdMsg(b: Uint8Array): NdMsg {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { family: v.getUint8(0), index: v.getInt32(4, true), state: v.getUint16(8, true), flags: v.getUint8(10) };
}

/**
 * A nested payload that starts with an ifinfomsg, as VETH_INFO_PEER does: encoded as raw bytes
 * (struct, then the peer's attributes) so the generic attribute writer can carry it.
 */
export function ifInfoWithAttrs(info: IfInfo, attrs: readonly Attr[]): Uint8Array {
  const out = new Uint8Array(IFINFO_LEN + attrsLength(attrs));
  const view = new DataView(out.buffer);
  writeIfInfo(view, 0, info);
  writeAttrs(view, IFINFO_LEN, attrs);
  return out;
}

// ---- messages -----------------------------------------------------------------------------

export interface Request {
  type: number;
  flags: number;
  seq: number;
  body: Body;
  attrs?: readonly Attr[];
}

/** One request as bytes: header, family struct, attributes. */
export function encode(req: Request): Uint8Array {
  const attrs = req.attrs ?? [];
  const bodyLen = bodyLength(req.body);
  const len = NLMSG_HDRLEN + align4(bodyLen) + attrsLength(attrs);
  const out = new Uint8Array(len);
  const view = new DataView(out.buffer);
  view.setUint32(0, len, true);
  view.setUint16(4, req.type, true);
  view.setUint16(6, req.flags, true);
  view.setUint32(8, req.seq >>> 0, true);
  view.setUint32(12, 0, true);
  writeBody(view, NLMSG_HDRLEN, req.body);
  writeAttrs(view, NLMSG_HDRLEN + align4(bodyLen), attrs);
  return out;
}

export interface Message {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the header. */
  payload: Uint8Array;
}

/** Splits a datagram into its messages (a dump packs many into one recv). */
export function decode(data: Uint8Array): Message[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: Message[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= data.byteLength) {
    const len = view.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > data.byteLength) throw new Error(`malformed netlink message at byte ${off} (length ${len})`);
    out.push({
      type: view.getUint16(off + 4, true),
      flags: view.getUint16(off + 6, true),
      seq: view.getUint32(off + 8, true),
      pid: view.getUint32(off + 12, true),
      payload: data.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += (len + 3) & ~3;
  }
  return out;
}

/** The attributes after a family struct of `structLen` bytes. */
export const attrsAfter = (payload: Uint8Array, structLen: number): Attrs => new Attrs(payload.subarray(align4(structLen)));

/** NLMSG_ERROR's errno as a positive number: 0 is the ack of a request that succeeded. */
export function errorCode(msg: Message): number {
  return Math.abs(new DataView(msg.payload.buffer, msg.payload.byteOffset, 4).getInt32(0, true));
}

/** What a reply stream says about request `seq`. */
export type Outcome = { done: false } | { done: true; errno: number };

/**
 * Whether the messages answering `seq` are complete: an NLMSG_ERROR (an ack has errno 0) or
 * NLMSG_DONE ends a request; anything else (a dump part) means read on.
 */
export function outcome(msgs: readonly Message[], seq: number): Outcome {
  for (const m of msgs) {
    if (m.seq !== seq) continue;
    if (m.type === NLMSG.ERROR) return { done: true, errno: errorCode(m) };
    if (m.type === NLMSG.DONE) {
      // A dump can end in error: NLMSG_DONE then carries the negative errno.
      const errno = m.payload.byteLength >= 4 ? errorCode(m) : 0;
      return { done: true, errno };
    }
    if (!(m.flags & NLM_F.MULTI)) return { done: true, errno: 0 };
  }
  return { done: false };
}

// ---- addresses ----------------------------------------------------------------------------

export function macBytes(mac: string): Uint8Array {
  const parts = mac.split(":");
  const out = new Uint8Array(6);
  if (parts.length !== 6) throw new Error(`invalid MAC address "${mac}"`);
  for (let i = 0; i < 6; i++) {
    if (!MAC_BYTE.test(parts[i]!)) throw new Error(`invalid MAC address "${mac}"`);
    out[i] = parseInt(parts[i]!, 16);
  }
  return out;
}

const MAC_BYTE = /^[0-9a-f]{1,2}$/i;

export { formatMac } from "../../digest.js";
