import { describe, expect, it } from "vitest";
import {
  AF, Attrs, IFA, IFF, IFLA, IFLA_INFO, IFLA_VXLAN, NLA_F_NESTED, NLM_F, NLMSG, RTA, RTM, VETH_INFO, attrsAfter, attrsLength, be16, bytes, decode,
  encode, ifInfoWithAttrs, macBytes, nested, outcome, readIfInfo, str, u32, u8, type Message,
} from "./codec.js";
import { ipBytes, toAddr, toLink, toRoute } from "./rtnl.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** An NLMSG_ERROR for `seq`: the negative errno, then the request's header as the kernel echoes it. */
function errorMessage(seq: number, errno: number): Uint8Array {
  const out = new Uint8Array(16 + 4 + 16);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint16(4, NLMSG.ERROR, true);
  v.setUint32(8, seq, true);
  v.setInt32(16, -errno, true);
  return out;
}

function doneMessage(seq: number, errno = 0): Uint8Array {
  const out = new Uint8Array(20);
  const v = new DataView(out.buffer);
  v.setUint32(0, 20, true);
  v.setUint16(4, NLMSG.DONE, true);
  v.setUint16(6, NLM_F.MULTI, true);
  v.setUint32(8, seq, true);
  v.setInt32(16, -errno, true);
  return out;
}

const concat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));

describe("netlink codec", () => {
  it("encodes an address request byte for byte as `ip addr add 10.9.0.6/24 dev <index 2>` does", () => {
    const msg = encode({
      type: RTM.NEWADDR,
      flags: NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL,
      seq: 0x0102,
      body: { ifaddr: { family: AF.INET, prefixlen: 24, flags: 0, scope: 0, index: 2 } },
      attrs: [bytes(IFA.LOCAL, ipBytes(4, 0x0a090006n)), bytes(IFA.ADDRESS, ipBytes(4, 0x0a090006n))],
    });
    // Captured from iproute2 6.1 with strace (sequence number replaced).
    expect(hex(msg)).toBe(
      "28000000" + "1400" + "0506" + "02010000" + "00000000" + "02180000" + "02000000" + "08000200" + "0a090006" + "08000100" + "0a090006",
    );
  });

  it("pads every attribute to 4 bytes with zeros and marks nested ones", () => {
    const attrs = [str(IFLA.IFNAME, "eth0"), u8(1, 7), nested(IFLA.LINKINFO, [str(IFLA_INFO.KIND, "veth")])];
    // "eth0\0" is 4+5 = 9 -> 12; u8 is 4+1 = 5 -> 8; nested: 4 + (4+5 -> 12) = 16.
    expect(attrsLength(attrs)).toBe(12 + 8 + 16);
    const msg = encode({ type: RTM.NEWLINK, flags: NLM_F.REQUEST, seq: 1, body: { ifinfo: { family: 0, index: 0, flags: 0, change: 0 } }, attrs });
    expect(msg.length).toBe(16 + 16 + 36);
    const a = msg.subarray(32);
    expect(hex(a.subarray(0, 12))).toBe("09000300" + "65746830" + "00000000");
    expect(hex(a.subarray(12, 20))).toBe("05000100" + "07000000");
    const nestedType = new DataView(a.buffer, a.byteOffset + 22, 2).getUint16(0, true);
    expect(nestedType).toBe(IFLA.LINKINFO | NLA_F_NESTED);
  });

  it("decodes what it encodes: header, ifinfomsg, attributes by name, nested and a struct-led payload", () => {
    const peer = ifInfoWithAttrs({ family: 0, index: 0, flags: 0, change: 0 }, [str(IFLA.IFNAME, "eth0"), u32(IFLA.NET_NS_FD, 9)]);
    const msg = encode({
      type: RTM.NEWLINK,
      flags: NLM_F.REQUEST | NLM_F.CREATE,
      seq: 77,
      body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: IFF.UP, change: IFF.UP } },
      attrs: [
        str(IFLA.IFNAME, "veth0"), u32(IFLA.MTU, 1400), bytes(IFLA.ADDRESS, macBytes("0a:58:0a:01:00:05")),
        nested(IFLA.LINKINFO, [str(IFLA_INFO.KIND, "veth"), nested(IFLA_INFO.DATA, [bytes(VETH_INFO.PEER, peer)])]),
      ],
    });
    const [m, ...rest] = decode(msg);
    expect(rest).toEqual([]);
    expect(m).toMatchObject({ type: RTM.NEWLINK, flags: NLM_F.REQUEST | NLM_F.CREATE, seq: 77 });
    expect(readIfInfo(m!.payload)).toMatchObject({ flags: IFF.UP, change: IFF.UP });
    const a = attrsAfter(m!.payload, 16);
    expect(a.str(IFLA.IFNAME)).toBe("veth0");
    expect(a.u32(IFLA.MTU)).toBe(1400);
    const info = a.nested(IFLA.LINKINFO)!;
    expect(info.str(IFLA_INFO.KIND)).toBe("veth");
    const peerBytes = info.nested(IFLA_INFO.DATA)!.raw(VETH_INFO.PEER)!;
    const peerAttrs = attrsAfter(peerBytes, 16);
    expect(peerAttrs.str(IFLA.IFNAME)).toBe("eth0");
    expect(peerAttrs.u32(IFLA.NET_NS_FD)).toBe(9);
    // A reply built the same way reads back as the link asked for.
    expect(toLink(m!, String)).toMatchObject({ name: "veth0", mtu: 1400, mac: "0a:58:0a:01:00:05", up: true, lowerUp: false, kind: "veth" });
  });

  it("stops reading attributes at a truncated one instead of reading past the message", () => {
    const a = new Attrs(Uint8Array.from([8, 0, 3, 0, 0x61, 0x62, 0, 0, 40, 0, 4, 0, 1, 2]));
    expect(a.str(3)).toBe("ab");
    expect(a.has(4)).toBe(false);
  });

  it("reads a multi-part dump until NLMSG_DONE, across datagrams, ignoring other sequence numbers", () => {
    const link = (index: number, name: string, seq = 5) =>
      encode({ type: RTM.NEWLINK, flags: NLM_F.MULTI, seq, body: { ifinfo: { family: 0, index, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, name)] });
    const first = decode(concat(link(1, "lo"), link(2, "cni0"), link(9, "other", 4)));
    expect(first.map((m) => m.seq)).toEqual([5, 5, 4]);
    expect(outcome(first, 5)).toEqual({ done: false });
    const second = decode(concat(link(3, "veth1"), doneMessage(5)));
    expect(outcome(second, 5)).toEqual({ done: true, errno: 0 });
    const names = [...first, ...second].filter((m: Message) => m.seq === 5 && m.type === RTM.NEWLINK).map((m) => toLink(m, String).name);
    expect(names).toEqual(["lo", "cni0", "veth1"]);
  });

  it("a dump that fails reports the errno NLMSG_DONE carries", () => {
    expect(outcome(decode(doneMessage(3, 22)), 3)).toEqual({ done: true, errno: 22 });
  });

  it("NLMSG_ERROR: errno 0 is the ack, anything else the kernel's error", () => {
    expect(outcome(decode(errorMessage(8, 0)), 8)).toEqual({ done: true, errno: 0 });
    expect(outcome(decode(errorMessage(8, 17)), 8)).toEqual({ done: true, errno: 17 });
    expect(outcome(decode(errorMessage(8, 19)), 9)).toEqual({ done: false });
  });

  it("a single reply without NLM_F_MULTI (a GET of one object) ends the request", () => {
    const m = encode({ type: RTM.NEWLINK, flags: 0, seq: 2, body: { ifinfo: { family: 0, index: 4, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, "cni0")] });
    expect(outcome(decode(m), 2)).toEqual({ done: true, errno: 0 });
  });

  it("rejects a message whose length runs past the datagram", () => {
    const m = encode({ type: RTM.NEWLINK, flags: 0, seq: 2, body: { rtgen: 0 } });
    expect(() => decode(m.subarray(0, m.length - 1))).toThrow(/malformed netlink message/);
  });

  it("reads routes with their destination's length, the protocol, scope and table as numbers or names", () => {
    const msg = encode({
      type: RTM.NEWROUTE,
      flags: NLM_F.MULTI,
      seq: 1,
      body: { rtmsg: { family: AF.INET, dstLen: 0, srcLen: 0, tos: 0, table: 254, protocol: 3, scope: 0, type: 1, flags: 0 } },
      attrs: [u32(RTA.TABLE, 254), bytes(RTA.GATEWAY, ipBytes(4, 0x0a4d0001n)), u32(RTA.OIF, 3)],
    });
    expect(toRoute(decode(msg)[0]!, new Map([[3, "eth0"]]))).toEqual({
      family: 4, dst: "0.0.0.0/0", gateway: "10.77.0.1", dev: "eth0", protocol: 3, scope: "global", onlink: false, table: "main",
    });
    const host = encode({
      type: RTM.NEWROUTE,
      flags: NLM_F.MULTI,
      seq: 1,
      body: { rtmsg: { family: AF.INET6, dstLen: 128, srcLen: 0, tos: 0, table: 255, protocol: 2, scope: 254, type: 2, flags: 0 } },
      attrs: [bytes(RTA.DST, ipBytes(6, 0xfd000077000000000000000000000002n)), u32(RTA.OIF, 3)],
    });
    expect(toRoute(decode(host)[0]!, new Map([[3, "eth0"]]))).toEqual({
      family: 6, dst: "fd00:77::2/128", dev: "eth0", protocol: 2, scope: "host", onlink: false, table: 255,
    });
    const v6default = encode({
      type: RTM.NEWROUTE,
      flags: NLM_F.MULTI,
      seq: 1,
      body: { rtmsg: { family: AF.INET6, dstLen: 0, srcLen: 0, tos: 0, table: 254, protocol: 9, scope: 0, type: 1, flags: 0 } },
      attrs: [u32(RTA.OIF, 7), u32(RTA.PRIORITY, 1024), bytes(RTA.PREFSRC, ipBytes(6, 0xfd000077000000000000000000000002n))],
    });
    expect(toRoute(decode(v6default)[0]!, new Map())).toEqual({
      family: 6, dst: "::/0", dev: "7", protocol: 9, scope: "global", prefsrc: "fd00:77::2", metric: 1024, onlink: false, table: "main",
    });
  });

  it("reads addresses: family, address, prefix length, scope by name or else by number", () => {
    const addr = (family: number, ip: Uint8Array, prefixlen: number, scope: number) =>
      decode(encode({ type: RTM.NEWADDR, flags: NLM_F.MULTI, seq: 1, body: { ifaddr: { family, prefixlen, flags: 0, scope, index: 4 } }, attrs: [bytes(IFA.ADDRESS, ip), bytes(IFA.LOCAL, ip)] }))[0]!;
    expect(toAddr(addr(AF.INET, ipBytes(4, 0x0a010005n), 24, 0))).toEqual({ index: 4, address: { family: 4, ip: "10.1.0.5", prefixLength: 24, scope: "global" } });
    expect(toAddr(addr(AF.INET6, ipBytes(6, 0xfe800000000000000000000000000001n), 64, 253))).toEqual({ index: 4, address: { family: 6, ip: "fe80::1", prefixLength: 64, scope: "link" } });
    expect(toAddr(addr(AF.INET, ipBytes(4, 0x0a010005n), 32, 17)).address.scope).toBe(17);
  });

  it("reads a VXLAN device's settings and names the devices a link points at", () => {
    const msg = encode({
      type: RTM.NEWLINK,
      flags: 0,
      seq: 1,
      body: { ifinfo: { family: AF.UNSPEC, index: 6, flags: IFF.UP | IFF.LOWER_UP, change: 0 } },
      attrs: [
        str(IFLA.IFNAME, "twill.1"), u32(IFLA.MTU, 1450), bytes(IFLA.ADDRESS, macBytes("02:AA:00:00:00:01")), u32(IFLA.MASTER, 9), u8(IFLA.OPERSTATE, 2),
        nested(IFLA.LINKINFO, [
          str(IFLA_INFO.KIND, "vxlan"),
          nested(IFLA_INFO.DATA, [u32(IFLA_VXLAN.ID, 1), be16(IFLA_VXLAN.PORT, 4789), u32(IFLA_VXLAN.LINK, 2), bytes(IFLA_VXLAN.LOCAL6, ipBytes(6, 0xfd000077000000000000000000000011n)), u8(IFLA_VXLAN.LEARNING, 0)]),
          str(IFLA_INFO.SLAVE_KIND, "bridge"),
        ]),
      ],
    });
    const names = new Map([[2, "eth0"], [9, "br0"]]);
    expect(toLink(decode(msg)[0]!, (i) => names.get(i) ?? String(i))).toEqual({
      index: 6, name: "twill.1", up: true, lowerUp: true, mtu: 1450, operState: "down", mac: "02:aa:00:00:00:01", master: "br0",
      kind: "vxlan", portKind: "bridge", vxlan: { vni: 1, port: 4789, local: "fd00:77::11", underlay: "eth0", learning: false },
    });
    const veth = encode({
      type: RTM.NEWLINK,
      flags: 0,
      seq: 1,
      body: { ifinfo: { family: AF.UNSPEC, index: 3, flags: 0, change: 0 } },
      attrs: [str(IFLA.IFNAME, "veth1"), u32(IFLA.MTU, 1500), u32(IFLA.LINK, 2), nested(IFLA.LINKINFO, [str(IFLA_INFO.KIND, "veth")])],
    });
    expect(toLink(decode(veth)[0]!, String)).toEqual({ index: 3, name: "veth1", up: false, lowerUp: false, mtu: 1500, peerIndex: 2, kind: "veth" });
  });
});
