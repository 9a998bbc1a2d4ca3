import { describe, expect, it } from "vitest";
import { decode, encode, type Message } from "./codec.js";
import type { Libc } from "./libc.js";
import { NflogGroupTaken, decodeConntrack, decodeNflog, nflogBindRequests, openFlowEvents, type ConntrackEvent, type DroppedPacket } from "./flow-events.js";

// Messages are written byte by byte from the numbers in include/uapi/linux/netfilter/
// {nfnetlink,nfnetlink_conntrack,nfnetlink_log}.h, not with the codec's encoder, so a wrong
// constant in flow-events.ts fails here.

const le16 = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff];
const le32 = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
const n16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const n32 = (n: number): number[] => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const n64 = (n: number): number[] => [...n32(Math.floor(n / 2 ** 32)), ...n32(n >>> 0)];
const ip4 = (s: string): number[] => s.split(".").map(Number);
const text = (s: string): number[] => [...Buffer.from(s, "utf8")];

/** struct nlattr: length, type, payload, zero padding to 4. */
function nla(type: number, payload: number[]): number[] {
  const len = 4 + payload.length;
  return [...le16(len), ...le16(type), ...payload, ...new Array((4 - (len % 4)) % 4).fill(0)];
}
const NLA_F_NESTED = 0x8000;
const NLA_F_NET_BYTEORDER = 0x4000;
const nest = (type: number, ...children: number[][]): number[] => nla(type | NLA_F_NESTED, children.flat());

/** One nfnetlink message: nlmsghdr (seq 0, pid 0, as the kernel's events carry), nfgenmsg, attributes. */
function nfnl(type: number, flags: number, family: number, resId: number, attrs: number[][]): Message {
  const body = [family, 0, ...n16(resId), ...attrs.flat()];
  const bytes = Uint8Array.from([...le32(16 + body.length), ...le16(type), ...le16(flags), ...le32(0), ...le32(0), ...body]);
  return decode(bytes)[0]!;
}

// nfnetlink.h: NFNL_SUBSYS_CTNETLINK 1, NFNL_SUBSYS_ULOG 4. nfnetlink_conntrack.h:
// IPCTNL_MSG_CT_NEW 0, IPCTNL_MSG_CT_DELETE 2. nfnetlink_log.h: NFULNL_MSG_PACKET 0, CONFIG 1.
const CT_NEW = 0x0100;
const CT_DELETE = 0x0102;
const ULOG_PACKET = 0x0400;
const NLM_F_CREATE_EXCL = 0x400 | 0x200;
const AF_INET = 2;
const AF_INET6 = 10;

/** CTA_TUPLE_* (1 orig, 2 reply) with CTA_TUPLE_IP (1) and CTA_TUPLE_PROTO (2). */
function tuple(which: 1 | 2, ip: number[][], proto: number[][]): number[] {
  return nest(which, nest(1, ...ip), nest(2, ...proto));
}
// enum ctattr_ip: V4_SRC 1, V4_DST 2, V6_SRC 3, V6_DST 4.
const v4 = (src: string, dst: string): number[][] => [nla(1, ip4(src)), nla(2, ip4(dst))];
// enum ctattr_l4proto: NUM 1 (u8), SRC_PORT 2, DST_PORT 3 (be16).
const ports = (num: number, sport: number, dport: number): number[][] => [nla(1, [num]), nla(2, n16(sport)), nla(3, n16(dport))];

describe("conntrack events", () => {
  it("decodes a new IPv4 TCP connection: both tuples, id, status, mark and zone", () => {
    const m = nfnl(CT_NEW, NLM_F_CREATE_EXCL, AF_INET, 0, [
      tuple(1, v4("10.1.0.5", "10.2.0.9"), ports(6, 40123, 8080)),
      tuple(2, v4("10.2.0.9", "10.1.0.5"), ports(6, 8080, 40123)),
      nla(3, n32(0x8)), // CTA_STATUS: IPS_CONFIRMED
      nla(8, n32(0x2a)), // CTA_MARK
      nla(12 | NLA_F_NET_BYTEORDER, n32(0xdeadbeef)), // CTA_ID, flagged as the kernel may
      nla(18, n16(3)), // CTA_ZONE
    ]);
    expect(decodeConntrack(m)).toEqual<ConntrackEvent>({
      kind: "new", id: 0xdeadbeef, family: 4, protocol: "TCP",
      src: "10.1.0.5", dst: "10.2.0.9", sport: 40123, dport: 8080,
      replySrc: "10.2.0.9", replyDst: "10.1.0.5", replySport: 8080, replyDport: 40123,
      packets: null, bytes: null, status: 0x8, mark: 0x2a, zone: 3,
    });
  });

  it("decodes an ended IPv6 UDP flow with its counters, original then reply", () => {
    const a = [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 0x01];
    const b = [0xfd, 0x00, ...new Array(13).fill(0), 0x02];
    // enum ctattr_counters: PACKETS 1, BYTES 2 (64-bit); the kernel pads them with CTA_COUNTERS_PAD 3.
    const counters = (which: 9 | 10, packets: number, bytes: number) => nest(which, nla(3, []), nla(1, n64(packets)), nla(2, n64(bytes)));
    const m = nfnl(CT_DELETE, 0, AF_INET6, 0, [
      tuple(1, [nla(3, a), nla(4, b)], ports(17, 5353, 53)),
      tuple(2, [nla(3, b), nla(4, a)], ports(17, 53, 5353)),
      counters(9, 3, 2 ** 32 + 300),
      counters(10, 5, 500),
      nla(12, n32(77)),
    ]);
    expect(decodeConntrack(m)).toMatchObject({
      kind: "end", id: 77, family: 6, protocol: "UDP",
      src: "2001:db8::1", dst: "fd00::2", sport: 5353, dport: 53,
      replySrc: "fd00::2", replyDst: "2001:db8::1", replySport: 53, replyDport: 5353,
      packets: [3, 5], bytes: [2 ** 32 + 300, 500],
    });
  });

  it("shows a Service's DNAT in the reply tuple: the backend answers, not the Service address", () => {
    const m = nfnl(CT_NEW, NLM_F_CREATE_EXCL, AF_INET, 0, [
      tuple(1, v4("10.244.1.4", "10.96.0.10"), ports(6, 51000, 80)),
      tuple(2, v4("10.244.2.7", "10.244.1.4"), ports(6, 8080, 51000)),
    ]);
    expect(decodeConntrack(m)).toMatchObject({
      src: "10.244.1.4", dst: "10.96.0.10", sport: 51000, dport: 80,
      replySrc: "10.244.2.7", replyDst: "10.244.1.4", replySport: 8080, replyDport: 51000,
    });
  });

  it("decodes an ICMP echo flow: no ports, its type, code and id", () => {
    // CTA_PROTO_ICMP_ID 4 (be16), ICMP_TYPE 5, ICMP_CODE 6 (u8).
    const icmp = (type: number) => [nla(1, [1]), nla(4, n16(0x1234)), nla(5, [type]), nla(6, [0])];
    const m = nfnl(CT_NEW, NLM_F_CREATE_EXCL, AF_INET, 0, [tuple(1, v4("10.1.0.5", "10.2.0.9"), icmp(8)), tuple(2, v4("10.2.0.9", "10.1.0.5"), icmp(0))]);
    expect(decodeConntrack(m)).toMatchObject({ protocol: "ICMP", sport: null, dport: null, replySport: null, replyDport: null, icmp: { type: 8, code: 0, id: 0x1234 } });
  });

  it("ends a TCP connection at its close: an update (NEW without NLM_F_CREATE) to TIME_WAIT or CLOSE", () => {
    const tuples = [tuple(1, v4("10.1.0.5", "10.2.0.9"), ports(6, 1, 2)), tuple(2, v4("10.2.0.9", "10.1.0.5"), ports(6, 2, 1))];
    // CTA_PROTOINFO 4 > CTA_PROTOINFO_TCP 1 > CTA_PROTOINFO_TCP_STATE 1 (u8); tcp_conntrack:
    // ESTABLISHED 3, FIN_WAIT 4, TIME_WAIT 7, CLOSE 8.
    const state = (s: number) => nest(4, nest(1, nla(1, [s])));
    const update = (s: number) => decodeConntrack(nfnl(CT_NEW, 0, AF_INET, 0, [...tuples, nla(12, n32(9)), state(s)]));
    expect(update(7)).toMatchObject({ kind: "end", closed: true, id: 9, src: "10.1.0.5", dport: 2 });
    expect(update(8)).toMatchObject({ kind: "end", closed: true, id: 9 });
    expect(update(3)).toBeNull();
    expect(update(4)).toBeNull();
  });

  it("ignores other updates, another subsystem, and a message without tuples", () => {
    const tuples = [tuple(1, v4("10.1.0.5", "10.2.0.9"), ports(6, 1, 2)), tuple(2, v4("10.2.0.9", "10.1.0.5"), ports(6, 2, 1))];
    expect(decodeConntrack(nfnl(CT_NEW, 0, AF_INET, 0, tuples))).toBeNull();
    expect(decodeConntrack(nfnl(0x0200, NLM_F_CREATE_EXCL, AF_INET, 0, tuples))).toBeNull(); // CTNETLINK_EXP
    expect(decodeConntrack(nfnl(CT_DELETE, 0, AF_INET, 0, [nla(12, n32(1))]))).toBeNull();
  });
});

/** An IPv4 header (20 bytes, no options) carrying `proto`, then `l4`. */
function ipv4Packet(src: string, dst: string, proto: number, l4: number[]): number[] {
  return [0x45, 0, ...n16(20 + l4.length), 0, 0, 0x40, 0, 64, proto, 0, 0, ...ip4(src), ...ip4(dst), ...l4];
}
/** TCP or UDP: source and destination port, then the rest of a header. */
const l4ports = (sport: number, dport: number, rest: number): number[] => [...n16(sport), ...n16(dport), ...new Array(rest).fill(0)];

// enum nfulnl_attr_type: PACKET_HDR 1, TIMESTAMP 3, IFINDEX_INDEV 4, IFINDEX_OUTDEV 5, PAYLOAD 9, PREFIX 10, SEQ 12.
describe("nflog packets", () => {
  it("decodes a dropped IPv4 TCP packet: prefix, addresses, ports, devices, hook and time", () => {
    const m = nfnl(ULOG_PACKET, 0, AF_INET, 7, [
      nla(1, [...n16(0x0800), 2, 0]), // hw_protocol ETH_P_IP, hook NF_INET_FORWARD
      nla(10, [...text("drop_x_in"), 0]),
      nla(4, n32(5)),
      nla(5, n32(6)),
      nla(3, [...n64(1_700_000_000), ...n64(250_000)]),
      nla(9, ipv4Packet("10.91.2.2", "10.91.1.2", 6, l4ports(43210, 9, 16))),
    ]);
    expect(decodeNflog(m)).toEqual<DroppedPacket>({
      prefix: "drop_x_in", family: 4, protocol: "TCP", src: "10.91.2.2", dst: "10.91.1.2", sport: 43210, dport: 9,
      inIfindex: 5, outIfindex: 6, hook: 2, timestampMs: 1_700_000_000_250,
    });
  });

  it("decodes an IPv6 UDP packet behind a hop-by-hop header, and leaves the ports out of a later fragment", () => {
    const src = [0xfd, 0, ...new Array(13).fill(0), 1];
    const dst = [0xfd, 0, ...new Array(13).fill(0), 2];
    // Next header 0 (hop-by-hop, 8 bytes: next 17, length 0), then UDP.
    const hbh = [17, 0, 1, 4, 0, 0, 0, 0];
    const v6 = (next: number, rest: number[]) => [0x60, 0, 0, 0, ...n16(rest.length), next, 64, ...src, ...dst, ...rest];
    const withUdp = nfnl(ULOG_PACKET, 0, AF_INET6, 7, [nla(10, [...text("drop_y"), 0]), nla(4, n32(3)), nla(9, v6(0, [...hbh, ...l4ports(5353, 53, 4)]))]);
    expect(decodeNflog(withUdp)).toEqual<DroppedPacket>({
      prefix: "drop_y", family: 6, protocol: "UDP", src: "fd00::1", dst: "fd00::2", sport: 5353, dport: 53, inIfindex: 3, outIfindex: null,
    });
    // Fragment header (44): next 17, offset 185 (x8 bytes), so no UDP header here.
    const frag = [17, 0, ...n16(185 << 3), 0, 0, 0, 1];
    const later = nfnl(ULOG_PACKET, 0, AF_INET6, 7, [nla(9, v6(44, [...frag, 1, 2, 3, 4]))]);
    expect(decodeNflog(later)).toMatchObject({ protocol: "UDP", sport: null, dport: null, prefix: "" });
  });

  it("decodes an ICMP packet's type and code, and skips a message of another type", () => {
    const m = nfnl(ULOG_PACKET, 0, AF_INET, 7, [nla(9, ipv4Packet("10.0.0.1", "10.0.0.2", 1, [8, 0, 0, 0, 0, 1, 0, 1]))]);
    expect(decodeNflog(m)).toMatchObject({ protocol: "ICMP", sport: null, dport: null, icmp: { type: 8, code: 0 } });
    expect(decodeNflog(nfnl(0x0401, 0, AF_INET, 7, [nla(9, ipv4Packet("10.0.0.1", "10.0.0.2", 1, [8, 0]))]))).toBeNull();
  });

  it("binds a group with one config request: the group in res_id, copy of 160 bytes, each packet at once and numbered", () => {
    const [req, ...rest] = nflogBindRequests(7);
    expect(rest).toEqual([]);
    const sent = [...encode({ ...req!, seq: 1 })];
    const attrs = [
      ...nla(1, [1]), // NFULA_CFG_CMD: NFULNL_CFG_CMD_BIND
      ...nla(2, [...n32(160), 0x02, 0]), // NFULA_CFG_MODE: copy_range, NFULNL_COPY_PACKET, pad
      ...nla(3, n32(16384)), // NFULA_CFG_NLBUFSIZ
      ...nla(4, n32(1)), // NFULA_CFG_TIMEOUT (1/100 s)
      ...nla(5, n32(1)), // NFULA_CFG_QTHRESH
      ...nla(6, n16(0x0001)), // NFULA_CFG_FLAGS: NFULNL_CFG_F_SEQ
    ];
    // type NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG, flags NLM_F_REQUEST | NLM_F_ACK; nfgenmsg AF_UNSPEC, v0, res_id 7.
    const header = [...le32(16 + 4 + attrs.length), ...le16(0x0401), ...le16(0x0005), ...le32(1), ...le32(0)];
    expect(sent).toEqual([...header, 0, 0, ...n16(7), ...attrs]);
  });
});

/**
 * A libc whose netlink sockets (fd 3, 4, … in the order opened) read what `queued` holds for
 * them: bytes, or an errno for a failed recv; each send is answered by `answer`.
 */
function fakeSockets(answer: (fd: number, req: Uint8Array) => (Uint8Array | number)[]) {
  let next = 3;
  let errno = 0;
  const queued = new Map<number, (Uint8Array | number)[]>();
  const closed: number[] = [];
  /** sockaddr_nl.nl_groups each socket was bound with. */
  const groups = new Map<number, number>();
  const c: Libc = {
    socket: () => next++,
    bind(fd, addr) {
      groups.set(fd, new DataView(addr.buffer, addr.byteOffset).getUint32(8, true));
      return 0;
    },
    setsockopt: () => 0,
    setns: () => 0,
    send(fd, buf, len) {
      queued.set(fd, [...(queued.get(fd) ?? []), ...answer(fd, buf.slice(0, len))]);
      return len;
    },
    recv(fd, buf) {
      const d = queued.get(fd)?.shift();
      if (d === undefined) {
        errno = 11; // EAGAIN: nothing more without waiting
        return -1;
      }
      if (typeof d === "number") {
        errno = d;
        return -1;
      }
      buf.set(d);
      return d.length;
    },
    close(fd) {
      closed.push(fd);
      return 0;
    },
    errno: () => errno,
  };
  const push = (fd: number, ...items: (Uint8Array | number)[]) => queued.set(fd, [...(queued.get(fd) ?? []), ...items]);
  return { c, push, closed, groups };
}

/** NLMSG_ERROR answering the request: errno 0 is its ack. */
function ack(req: Uint8Array, errno: number): Uint8Array {
  const out = new Uint8Array(36);
  const v = new DataView(out.buffer);
  v.setUint32(0, 36, true);
  v.setUint16(4, 2, true);
  v.setUint32(8, new DataView(req.buffer, req.byteOffset).getUint32(8, true), true);
  v.setInt32(16, -errno, true);
  out.set(req.subarray(0, 16), 20);
  return out;
}

const raw = (m: Message): Uint8Array => {
  const out = new Uint8Array(16 + m.payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint16(4, m.type, true);
  v.setUint16(6, m.flags, true);
  out.set(m.payload, 16);
  return out;
};
const newFlow = raw(nfnl(CT_NEW, NLM_F_CREATE_EXCL, AF_INET, 0, [tuple(1, v4("10.1.0.5", "10.2.0.9"), ports(6, 1000, 80)), tuple(2, v4("10.2.0.9", "10.1.0.5"), ports(6, 80, 1000))]));
const dropped = (seq: number) => raw(nfnl(ULOG_PACKET, 0, AF_INET, 7, [nla(10, [...text("drop"), 0]), nla(12, n32(seq)), nla(9, ipv4Packet("10.0.0.1", "10.0.0.2", 17, l4ports(1, 2, 4)))]));

describe("openFlowEvents", () => {
  it("hands over both sources and counts the lost: one per conntrack overflow, nflog's gaps in its numbering", () => {
    const CT = 3;
    const LOG = 4;
    const { c, push, groups } = fakeSockets((_fd, req) => [ack(req, 0)]);
    const events = openFlowEvents({ netns: null, nflogGroup: 7, conntrack: true }, c);
    // NFNLGRP_CONNTRACK_NEW (1) and NFNLGRP_CONNTRACK_DESTROY (3) as bits 1 << (group - 1);
    // nflog sends to the socket that bound the group, which joins no multicast group.
    expect(groups).toEqual(new Map([[CT, 0b111], [LOG, 0]]));
    const seen = () => {
      const got = { conntrack: [] as ConntrackEvent[], dropped: [] as DroppedPacket[] };
      const { lost } = events.drain({ conntrack: (e) => got.conntrack.push(e), dropped: (p) => got.dropped.push(p) });
      return { lost, conntrack: got.conntrack.length, dropped: got.dropped.length };
    };
    push(CT, 105, newFlow); // ENOBUFS, then an event
    push(LOG, dropped(0), dropped(1), dropped(4)); // 2 and 3 lost
    expect(seen()).toEqual({ lost: 1 + 2, conntrack: 1, dropped: 3 });
    expect(seen()).toEqual({ lost: 0, conntrack: 0, dropped: 0 });
    // An overflow before the next packet: one at once, and the gap (5..8) counts the rest.
    push(LOG, 105);
    expect(seen()).toEqual({ lost: 1, conntrack: 0, dropped: 0 });
    push(LOG, dropped(9));
    expect(seen()).toEqual({ lost: 3, conntrack: 0, dropped: 1 });
    events.close();
  });

  it("says the nflog group is taken when the kernel refuses the bind with EBUSY, and closes what it opened", () => {
    const { c, closed } = fakeSockets((_fd, req) => [ack(req, 16)]);
    let err: unknown;
    try {
      openFlowEvents({ netns: null, nflogGroup: 7, conntrack: true }, c);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NflogGroupTaken);
    expect((err as Error).message).toBe("listen to nflog group 7: nflog group 7 is taken by another process: Device or resource busy (EBUSY)");
    expect(closed.sort()).toEqual([3, 4]);
  });
});
