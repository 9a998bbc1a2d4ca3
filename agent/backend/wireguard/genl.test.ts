import { describe, expect, it } from "vitest";
import { AF, NLM_F, bytes, decode, encode, nested, str, u16, u32, u8, type Attr, type Message } from "../../../shared/kernel/netlink/codec.js";
import { keyToHex, PrivateKey } from "./keys.js";
import { DumpInterrupted, SET_DEVICE_MAX_BYTES, decodeGetDevice, encodeGetDevice, encodeSetDevice, sockaddr } from "./genl.js";
import { parseGet, type PeerChange, type SetRequest } from "./uapi.js";

/**
 * The numbers, written here from include/uapi/linux/wireguard.h and genetlink.h rather than
 * imported from genl.ts: a wrong number there fails the byte checks below.
 */
const H = {
  /** enum wg_cmd */
  WG_CMD_GET_DEVICE: 0, WG_CMD_SET_DEVICE: 1, WG_GENL_VERSION: 1,
  /** enum wgdevice_attribute */
  WGDEVICE_A_IFINDEX: 1, WGDEVICE_A_IFNAME: 2, WGDEVICE_A_PRIVATE_KEY: 3, WGDEVICE_A_PUBLIC_KEY: 4, WGDEVICE_A_FLAGS: 5, WGDEVICE_A_LISTEN_PORT: 6,
  WGDEVICE_A_FWMARK: 7, WGDEVICE_A_PEERS: 8,
  /** enum wgpeer_flag */
  WGPEER_F_REMOVE_ME: 1, WGPEER_F_REPLACE_ALLOWEDIPS: 2, WGPEER_F_UPDATE_ONLY: 4,
  /** enum wgpeer_attribute */
  WGPEER_A_PUBLIC_KEY: 1, WGPEER_A_PRESHARED_KEY: 2, WGPEER_A_FLAGS: 3, WGPEER_A_ENDPOINT: 4, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: 5,
  WGPEER_A_LAST_HANDSHAKE_TIME: 6, WGPEER_A_RX_BYTES: 7, WGPEER_A_TX_BYTES: 8, WGPEER_A_ALLOWEDIPS: 9, WGPEER_A_PROTOCOL_VERSION: 10,
  /** enum wgallowedip_attribute */
  WGALLOWEDIP_A_FAMILY: 1, WGALLOWEDIP_A_IPADDR: 2, WGALLOWEDIP_A_CIDR_MASK: 3,
  /** NLA_F_NESTED (netlink.h) */
  NESTED: 0x8000,
} as const;

const FAMILY = 0x1b;
const IFINDEX = 7;
const PRIVATE = PrivateKey.fromBase64("uKMQmcPwwALLwk5dyTlViB9b/ShebG3tBaeLwfPqA3A=", "test");
const PEER_A = "72Pdv6UxeV8vhOh3TIybQ8Nw/TfFoPiU0iDGRr0oSlM=";
const PEER_B = "/q15P3CQqn9u4zP/NwXYaG62rQZcAd9KRkaNyERJ/2Y=";
const PUBLIC = "ZnVKdW5rUHVibGljS2V5MDEyMzQ1Njc4OWFiY2RlZmc=";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const keyHex = (base64: string): string => keyToHex(base64);

interface Walked {
  type: number;
  nested: boolean;
  payload: Uint8Array;
}

/** The attributes of `b` in order, type and NLA_F_NESTED bit apart: the layout as sent. */
function walk(b: Uint8Array): Walked[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: Walked[] = [];
  for (let off = 0; off + 4 <= b.length; ) {
    const len = v.getUint16(off, true);
    const t = v.getUint16(off + 2, true);
    out.push({ type: t & 0x3fff, nested: (t & H.NESTED) !== 0, payload: b.subarray(off + 4, off + len) });
    off += (len + 3) & ~3;
  }
  return out;
}

const one = (attrs: Walked[], type: number): Walked => {
  const found = attrs.filter((a) => a.type === type);
  expect(found, `attribute ${type}`).toHaveLength(1);
  return found[0]!;
};
const le = (b: Uint8Array): number => (b.length === 1 ? b[0]! : b.length === 2 ? new DataView(b.buffer, b.byteOffset).getUint16(0, true) : new DataView(b.buffer, b.byteOffset).getUint32(0, true));

/** A request's messages: header, genlmsghdr, and its attributes walked. */
function messagesOf(datagrams: Uint8Array[]) {
  return datagrams.map((d) => {
    const [m, ...rest] = decode(d);
    expect(rest).toEqual([]);
    expect(m!.type).toBe(FAMILY);
    expect(m!.flags).toBe(NLM_F.REQUEST | NLM_F.ACK);
    expect([...m!.payload.subarray(0, 4)]).toEqual([H.WG_CMD_SET_DEVICE, H.WG_GENL_VERSION, 0, 0]);
    return { seq: m!.seq, length: d.length, attrs: walk(m!.payload.subarray(4)) };
  });
}

describe("WG_CMD_SET_DEVICE", () => {
  it("lays out key, port and two peers (one added with an IPv6 endpoint and two allowed IPs, one removed) as wireguard.h says", () => {
    const req: SetRequest = {
      privateKey: PRIVATE,
      listenPort: 51820,
      peers: [
        { op: "set", publicKey: PEER_A, endpoint: "[fd00:20::2]:51820", persistentKeepalive: 25, allowedIps: ["10.244.2.0/24", "fd10:244:2::/64"] },
        { op: "remove", publicKey: PEER_B },
      ],
    };
    const [msg, ...more] = messagesOf(encodeSetDevice(FAMILY, 42, IFINDEX, req));
    expect(more).toEqual([]);
    expect(msg!.seq).toBe(42);
    const device = msg!.attrs;
    expect(device.map((a) => [a.type, a.nested])).toEqual([
      [H.WGDEVICE_A_IFINDEX, false], [H.WGDEVICE_A_PRIVATE_KEY, false], [H.WGDEVICE_A_LISTEN_PORT, false], [H.WGDEVICE_A_PEERS, true],
    ]);
    expect(le(one(device, H.WGDEVICE_A_IFINDEX).payload)).toBe(IFINDEX);
    expect(hex(one(device, H.WGDEVICE_A_PRIVATE_KEY).payload)).toBe(PRIVATE.hex());
    const port = one(device, H.WGDEVICE_A_LISTEN_PORT).payload;
    expect(port.length).toBe(2);
    expect(le(port)).toBe(51820);
    // Never WGDEVICE_A_FLAGS: WGDEVICE_F_REPLACE_PEERS would drop every session.
    expect(device.some((a) => a.type === H.WGDEVICE_A_FLAGS)).toBe(false);

    const peers = walk(one(device, H.WGDEVICE_A_PEERS).payload);
    expect(peers.map((p) => [p.type, p.nested])).toEqual([[0, true], [0, true]]);
    const added = walk(peers[0]!.payload);
    expect(added.map((a) => [a.type, a.nested])).toEqual([
      [H.WGPEER_A_PUBLIC_KEY, false], [H.WGPEER_A_FLAGS, false], [H.WGPEER_A_ENDPOINT, false], [H.WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, false],
      [H.WGPEER_A_ALLOWEDIPS, true],
    ]);
    expect(hex(one(added, H.WGPEER_A_PUBLIC_KEY).payload)).toBe(keyHex(PEER_A));
    expect(le(one(added, H.WGPEER_A_FLAGS).payload)).toBe(H.WGPEER_F_REPLACE_ALLOWEDIPS);
    // struct sockaddr_in6: AF_INET6 (10) in host order, port 51820 (0xca6c) in network order,
    // flowinfo 0, the address, scope id 0.
    expect(hex(one(added, H.WGPEER_A_ENDPOINT).payload)).toBe("0a00" + "ca6c" + "00000000" + "fd000020000000000000000000000002" + "00000000");
    const keepalive = one(added, H.WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL).payload;
    expect([keepalive.length, le(keepalive)]).toEqual([2, 25]);
    const ips = walk(one(added, H.WGPEER_A_ALLOWEDIPS).payload);
    expect(ips.map((p) => [p.type, p.nested])).toEqual([[0, true], [0, true]]);
    expect(ips.map((ip) => walk(ip.payload).map((a) => [a.type, a.payload.length, hex(a.payload)]))).toEqual([
      [[H.WGALLOWEDIP_A_FAMILY, 2, "0200"], [H.WGALLOWEDIP_A_IPADDR, 4, "0af40200"], [H.WGALLOWEDIP_A_CIDR_MASK, 1, "18"]],
      [[H.WGALLOWEDIP_A_FAMILY, 2, "0a00"], [H.WGALLOWEDIP_A_IPADDR, 16, "fd100244000200000000000000000000"], [H.WGALLOWEDIP_A_CIDR_MASK, 1, "40"]],
    ]);

    const removed = walk(peers[1]!.payload);
    expect(removed.map((a) => a.type)).toEqual([H.WGPEER_A_PUBLIC_KEY, H.WGPEER_A_FLAGS]);
    expect(hex(one(removed, H.WGPEER_A_PUBLIC_KEY).payload)).toBe(keyHex(PEER_B));
    expect(le(one(removed, H.WGPEER_A_FLAGS).payload)).toBe(H.WGPEER_F_REMOVE_ME);
  });

  it("sends update_only alone as its flag, no flags for a plain add, and an IPv4 endpoint as a sockaddr_in", () => {
    const [msg] = messagesOf(
      encodeSetDevice(FAMILY, 1, IFINDEX, {
        peers: [
          { op: "set", publicKey: PEER_A, updateOnly: true, endpoint: "10.20.0.2:51820" },
          { op: "set", publicKey: PEER_B },
        ],
      }),
    );
    expect(msg!.attrs.map((a) => a.type)).toEqual([H.WGDEVICE_A_IFINDEX, H.WGDEVICE_A_PEERS]);
    const [a, b] = walk(one(msg!.attrs, H.WGDEVICE_A_PEERS).payload).map((p) => walk(p.payload));
    expect(le(one(a!, H.WGPEER_A_FLAGS).payload)).toBe(H.WGPEER_F_UPDATE_ONLY);
    expect(hex(one(a!, H.WGPEER_A_ENDPOINT).payload)).toBe("0200" + "ca6c" + "0a140002" + "0000000000000000");
    expect(b!.map((x) => x.type)).toEqual([H.WGPEER_A_PUBLIC_KEY]);
  });

  it("empties a peer's list with REPLACE_ALLOWEDIPS and no allowed IPs", () => {
    const [msg] = messagesOf(encodeSetDevice(FAMILY, 1, IFINDEX, { peers: [{ op: "set", publicKey: PEER_A, updateOnly: true, allowedIps: [] }] }));
    const [peer] = walk(one(msg!.attrs, H.WGDEVICE_A_PEERS).payload).map((p) => walk(p.payload));
    expect(peer!.map((x) => x.type)).toEqual([H.WGPEER_A_PUBLIC_KEY, H.WGPEER_A_FLAGS]);
    expect(le(one(peer!, H.WGPEER_A_FLAGS).payload)).toBe(H.WGPEER_F_UPDATE_ONLY | H.WGPEER_F_REPLACE_ALLOWEDIPS);
  });

  it("refuses a malformed endpoint, allowed IP or number before anything is sent", () => {
    const set = (change: Partial<Extract<PeerChange, { op: "set" }>>) => () => encodeSetDevice(FAMILY, 1, IFINDEX, { peers: [{ op: "set", publicKey: PEER_A, ...change }] });
    expect(set({ endpoint: "fd00::2:51820" })).toThrow(/endpoint/);
    expect(set({ endpoint: "[10.0.0.1]:51820" })).toThrow(/endpoint/);
    expect(set({ endpoint: "10.0.0.1:65536" })).toThrow(/65536/);
    expect(set({ allowedIps: ["10.244.2.0/33"] })).toThrow(/allowed IP/);
    expect(set({ persistentKeepalive: -1 })).toThrow(/keepalive/);
    expect(() => encodeSetDevice(FAMILY, 1, IFINDEX, { listenPort: 70000 })).toThrow(/listen port/);
    expect(() => sockaddr("nothere:1")).toThrow(/endpoint/);
  });
});

/** The peers a set's messages carry, put together again: what the kernel ends up applying. */
function reassemble(datagrams: Uint8Array[]) {
  const out: { key: string; flags: number; ips: string[]; endpoint: boolean }[] = [];
  for (const m of messagesOf(datagrams)) {
    for (const p of walk(m.attrs.find((a) => a.type === H.WGDEVICE_A_PEERS)?.payload ?? new Uint8Array())) {
      const attrs = walk(p.payload);
      const ips = walk(attrs.find((a) => a.type === H.WGPEER_A_ALLOWEDIPS)?.payload ?? new Uint8Array()).map((ip) => hex(walk(ip.payload)[1]!.payload));
      const flags = attrs.find((a) => a.type === H.WGPEER_A_FLAGS);
      out.push({ key: hex(attrs[0]!.payload), flags: flags ? le(flags.payload) : 0, ips, endpoint: attrs.some((a) => a.type === H.WGPEER_A_ENDPOINT) });
    }
  }
  return out;
}

describe("a set too large for one message", () => {
  const peerKey = (i: number): string => Buffer.alloc(32, i + 1).toString("base64");

  it("goes in several messages under the bound, key and port in the first only, peers whole and in order", () => {
    const peers: PeerChange[] = Array.from({ length: 100 }, (_, i) => ({
      op: "set", publicKey: peerKey(i), endpoint: `[fd00:20::${i + 1}]:51820`, persistentKeepalive: 0, allowedIps: [`10.244.${i}.0/24`, `fd10:244:${i}::/64`],
    }));
    const datagrams = encodeSetDevice(FAMILY, 100, IFINDEX, { privateKey: PRIVATE, listenPort: 51820, peers });
    const msgs = messagesOf(datagrams);
    expect(msgs.length).toBeGreaterThan(1);
    expect(msgs.map((m) => m.seq)).toEqual(msgs.map((_, i) => 100 + i));
    for (const m of msgs) expect(m.length).toBeLessThanOrEqual(SET_DEVICE_MAX_BYTES);
    expect(msgs.map((m) => m.attrs.some((a) => a.type === H.WGDEVICE_A_PRIVATE_KEY))).toEqual(msgs.map((_, i) => i === 0));
    expect(msgs.every((m) => le(one(m.attrs, H.WGDEVICE_A_IFINDEX).payload) === IFINDEX && !m.attrs.some((a) => a.type === H.WGDEVICE_A_FLAGS))).toBe(true);
    const got = reassemble(datagrams);
    expect(got.map((p) => p.key)).toEqual(peers.map((p) => keyHex(p.publicKey)));
    expect(got.every((p) => p.ips.length === 2 && p.flags === H.WGPEER_F_REPLACE_ALLOWEDIPS)).toBe(true);
  });

  it("continues a peer whose allowed IPs do not fit: the same key again, update-only, not replacing what the first part set", () => {
    const many = Array.from({ length: 40 }, (_, i) => `10.${i}.0.0/16`);
    const datagrams = encodeSetDevice(FAMILY, 1, IFINDEX, { peers: [{ op: "set", publicKey: PEER_A, endpoint: "10.20.0.2:51820", allowedIps: many }] }, 512);
    expect(datagrams.length).toBeGreaterThan(1);
    for (const d of datagrams) expect(d.length).toBeLessThanOrEqual(512);
    const parts = reassemble(datagrams);
    expect(parts.every((p) => p.key === keyHex(PEER_A))).toBe(true);
    expect(parts[0]).toMatchObject({ flags: H.WGPEER_F_REPLACE_ALLOWEDIPS, endpoint: true });
    for (const p of parts.slice(1)) expect(p).toMatchObject({ flags: H.WGPEER_F_UPDATE_ONLY, endpoint: false });
    expect(parts.flatMap((p) => p.ips)).toEqual(many.map((_, i) => hex(Uint8Array.of(10, i, 0, 0))));
  });

  it("sends key and port alone first when a peer does not fit beside them, and refuses a bound no peer fits in", () => {
    const req: SetRequest = { privateKey: PRIVATE, listenPort: 51820, peers: [{ op: "remove", publicKey: PEER_A }] };
    const msgs = messagesOf(encodeSetDevice(FAMILY, 1, IFINDEX, req, 100));
    expect(msgs.map((m) => m.attrs.map((a) => a.type))).toEqual([
      [H.WGDEVICE_A_IFINDEX, H.WGDEVICE_A_PRIVATE_KEY, H.WGDEVICE_A_LISTEN_PORT],
      [H.WGDEVICE_A_IFINDEX, H.WGDEVICE_A_PEERS],
    ]);
    expect(() => encodeSetDevice(FAMILY, 1, IFINDEX, { peers: [{ op: "remove", publicKey: PEER_A }] }, 40)).toThrow(/does not fit/);
  });
});

describe("WG_CMD_GET_DEVICE", () => {
  it("asks for a dump of the device by index", () => {
    const [m] = decode(encodeGetDevice(FAMILY, 9, IFINDEX));
    expect(m).toMatchObject({ type: FAMILY, flags: NLM_F.REQUEST | NLM_F.DUMP, seq: 9 });
    expect([...m!.payload.subarray(0, 4)]).toEqual([H.WG_CMD_GET_DEVICE, H.WG_GENL_VERSION, 0, 0]);
    expect(walk(m!.payload.subarray(4)).map((a) => [a.type, le(a.payload)])).toEqual([[H.WGDEVICE_A_IFINDEX, IFINDEX]]);
  });

  const le64 = (n: number): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
    return b;
  };
  /** struct __kernel_timespec */
  const timespec = (sec: number, nsec: number): Uint8Array => Uint8Array.from([...le64(sec), ...le64(nsec)]);
  const allowed = (family: number, addr: string, mask: number): Attr =>
    nested(0, [u16(H.WGALLOWEDIP_A_FAMILY, family), bytes(H.WGALLOWEDIP_A_IPADDR, Buffer.from(addr, "hex")), u8(H.WGALLOWEDIP_A_CIDR_MASK, mask)]);
  const key = (base64: string) => Buffer.from(base64, "base64");
  /** A dump part as the kernel sends it (wireguard's netlink.c: get_peer, wg_get_device_dump). */
  const part = (attrs: Attr[], flags: number = NLM_F.MULTI): Message =>
    decode(encode({ type: FAMILY, flags, seq: 3, body: { genl: { cmd: H.WG_CMD_GET_DEVICE, version: H.WG_GENL_VERSION } }, attrs }))[0]!;

  /** Two parts: peer A's allowed IPs did not all fit the first, so it opens the second with its key and the rest. */
  const DUMP = [
    part([
      u16(H.WGDEVICE_A_LISTEN_PORT, 51820), u32(H.WGDEVICE_A_FWMARK, 0), u32(H.WGDEVICE_A_IFINDEX, IFINDEX), str(H.WGDEVICE_A_IFNAME, "twill-wg"),
      bytes(H.WGDEVICE_A_PRIVATE_KEY, Buffer.from(PRIVATE.hex(), "hex")), bytes(H.WGDEVICE_A_PUBLIC_KEY, key(PUBLIC)),
      nested(H.WGDEVICE_A_PEERS, [
        nested(0, [
          bytes(H.WGPEER_A_PUBLIC_KEY, key(PEER_A)), bytes(H.WGPEER_A_PRESHARED_KEY, new Uint8Array(32)),
          bytes(H.WGPEER_A_LAST_HANDSHAKE_TIME, timespec(1796612711, 555669805)), u16(H.WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 0),
          bytes(H.WGPEER_A_TX_BYTES, le64(660)), bytes(H.WGPEER_A_RX_BYTES, le64(476)), u32(H.WGPEER_A_PROTOCOL_VERSION, 1),
          bytes(H.WGPEER_A_ENDPOINT, Buffer.from("0200" + "ca6c" + "0a140002" + "0000000000000000", "hex")),
          nested(H.WGPEER_A_ALLOWEDIPS, [allowed(AF.INET, "0af40200", 24)]),
        ]),
      ]),
    ]),
    part([
      str(H.WGDEVICE_A_IFNAME, "twill-wg"),
      nested(H.WGDEVICE_A_PEERS, [
        nested(0, [bytes(H.WGPEER_A_PUBLIC_KEY, key(PEER_A)), nested(H.WGPEER_A_ALLOWEDIPS, [allowed(AF.INET6, "fd100244000200000000000000000000", 64)])]),
        nested(0, [
          bytes(H.WGPEER_A_PUBLIC_KEY, key(PEER_B)), bytes(H.WGPEER_A_PRESHARED_KEY, new Uint8Array(32)), bytes(H.WGPEER_A_LAST_HANDSHAKE_TIME, timespec(0, 0)),
          u16(H.WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 25), bytes(H.WGPEER_A_TX_BYTES, le64(148)), bytes(H.WGPEER_A_RX_BYTES, le64(0)), u32(H.WGPEER_A_PROTOCOL_VERSION, 1),
          bytes(H.WGPEER_A_ENDPOINT, Buffer.from("0a00" + "ca6c" + "00000000" + "fd000020000000000000000000000003" + "00000000", "hex")),
        ]),
      ]),
    ]),
  ];

  /** The same device as wireguard-go answers `get=1` for it (uapi.test.ts's form). */
  const SAME_OVER_UAPI = [
    `private_key=${PRIVATE.hex()}`, "listen_port=51820",
    `public_key=${keyHex(PEER_A)}`, "endpoint=10.20.0.2:51820", "last_handshake_time_sec=1796612711", "last_handshake_time_nsec=555669805",
    "tx_bytes=660", "rx_bytes=476", "persistent_keepalive_interval=0", "allowed_ip=10.244.2.0/24", "allowed_ip=fd10:244:2::/64",
    `public_key=${keyHex(PEER_B)}`, "endpoint=[fd00:20::3]:51820", "last_handshake_time_sec=0", "last_handshake_time_nsec=0",
    "tx_bytes=148", "rx_bytes=0", "persistent_keepalive_interval=25",
    "errno=0", "", "",
  ].join("\n");

  it("reads a dump whose peer continues in the next message as the UAPI's get reads the same device", () => {
    const { privateKey, ...device } = decodeGetDevice(DUMP);
    const { privateKey: uapiKey, ...uapi } = parseGet(SAME_OVER_UAPI);
    expect(privateKey?.equals(PRIVATE)).toBe(true);
    expect(uapiKey?.equals(PRIVATE)).toBe(true);
    expect(device).toEqual(uapi);
    expect(device.peers.map((p) => p.allowedIps)).toEqual([["10.244.2.0/24", "fd10:244:2::/64"], []]);
  });

  it("reads a device without a key or peers as a fresh one", () => {
    expect(decodeGetDevice([part([u16(H.WGDEVICE_A_LISTEN_PORT, 35486), u32(H.WGDEVICE_A_IFINDEX, IFINDEX), nested(H.WGDEVICE_A_PEERS, [])])])).toEqual({
      privateKey: null, listenPort: 35486, fwmark: 0, peers: [],
    });
  });

  it("keeps two different peers apart across messages, and a peer's key seen again later as another entry", () => {
    const peer = (k: string) => nested(H.WGDEVICE_A_PEERS, [nested(0, [bytes(H.WGPEER_A_PUBLIC_KEY, key(k))])]);
    expect(decodeGetDevice([part([peer(PEER_A)]), part([peer(PEER_B)])]).peers.map((p) => p.publicKey)).toEqual([PEER_A, PEER_B]);
  });

  it("refuses a dump the device changed under, and malformed parts", () => {
    expect(() => decodeGetDevice([DUMP[0]!, part([], NLM_F.MULTI | NLM_F.DUMP_INTR)])).toThrow(DumpInterrupted);
    expect(() => decodeGetDevice([part([nested(H.WGDEVICE_A_PEERS, [nested(0, [bytes(H.WGPEER_A_PUBLIC_KEY, new Uint8Array(31))])])])])).toThrow(/public key/);
    expect(() => decodeGetDevice([part([bytes(H.WGDEVICE_A_PRIVATE_KEY, new Uint8Array(16))])])).toThrow(/private key of 16 bytes/);
    const badIp = nested(H.WGDEVICE_A_PEERS, [nested(0, [bytes(H.WGPEER_A_PUBLIC_KEY, key(PEER_A)), nested(H.WGPEER_A_ALLOWEDIPS, [allowed(AF.INET, "0af40200", 33)])])]);
    expect(() => decodeGetDevice([part([badIp])])).toThrow(/malformed allowed IP/);
  });
});
