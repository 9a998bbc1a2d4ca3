import {
  AF, NLA_HDRLEN, NLMSG_HDRLEN, NLM_F, GENL_HDRLEN, attrsLength, bytes, encode, nested, u16, u32, u8, type Attr, type Attrs, type Message, type Request,
} from "../../../shared/kernel/netlink/codec.js";
import { genlMessage } from "../../../shared/kernel/netlink/genl.js";
import { formatIpBytes, ipBytes } from "../../../shared/kernel/netlink/rtnl.js";
import { formatCidr, parseCidr, parseCidrOrNull, parseIpOrNull } from "../../../shared/net/cidr.js";
import { PrivateKey } from "./keys.js";
import { formatEndpoint, type PeerChange, type SetRequest, type UapiDevice, type UapiPeer } from "./uapi.js";

/**
 * The kernel WireGuard device's configuration over generic netlink, family "wireguard" version
 * 1, as bytes and back with no I/O (docs/wireguard-design.md §2). The same SetRequest the UAPI
 * encoder takes becomes WG_CMD_SET_DEVICE messages, and the WG_CMD_GET_DEVICE dump becomes the
 * same UapiDevice uapi.ts's parseGet gives, so plan.ts drives either device unchanged.
 *
 * Numbers from include/uapi/linux/wireguard.h (WG_GENL_NAME "wireguard", WG_GENL_VERSION 1,
 * WG_KEY_LEN 32); genl.test.ts checks the bytes against the header's values on their own.
 */

export const WG_GENL_NAME = "wireguard";
export const WG_GENL_VERSION = 1;
const WG_KEY_LEN = 32;

/** enum wg_cmd. GET_DEVICE is dump-only. */
export const WG_CMD = { GET_DEVICE: 0, SET_DEVICE: 1 } as const;
/**
 * enum wgdevice_attribute. WGDEVICE_A_FLAGS would carry WGDEVICE_F_REPLACE_PEERS, which twill
 * never sends: it drops every peer, and every session with it, before adding the list.
 */
export const WGDEVICE_A = { IFINDEX: 1, IFNAME: 2, PRIVATE_KEY: 3, PUBLIC_KEY: 4, FLAGS: 5, LISTEN_PORT: 6, FWMARK: 7, PEERS: 8 } as const;
/** enum wgpeer_flag. */
export const WGPEER_F = { REMOVE_ME: 1 << 0, REPLACE_ALLOWEDIPS: 1 << 1, UPDATE_ONLY: 1 << 2 } as const;
/** enum wgpeer_attribute. RX_BYTES and TX_BYTES are u64, LAST_HANDSHAKE_TIME a struct __kernel_timespec. */
export const WGPEER_A = {
  PUBLIC_KEY: 1, PRESHARED_KEY: 2, FLAGS: 3, ENDPOINT: 4, PERSISTENT_KEEPALIVE_INTERVAL: 5, LAST_HANDSHAKE_TIME: 6, RX_BYTES: 7, TX_BYTES: 8,
  ALLOWEDIPS: 9, PROTOCOL_VERSION: 10,
} as const;
/** enum wgallowedip_attribute. */
export const WGALLOWEDIP_A = { FAMILY: 1, IPADDR: 2, CIDR_MASK: 3 } as const;

/**
 * The largest set message. An NLMSG_ERROR echoes the whole request and the socket reads
 * replies into 64 KiB (socket.ts), and wg(8) itself cuts its messages at 8 KiB: a larger peer
 * set goes in several messages, each applied (and acknowledged) before the next.
 */
export const SET_DEVICE_MAX_BYTES = 8 * 1024;

/** A peer's entries in the peers nest and an allowed IP's in its list are nests of type 0. */
const LIST_ITEM = 0;
const GENL_HEADER_BYTES = NLMSG_HDRLEN + GENL_HDRLEN;
/** A peer's entry: its own attributes and, when it has some, the allowed IPs given. */
const peerNest = (own: Attr[], ips: Attr[]): Attr => nested(LIST_ITEM, ips.length > 0 ? [...own, nested(WGPEER_A.ALLOWEDIPS, ips)] : own);

const keyBytes = (base64: string): Uint8Array => {
  const b = Buffer.from(base64, "base64");
  if (b.length !== WG_KEY_LEN) throw new Error(`refused WireGuard key of ${b.length} bytes: ${WG_KEY_LEN} expected`);
  return b;
};

function checkU16(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`refused WireGuard ${what} ${n}: 0..65535 expected`);
  return n;
}

/** `ip:port` or `[ip6]:port` (formatEndpoint's form) as a struct sockaddr_in or sockaddr_in6. */
export function sockaddr(endpoint: string): Uint8Array {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(endpoint);
  const ip = m ? parseIpOrNull(m[1] ?? m[2]) : null;
  if (!m || !ip || (m[1] !== undefined) !== (ip.family === 6)) throw new Error(`refused WireGuard endpoint ${JSON.stringify(endpoint)}: ip:port or [ip6]:port expected`);
  const port = checkU16("endpoint port", Number(m[3]));
  // sockaddr_in: family, port (network order), address, 8 zero bytes; sockaddr_in6: family,
  // port, flowinfo, address, scope id.
  const out = new Uint8Array(ip.family === 4 ? 16 : 28);
  const v = new DataView(out.buffer);
  v.setUint16(0, ip.family === 4 ? AF.INET : AF.INET6, true);
  v.setUint16(2, port, false);
  out.set(ipBytes(ip.family, ip.value), ip.family === 4 ? 4 : 8);
  return out;
}

/** One allowed IP: family, the network's address, prefix length. */
function allowedIp(cidr: string): Attr {
  const c = parseCidrOrNull(cidr);
  if (c === null) throw new Error(`refused WireGuard allowed IP ${JSON.stringify(cidr)}: not a CIDR`);
  return nested(LIST_ITEM, [
    u16(WGALLOWEDIP_A.FAMILY, c.family === 4 ? AF.INET : AF.INET6), bytes(WGALLOWEDIP_A.IPADDR, ipBytes(c.family, c.network)), u8(WGALLOWEDIP_A.CIDR_MASK, c.prefix),
  ]);
}

/**
 * A peer change's own attributes (all but its allowed IPs): as a peer's first part, or as the
 * continuation that only adds more of its allowed IPs. A continuation has no
 * REPLACE_ALLOWEDIPS (it would drop the part just sent) and is UPDATE_ONLY: the peer exists
 * after its first part, and one removed in between is not brought back half-made.
 */
function peerAttrs(change: PeerChange, continuation: boolean): Attr[] {
  const key = bytes(WGPEER_A.PUBLIC_KEY, keyBytes(change.publicKey));
  if (change.op === "remove") return [key, u32(WGPEER_A.FLAGS, WGPEER_F.REMOVE_ME)];
  if (continuation) return [key, u32(WGPEER_A.FLAGS, WGPEER_F.UPDATE_ONLY)];
  const flags = (change.updateOnly ? WGPEER_F.UPDATE_ONLY : 0) | (change.allowedIps !== undefined ? WGPEER_F.REPLACE_ALLOWEDIPS : 0);
  const attrs = [key];
  if (flags !== 0) attrs.push(u32(WGPEER_A.FLAGS, flags));
  if (change.endpoint !== undefined) attrs.push(bytes(WGPEER_A.ENDPOINT, sockaddr(change.endpoint)));
  if (change.persistentKeepalive !== undefined) attrs.push(u16(WGPEER_A.PERSISTENT_KEEPALIVE_INTERVAL, checkU16("persistent keepalive", change.persistentKeepalive)));
  return attrs;
}

/**
 * The WG_CMD_SET_DEVICE requests (each NLM_F_REQUEST | NLM_F_ACK, sequence numbers left to
 * the socket) that apply `req` to the device at `ifindex`, in order: the private key and port
 * in the first, then the peers, each whole where it fits, a new message started where the
 * next peer or allowed IP would take a message past `maxBytes`. Values are checked here and
 * refused before anything is sent.
 */
export function setDeviceRequests(familyId: number, ifindex: number, req: SetRequest, maxBytes: number = SET_DEVICE_MAX_BYTES): Omit<Request, "seq">[] {
  const messages: Attr[][] = [];
  let device: Attr[] = [u32(WGDEVICE_A.IFINDEX, ifindex)];
  if (req.privateKey !== undefined) device.push(bytes(WGDEVICE_A.PRIVATE_KEY, Buffer.from(req.privateKey.hex(), "hex")));
  if (req.listenPort !== undefined) device.push(u16(WGDEVICE_A.LISTEN_PORT, checkU16("listen port", req.listenPort)));
  let peers: Attr[] = [];
  const size = (extra: number): number => GENL_HEADER_BYTES + attrsLength(device) + NLA_HDRLEN + attrsLength(peers) + extra;
  const flush = (): void => {
    messages.push(peers.length > 0 ? [...device, nested(WGDEVICE_A.PEERS, peers)] : device);
    device = [u32(WGDEVICE_A.IFINDEX, ifindex)];
    peers = [];
  };

  for (const change of req.peers ?? []) {
    const ips = change.op === "set" ? (change.allowedIps ?? []).map(allowedIp) : [];
    let continuation = false;
    let next = 0;
    for (;;) {
      const own = peerAttrs(change, continuation);
      // The peer with its first remaining allowed IP (or none), then as many more as fit.
      let end = Math.min(next + 1, ips.length);
      let used = attrsLength([peerNest(own, ips.slice(next, end))]);
      if (size(used) > maxBytes) {
        // Alone in a message but for the device's index, and still too large.
        if (peers.length === 0 && device.length === 1) throw new Error(`a WireGuard peer does not fit a set message of ${maxBytes} bytes`);
        flush();
        continue;
      }
      for (; end < ips.length && size(used + attrsLength([ips[end]!])) <= maxBytes; end++) used += attrsLength([ips[end]!]);
      peers.push(peerNest(own, ips.slice(next, end)));
      next = end;
      if (next >= ips.length) break;
      flush();
      continuation = true;
    }
  }
  if (peers.length > 0 || messages.length === 0) flush();
  return messages.map((attrs) => ({
    type: familyId, flags: NLM_F.REQUEST | NLM_F.ACK, body: { genl: { cmd: WG_CMD.SET_DEVICE, version: WG_GENL_VERSION } }, attrs,
  }));
}

/** setDeviceRequests as bytes, numbered from `seq`. */
export const encodeSetDevice = (familyId: number, seq: number, ifindex: number, req: SetRequest, maxBytes?: number): Uint8Array[] =>
  setDeviceRequests(familyId, ifindex, req, maxBytes).map((r, i) => encode({ ...r, seq: seq + i }));

/** WG_CMD_GET_DEVICE for the device at `ifindex`: a dump, answered in several messages. */
export const getDeviceRequest = (familyId: number, ifindex: number): Omit<Request, "seq"> => ({
  type: familyId, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { genl: { cmd: WG_CMD.GET_DEVICE, version: WG_GENL_VERSION } }, attrs: [u32(WGDEVICE_A.IFINDEX, ifindex)],
});

export const encodeGetDevice = (familyId: number, seq: number, ifindex: number): Uint8Array => encode({ ...getDeviceRequest(familyId, ifindex), seq });

/** The device changed while it was being dumped (NLM_F_DUMP_INTR): its parts disagree; read it again. */
export class DumpInterrupted extends Error {
  constructor() {
    super("the WireGuard device changed while it was being read (NLM_F_DUMP_INTR)");
    this.name = "DumpInterrupted";
  }
}

/**
 * The device from its WG_CMD_GET_DEVICE dump (the NLM_F_MULTI messages, without NLMSG_DONE).
 * The device's own attributes come in the first message; the peers may continue over several,
 * and a peer whose allowed IPs did not fit is continued in the next message with its public
 * key and the rest of its allowed IPs: adjacent parts with the same key are one peer. What the
 * kernel sends is checked here; the preshared key is not read.
 */
export function decodeGetDevice(messages: readonly Message[]): UapiDevice {
  const device: UapiDevice = { privateKey: null, listenPort: 0, fwmark: 0, peers: [] };
  for (const m of messages) {
    if (m.flags & NLM_F.DUMP_INTR) throw new DumpInterrupted();
    const { header, attrs } = genlMessage(m);
    if (header.cmd !== WG_CMD.GET_DEVICE) throw new Error(`WireGuard dump: unexpected command ${header.cmd}`);
    const key = attrs.raw(WGDEVICE_A.PRIVATE_KEY);
    if (key !== undefined) device.privateKey = privateKeyOf(key);
    device.listenPort = attrs.u16(WGDEVICE_A.LISTEN_PORT) ?? device.listenPort;
    device.fwmark = attrs.u32(WGDEVICE_A.FWMARK) ?? device.fwmark;
    for (const [i, p] of (attrs.nested(WGDEVICE_A.PEERS)?.all(LIST_ITEM) ?? []).entries()) {
      const publicKey = publicKeyOf(p.raw(WGPEER_A.PUBLIC_KEY));
      const last = device.peers.at(-1);
      const peer = i === 0 && last?.publicKey === publicKey ? last : newPeer(device, publicKey);
      readPeer(p, peer);
    }
  }
  return device;
}

function newPeer(device: UapiDevice, publicKey: string): UapiPeer {
  const peer: UapiPeer = { publicKey, endpoint: null, allowedIps: [], persistentKeepalive: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 };
  device.peers.push(peer);
  return peer;
}

function readPeer(p: Attrs, peer: UapiPeer): void {
  const endpoint = p.raw(WGPEER_A.ENDPOINT);
  if (endpoint !== undefined) peer.endpoint = endpointOf(endpoint);
  peer.persistentKeepalive = p.u16(WGPEER_A.PERSISTENT_KEEPALIVE_INTERVAL) ?? peer.persistentKeepalive;
  const handshake = p.raw(WGPEER_A.LAST_HANDSHAKE_TIME);
  if (handshake !== undefined) {
    if (handshake.length < 16) throw new Error(`WireGuard dump: last handshake time of ${handshake.length} bytes, 16 expected`);
    // struct __kernel_timespec: tv_sec, tv_nsec, both s64.
    peer.lastHandshakeSec = Number(new DataView(handshake.buffer, handshake.byteOffset, 8).getBigInt64(0, true));
  }
  const rx = p.u64(WGPEER_A.RX_BYTES);
  if (rx !== undefined) peer.rxBytes = Number(rx);
  const tx = p.u64(WGPEER_A.TX_BYTES);
  if (tx !== undefined) peer.txBytes = Number(tx);
  for (const a of p.nested(WGPEER_A.ALLOWEDIPS)?.all(LIST_ITEM) ?? []) peer.allowedIps.push(allowedIpOf(a));
}

/** The device's private key; none (or the all-zero key the kernel never reports) reads as null. */
function privateKeyOf(raw: Uint8Array): PrivateKey | null {
  if (raw.length !== WG_KEY_LEN) throw new Error(`WireGuard dump: private key of ${raw.length} bytes, ${WG_KEY_LEN} expected`);
  return raw.every((b) => b === 0) ? null : PrivateKey.fromHex(Buffer.from(raw).toString("hex"));
}

function publicKeyOf(raw: Uint8Array | undefined): string {
  if (raw?.length !== WG_KEY_LEN) throw new Error(`WireGuard dump: a peer without a ${WG_KEY_LEN}-byte public key`);
  return Buffer.from(raw).toString("base64");
}

/** A struct sockaddr_in or sockaddr_in6 as formatEndpoint writes it. */
function endpointOf(raw: Uint8Array): string | null {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const family = raw.length >= 2 ? v.getUint16(0, true) : AF.UNSPEC;
  if (family === AF.INET && raw.length >= 8) return formatEndpoint(formatIpBytes(raw.subarray(4, 8)), v.getUint16(2, false));
  if (family === AF.INET6 && raw.length >= 24) return formatEndpoint(formatIpBytes(raw.subarray(8, 24)), v.getUint16(2, false));
  if (family === AF.UNSPEC) return null;
  throw new Error(`WireGuard dump: endpoint of address family ${family} (${raw.length} bytes)`);
}

/** An allowed IP as canonical CIDR text. */
function allowedIpOf(a: Attrs): string {
  const family = a.u16(WGALLOWEDIP_A.FAMILY);
  const ip = a.raw(WGALLOWEDIP_A.IPADDR);
  const prefix = a.u8(WGALLOWEDIP_A.CIDR_MASK);
  const width = family === AF.INET ? 4 : family === AF.INET6 ? 16 : 0;
  if (width === 0 || ip?.length !== width || prefix === undefined || prefix > width * 8) {
    throw new Error(`WireGuard dump: malformed allowed IP (family ${family}, ${ip?.length ?? 0} address bytes, prefix ${prefix})`);
  }
  return formatCidr(parseCidr(`${formatIpBytes(ip)}/${prefix}`));
}
