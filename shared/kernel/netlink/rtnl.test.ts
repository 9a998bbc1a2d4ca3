import { describe, expect, it } from "vitest";
import { control, fakeLibc, seqOf } from "../../../testkit/fake-libc.js";
import { NLMSG, RTM } from "./codec.js";
import { Rtnl, formatIpBytes } from "./rtnl.js";
import { formatIp } from "../../net/cidr.js";
import { NetlinkSocket } from "./socket.js";

const SOL_NETLINK = 270;
const NETLINK_GET_STRICT_CHK = 12;

/** An RTM_NEWADDR of an IPv4 address `a.b.c.d/prefix` on link `index`, as part `seq` of a dump. */
function newAddr(seq: number, index: number, ip: number[], prefix: number): Uint8Array {
  const out = new Uint8Array(16 + 8 + 8);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint16(4, RTM.NEWADDR, true);
  v.setUint16(6, 2, true); // NLM_F_MULTI
  v.setUint32(8, seq, true);
  out.set([2, prefix, 0, 0], 16); // AF_INET, prefix, flags, scope universe
  v.setInt32(20, index, true);
  v.setUint16(24, 8, true);
  v.setUint16(26, 2, true); // IFA_LOCAL
  out.set(ip, 28);
  return out;
}

/** A namespace whose address dump holds 10.0.0.1/24 on link 5 and 10.1.0.1/24 on link 6, filtered as asked. */
function namespace(strict: "works" | "refused") {
  const strictCalls: number[] = [];
  let strictOn = false;
  const c = fakeLibc((req) => {
    const seq = seqOf(req);
    const index = new DataView(req.buffer, req.byteOffset).getInt32(20, true);
    const all = [newAddr(seq, 5, [10, 0, 0, 1], 24), newAddr(seq, 6, [10, 1, 0, 1], 24)];
    // Without strict checking the kernel ignores the header's index, as it does.
    const picked = strictOn && index !== 0 ? all.filter((m) => new DataView(m.buffer).getInt32(20, true) === index) : all;
    return [...picked, control(NLMSG.DONE, seq, 0)];
  });
  c.setsockopt = (_fd, level, name, value) => {
    if (level !== SOL_NETLINK || name !== NETLINK_GET_STRICT_CHK) return 0;
    if (strict === "refused") return -1;
    strictOn = new DataView(value.buffer, value.byteOffset).getUint32(0, true) === 1;
    strictCalls.push(strictOn ? 1 : 0);
    return 0;
  };
  return { c, strictCalls, indexSent: () => new DataView(c.sent.at(-1)!.buffer).getInt32(20, true) };
}

describe("one link's addresses", () => {
  const bridge = { index: 5, name: "cni0", up: true, lowerUp: true, mtu: 1500 };

  it("are picked by the kernel, with strict checking on for that dump alone", () => {
    const ns = namespace("works");
    const nl = new Rtnl(NetlinkSocket.open(ns.c, null));
    expect(nl.addrsOf(bridge)).toEqual([{ family: 4, ip: "10.0.0.1", prefixLength: 24, scope: "global" }]);
    expect(ns.indexSent()).toBe(5);
    expect(ns.strictCalls).toEqual([1, 0]);
  });

  it("are sifted from the whole dump where strict checking cannot be turned on", () => {
    const ns = namespace("refused");
    const nl = new Rtnl(NetlinkSocket.open(ns.c, null));
    expect(nl.addrsOf(bridge)).toEqual([{ family: 4, ip: "10.0.0.1", prefixLength: 24, scope: "global" }]);
    expect(ns.indexSent()).toBe(0);
  });

  it("of several links come from one whole dump, strict checking untouched", () => {
    const ns = namespace("works");
    const nl = new Rtnl(NetlinkSocket.open(ns.c, null));
    const addrs = nl.addrs([bridge, { ...bridge, index: 6, name: "flannel.1" }]);
    expect(addrs.map((l) => [l.name, l.addresses.map((a) => a.ip)])).toEqual([["cni0", ["10.0.0.1"]], ["flannel.1", ["10.1.0.1"]]]);
    expect(ns.indexSent()).toBe(0);
    expect(ns.strictCalls).toEqual([]);
  });
});

describe("formatIpBytes", () => {
  it("writes an address's bytes as formatIp writes its number", () => {
    let seed = 7;
    const byte = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 256;
    for (let n = 0; n < 500; n++) {
      const b = Uint8Array.from({ length: n % 3 === 0 ? 4 : 16 }, () => (n % 5 === 0 ? byte() % 2 : byte()));
      let v = 0n;
      for (const x of b) v = (v << 8n) | BigInt(x);
      expect(formatIpBytes(b)).toBe(formatIp(b.length === 4 ? 4 : 6, v));
    }
    expect(formatIpBytes(Uint8Array.from([0xfe, 0x80, ...Array(13).fill(0), 1]))).toBe("fe80::1");
  });
});
