import { describe, expect, it } from "vitest";
import type { DatapathChange } from "../node-kernel.js";
import { control, fakeLibc, seqOf } from "../../../testkit/fake-libc.js";
import { AF, IFLA, IFLA_INFO, NLM_F, NLMSG, RTM, attrsAfter, bytes, decode, encode, nested, str, type Message, type Request } from "./codec.js";
import { countersOf } from "./nftables.js";
import type { Libc } from "./libc.js";
import { applyOrder, changeOp, deletedLinkName, netlinkNode, touchesDatapath, touchesTable } from "./node.js";
import { fdbRequest, neighborRequest, routeRequest, toRoute } from "./rtnl.js";
import { NetlinkSocket, NetlinkSubscription } from "./socket.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
/** A request as bytes with sequence number 0x6b15cf7c, as iproute2 sent it in the captures below. */
const bytesOf = (req: Omit<Request, "seq">): string => hex(encode({ ...req, seq: 0x6b15cf7c }));

// Captured from iproute2 6.1 with `strace -e write=3 -xx`, the device at ifindex 4.
describe("peer entry requests, byte for byte as iproute2 sends them", () => {
  it("route replace 10.244.2.0/24 via 10.244.2.0 dev vx onlink proto 150", () => {
    expect(bytesOf(routeRequest("replace", { dst: "10.244.2.0/24", via: "10.244.2.0", onlink: true }, 4, 150))).toBe(
      "34000000" + "1800" + "0505" + "7ccf156b" + "00000000" + "02180000" + "fe960001" + "04000000" + "08000100" + "0af40200" + "08000500" + "0af40200" + "08000400" + "04000000",
    );
  });

  it("route del 10.244.2.0/24 via 10.244.2.0 dev vx proto 150", () => {
    expect(bytesOf(routeRequest("del", { dst: "10.244.2.0/24", via: "10.244.2.0", onlink: true }, 4, 150))).toBe(
      "34000000" + "1900" + "0500" + "7ccf156b" + "00000000" + "02180000" + "fe96ff00" + "00000000" + "08000100" + "0af40200" + "08000500" + "0af40200" + "08000400" + "04000000",
    );
  });

  it("neigh replace 10.244.2.0 lladdr 02:00:00:00:00:02 dev vx nud permanent", () => {
    expect(bytesOf(neighborRequest("replace", { ip: "10.244.2.0", mac: "02:00:00:00:00:02" }, 4))).toBe(
      "30000000" + "1c00" + "0505" + "7ccf156b" + "00000000" + "02000000" + "04000000" + "80000000" + "08000100" + "0af40200" + "0a000200" + "020000000002" + "0000",
    );
  });

  it("bridge fdb replace 02:00:00:00:00:02 dev vx dst 10.77.0.2 self permanent", () => {
    expect(bytesOf(fdbRequest("replace", { mac: "02:00:00:00:00:02", dst: "10.77.0.2" }, 4))).toBe(
      "30000000" + "1c00" + "0505" + "7ccf156b" + "00000000" + "07000000" + "04000000" + "c0000200" + "0a000200" + "020000000002" + "0000" + "08000100" + "0a4d0002",
    );
  });

  it("reads a route back as it was written, onlink included (rtm_flags of its one next hop)", () => {
    const req = routeRequest("replace", { dst: "10.244.2.0/24", via: "10.244.2.0", onlink: true }, 4, 150);
    const reply = message(encode({ ...req, type: RTM.NEWROUTE, flags: 0, seq: 0 }));
    expect(toRoute(reply, new Map([[4, "twill.1"]]))).toMatchObject({ dst: "10.244.2.0/24", gateway: "10.244.2.0", dev: "twill.1", protocol: 150, onlink: true });
    const plain = message(encode({ ...routeRequest("replace", { dst: "10.244.3.0/24", via: "10.0.0.3", onlink: false }, 4, 150), seq: 0 }));
    expect(toRoute(plain, new Map())).toMatchObject({ onlink: false });
  });

  it("refuses a gateway of the other family instead of sending it", () => {
    expect(() => routeRequest("replace", { dst: "10.244.2.0/24", via: "fd00::1", onlink: false }, 4, 150)).toThrow(/not of the family/);
  });
});

const route = (dst: string) => ({ dst, via: "10.244.2.0", dev: "twill.1", onlink: true });

describe("applying peer changes", () => {
  it("orders FDB entries, stale routes, neighbors, then new routes", () => {
    const changes: DatapathChange[] = [
      { op: "replace", kind: "route", entry: route("10.244.2.0/24") },
      { op: "replace", kind: "neigh", entry: { ip: "10.244.2.0", mac: "02:00:00:00:00:02", dev: "twill.1" } },
      { op: "del", kind: "route", entry: route("10.244.9.0/24") },
      { op: "replace", kind: "fdb", entry: { mac: "02:00:00:00:00:02", dst: "10.77.0.2", dev: "twill.1" } },
    ];
    expect(applyOrder(changes).map((c) => `${c.op} ${c.kind}`)).toEqual(["replace fdb", "del route", "replace neigh", "replace route"]);
  });

  it("names each change's entry in its error", () => {
    expect(changeOp({ op: "del", kind: "fdb", entry: { mac: "02:00:00:00:00:02", dst: "10.77.0.2", dev: "twill.1" } })).toBe(
      "delete FDB entry 02:00:00:00:00:02 dst 10.77.0.2 dev twill.1",
    );
    expect(changeOp({ op: "replace", kind: "route", entry: route("10.244.2.0/24") })).toBe("set route 10.244.2.0/24 via 10.244.2.0 dev twill.1");
  });
});

/**
 * A libc whose socket acks each request of a send with the errno `errnoOf` gives it, and counts
 * sends; `lost(n)` drops request n's ack and makes the next empty recv fail with ENOBUFS, as
 * the kernel does when acks overflow the receive buffer.
 */
function ackingLibc(errnoOf: (n: number) => number, lost: (n: number) => boolean = () => false): Libc & { sends: number; sendSizes: number[] } {
  const queue: Uint8Array[] = [];
  let n = 0;
  let overflowed = false;
  let errno = 0;
  const c = {
    sends: 0,
    sendSizes: [] as number[],
    socket: () => 7,
    bind: () => 0,
    setsockopt: () => 0,
    send(_fd: number, buf: Uint8Array, len: number) {
      c.sends++;
      const view = new DataView(buf.buffer, buf.byteOffset, len);
      let requests = 0;
      for (let off = 0; off < len; ) {
        const mlen = view.getUint32(off, true);
        requests++;
        if (lost(n)) {
          n++;
          overflowed = true;
          off += mlen;
          continue;
        }
        const ack = new Uint8Array(36);
        const v = new DataView(ack.buffer);
        v.setUint32(0, 36, true);
        v.setUint16(4, NLMSG.ERROR, true);
        v.setUint32(8, view.getUint32(off + 8, true), true);
        v.setInt32(16, -errnoOf(n++), true);
        queue.push(ack);
        off += mlen;
      }
      c.sendSizes.push(requests);
      return len;
    },
    recv(_fd: number, buf: Uint8Array, _len: number, flags: number) {
      // Several acks to a datagram, as the kernel packs them.
      const parts = queue.splice(0, 3);
      if (parts.length === 0) {
        errno = overflowed ? 105 : 11;
        overflowed = false;
        if (errno === 11 && !(flags & 0x40)) throw new Error("a blocking recv with nothing queued would wait forever");
        return -1;
      }
      let at = 0;
      for (const p of parts) {
        buf.set(p, at);
        at += p.length;
      }
      return at;
    },
    setns: () => 0,
    close: () => 0,
    errno: () => errno,
  };
  return c;
}

describe("NetlinkSocket.requestMany", () => {
  it("returns each request's errno in order, one refusal keeping no other out", () => {
    const c = ackingLibc((n) => (n === 1 ? 17 : n === 3 ? 19 : 0));
    const sock = NetlinkSocket.open(c, null);
    const reqs = [0, 1, 2, 3, 4].map((i) => routeRequest("replace", { dst: `10.244.${i}.0/24`, via: `10.244.${i}.0`, onlink: true }, 4, 150));
    expect(sock.requestMany(reqs, "update routes")).toEqual([0, 17, 0, 19, 0]);
    expect(c.sends).toBe(1);
  });

  it("splits thousands of requests over several sends, each read to its last ack", () => {
    const c = ackingLibc((n) => (n === 2500 ? 22 : 0));
    const sock = NetlinkSocket.open(c, null);
    const reqs = Array.from({ length: 3000 }, (_, i) => routeRequest("replace", { dst: `10.${i >> 8}.${i & 255}.0/24`, via: "10.0.0.1", onlink: true }, 4, 150));
    const errnos = sock.requestMany(reqs, "update routes");
    expect(errnos).toHaveLength(3000);
    expect(errnos.filter((e) => e !== 0)).toEqual([22]);
    expect(errnos[2500]).toBe(22);
    // Never more requests to a send than their acks can queue.
    expect(Math.max(...c.sendSizes)).toBeLessThanOrEqual(64);
  });

  it("fails the requests whose acks were lost to an overflow, and goes on with the next send", () => {
    const c = ackingLibc(() => 0, (n) => n === 10);
    const sock = NetlinkSocket.open(c, null);
    const reqs = Array.from({ length: 100 }, (_, i) => routeRequest("replace", { dst: `10.0.${i}.0/24`, via: "10.0.0.1", onlink: true }, 4, 150));
    const errnos = sock.requestMany(reqs, "update routes");
    // The lost ack's request, and those whose acks were still queued when the loss was seen,
    // count as failed (ENOBUFS); the second send's are all acked.
    expect(errnos[10]).toBe(105);
    expect(errnos.slice(64)).toEqual(new Array(36).fill(0));
    expect(errnos.filter((e) => e !== 0 && e !== 105)).toEqual([]);
  });
});

describe("NetlinkSubscription", () => {
  const linkMsg = encode({ type: RTM.NEWLINK, flags: 0, seq: 0, body: { ifinfo: { family: 0, index: 3, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, "vx")] });
  function subscribed(recvs: (Uint8Array | number)[]): { sub: NetlinkSubscription; bound: Uint8Array[] } {
    let errno = 0;
    const bound: Uint8Array[] = [];
    const c: Libc = {
      socket: () => 7,
      bind: (_fd, addr) => (bound.push(addr.slice()), 0),
      setsockopt: () => 0,
      send: () => 0,
      recv(_fd, buf) {
        const next = recvs.shift() ?? 11; // EAGAIN: nothing more queued
        if (typeof next === "number") {
          errno = next;
          return -1;
        }
        buf.set(next);
        return next.length;
      },
      setns: () => 0,
      close: () => 0,
      errno: () => errno,
    };
    return { sub: NetlinkSubscription.open(c, null, 0, 0x455, "watch"), bound };
  }

  it("binds to the groups asked for and drains what is queued without waiting", () => {
    const { sub, bound } = subscribed([linkMsg, linkMsg]);
    expect(hex(bound[0]!)).toBe("1000" + "0000" + "00000000" + "55040000");
    const seen: Message[] = [];
    expect(sub.drain((m) => seen.push(m), "read")).toBe(false);
    expect(seen.map((m) => m.type)).toEqual([RTM.NEWLINK, RTM.NEWLINK]);
    expect(sub.drain(() => {}, "read")).toBe(false);
  });

  it("reports notifications lost to an overflow (ENOBUFS)", () => {
    const { sub } = subscribed([linkMsg, 105, linkMsg]);
    let n = 0;
    expect(sub.drain(() => n++, "read")).toBe(true);
    expect(n).toBe(2);
  });

  it("throws other errors, naming the operation", () => {
    const { sub } = subscribed([9]);
    expect(() => sub.drain(() => {}, "read link changes")).toThrow("read link changes: Bad file descriptor (EBADF)");
  });
});

const message = (bytes: Uint8Array): Message => {
  const v = new DataView(bytes.buffer);
  return { type: v.getUint16(4, true), flags: v.getUint16(6, true), seq: 0, pid: 0, payload: bytes.subarray(16) };
};

describe("which notifications move the datapath", () => {
  const neighOn = (index: number, family: number = AF.INET) =>
    message(encode({ type: RTM.NEWNEIGH, flags: 0, seq: 0, body: { ndmsg: { family, index, state: 0x80, flags: 0 } } }));

  it("counts every link, address and route event, and neighbors or FDB entries on the VTEP only", () => {
    const route = message(encode({ type: RTM.NEWROUTE, flags: 0, seq: 0, body: { rtmsg: { family: AF.INET, dstLen: 24, srcLen: 0, tos: 0, table: 254, protocol: 150, scope: 0, type: 1, flags: 0 } } }));
    const addr = message(encode({ type: RTM.DELADDR, flags: 0, seq: 0, body: { ifaddr: { family: AF.INET, prefixlen: 24, flags: 0, scope: 0, index: 2 } } }));
    expect(touchesDatapath(route, 5)).toBe(true);
    expect(touchesDatapath(addr, null)).toBe(true);
    expect(touchesDatapath(neighOn(5), 5)).toBe(true);
    expect(touchesDatapath(neighOn(5, AF.BRIDGE), 5)).toBe(true);
    // ARP and MAC learning on the pod bridge's ports.
    expect(touchesDatapath(neighOn(7), 5)).toBe(false);
    expect(touchesDatapath(neighOn(5), null)).toBe(false);
  });

  it("names the link a RTM_DELLINK removes", () => {
    const del = message(encode({ type: RTM.DELLINK, flags: 0, seq: 0, body: { ifinfo: { family: 0, index: 3, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, "twill.1")] }));
    expect(deletedLinkName(del)).toBe("twill.1");
    expect(deletedLinkName({ ...del, type: RTM.NEWLINK })).toBeNull();
  });
});

describe("which nftables notifications touch a table", () => {
  const nft = (msg: number, family: number, table: string) =>
    message(encode({ type: (10 << 8) | msg, flags: 0, seq: 0, body: { nfgen: { family } }, attrs: [str(1, table)] }));

  it("matches family and table name on any object's message, and never the end of a transaction", () => {
    expect(touchesTable(nft(6, 1, "twill"), "inet", "twill")).toBe(true); // NEWRULE
    expect(touchesTable(nft(0, 1, "twill"), "inet", "twill")).toBe(true); // NEWTABLE
    expect(touchesTable(nft(6, 1, "twill-policy"), "inet", "twill")).toBe(false);
    expect(touchesTable(nft(6, 2, "twill"), "inet", "twill")).toBe(false);
    expect(touchesTable(nft(15, 1, "twill"), "inet", "twill")).toBe(false); // NEWGEN
    expect(touchesTable({ ...nft(6, 1, "twill"), type: RTM.NEWROUTE }, "inet", "twill")).toBe(false);
  });
});

describe("nftables counters from a GETOBJ dump", () => {
  const counter = (name: string, type: number, packets: bigint) => {
    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigUint64(0, packets, false);
    const typ = new Uint8Array(4);
    new DataView(typ.buffer).setUint32(0, type, false);
    return message(encode({ type: (10 << 8) | 18, flags: 0, seq: 0, body: { nfgen: { family: 1 } }, attrs: [str(1, "twill-policy"), str(2, name), bytes(3, typ), nested(4, [bytes(2, data)])] }));
  };

  it("reads each counter's packets by name and skips other objects", () => {
    expect([...countersOf([counter("drop_0_in", 1, 7n), counter("drop_0_eg", 1, 0n), counter("quota", 2, 99n)])]).toEqual([["drop_0_in", 7], ["drop_0_eg", 0]]);
  });
});

describe("ensureWireguardLink", () => {
  /**
   * A kernel where link "twill-wg" is `have` (a kind, or none), and RTM_NEWLINK gets `create`'s
   * errno; `after` is the link's kind once a create was refused with EEXIST (another writer).
   */
  function scene(have: string | null, create: number, after: string | null = null) {
    let kind = have;
    const c = fakeLibc((req) => {
      const [m] = decode(req);
      const seq = seqOf(req);
      if (m!.type === RTM.NEWLINK) {
        if (create === 17) kind = after;
        return [control(NLMSG.ERROR, seq, create)];
      }
      if (kind === null) return [control(NLMSG.ERROR, seq, 19)];
      return [encode({ type: RTM.NEWLINK, flags: 0, seq, body: { ifinfo: { family: AF.UNSPEC, index: 9, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, "twill-wg"), nested(IFLA.LINKINFO, [str(IFLA_INFO.KIND, kind)])] })];
    });
    const creates = () => c.sent.map((b) => decode(b)[0]!).filter((m) => m.type === RTM.NEWLINK);
    return { kernel: netlinkNode(c, null), creates };
  }

  it("creates the device as `ip link add twill-wg mtu 1420 type wireguard` would, exclusively", async () => {
    const { kernel, creates } = scene(null, 0);
    expect(await kernel.ensureWireguardLink("twill-wg", 1420)).toBe("created");
    const [m] = creates();
    expect(m!.flags).toBe(NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL);
    const a = attrsAfter(m!.payload, 16);
    expect([a.str(IFLA.IFNAME), a.u32(IFLA.MTU), a.nested(IFLA.LINKINFO)?.str(IFLA_INFO.KIND)]).toEqual(["twill-wg", 1420, "wireguard"]);
  });

  it("answers unsupported when the kernel has no WireGuard device type (EOPNOTSUPP)", async () => {
    expect(await scene(null, 95).kernel.ensureWireguardLink("twill-wg", 1420)).toBe("unsupported");
  });

  it("keeps a WireGuard device that is there, also one another writer made in between", async () => {
    const there = scene("wireguard", 0);
    expect(await there.kernel.ensureWireguardLink("twill-wg", 1420)).toBe("exists");
    expect(there.creates()).toEqual([]);
    expect(await scene(null, 17, "wireguard").kernel.ensureWireguardLink("twill-wg", 1420)).toBe("exists");
  });

  it("refuses a link of another kind under the name (wireguard-go's TUN), and passes other errors on", async () => {
    await expect(scene("tun", 0).kernel.ensureWireguardLink("twill-wg", 1420)).rejects.toThrow('failed to create WireGuard device "twill-wg": the name is taken: "twill-wg" is a tun, not a WireGuard device');
    await expect(scene(null, 1).kernel.ensureWireguardLink("twill-wg", 1420)).rejects.toThrow('failed to create WireGuard device "twill-wg": Operation not permitted (EPERM)');
  });
});
