import { describe, expect, it } from "vitest";
import { AF, IFLA, NLM_F, NLMSG, RTM, decode, encode, str } from "./codec.js";
import { control, fakeLibc, seqOf } from "../../../testkit/fake-libc.js";
import { NetlinkError, NetlinkSocket } from "./socket.js";
import { toLink } from "./rtnl.js";

const link = (seq: number, index: number, name: string) =>
  encode({ type: RTM.NEWLINK, flags: NLM_F.MULTI, seq, body: { ifinfo: { family: 0, index, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, name)] });

const dumpLinks = { type: RTM.GETLINK, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { ifinfo: { family: AF.UNSPEC, index: 0, flags: 0, change: 0 } } };

describe("netlink socket", () => {
  it("reads a dump over several datagrams until NLMSG_DONE and skips stale answers to other requests", () => {
    const c = fakeLibc((req) => {
      const seq = seqOf(req);
      return [Uint8Array.from([...link(seq - 1, 9, "stale")]), Uint8Array.from([...link(seq, 1, "lo"), ...link(seq, 2, "cni0")]), Uint8Array.from([...link(seq, 3, "veth1"), ...control(NLMSG.DONE, seq, 0)])];
    });
    const sock = NetlinkSocket.open(c, null);
    const replies = sock.request(dumpLinks, "list links");
    expect(replies.map((m) => toLink(m, String).name)).toEqual(["lo", "cni0", "veth1"]);
    expect(decode(c.sent[0]!)[0]).toMatchObject({ type: RTM.GETLINK, flags: NLM_F.REQUEST | NLM_F.DUMP });
  });

  it("a request with an ack returns nothing on success and throws the kernel's errno, naming the operation", () => {
    let errno = 0;
    const c = fakeLibc((req) => [control(NLMSG.ERROR, seqOf(req), errno)]);
    const sock = NetlinkSocket.open(c, null);
    const add = { type: RTM.NEWLINK, flags: NLM_F.REQUEST | NLM_F.ACK, body: { ifinfo: { family: 0, index: 0, flags: 0, change: 0 } } };
    expect(sock.request(add, 'create bridge "cni0"')).toEqual([]);
    errno = 17;
    let err: unknown;
    try {
      sock.request(add, 'create bridge "cni0"');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as NetlinkError).errno).toBe(17);
    expect((err as Error).message).toBe('create bridge "cni0": File exists (EEXIST)');
    // Every request gets its own sequence number.
    expect(c.sent.map(seqOf)).toEqual([1, 2]);
  });

  it("a failed send or recv reports errno from libc", () => {
    const c = fakeLibc(() => []);
    c.send = () => -1;
    c.errno = () => 9;
    const sock = NetlinkSocket.open(c, null);
    expect(() => sock.request(dumpLinks, "list links")).toThrow("list links: Bad file descriptor (EBADF)");
  });
});
