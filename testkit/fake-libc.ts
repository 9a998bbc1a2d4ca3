import { NLMSG } from "../shared/kernel/netlink/codec.js";
import type { Libc } from "../shared/kernel/netlink/libc.js";

/**
 * A libc whose netlink socket answers each send with the datagrams `reply` gives for it, for
 * unit tests of code above NetlinkSocket: the bytes sent are kept in `sent`.
 */
export function fakeLibc(reply: (request: Uint8Array) => Uint8Array[]): Libc & { sent: Uint8Array[] } {
  const queue: Uint8Array[] = [];
  const sent: Uint8Array[] = [];
  return {
    sent,
    socket: () => 7,
    send(_fd, buf, len) {
      const req = buf.slice(0, len);
      sent.push(req);
      queue.push(...reply(req));
      return len;
    },
    recv(_fd, buf) {
      const d = queue.shift();
      if (!d) throw new Error("recv with nothing queued: the socket would block forever");
      buf.set(d);
      return d.length;
    },
    setns: () => 0,
    bind: () => 0,
    setsockopt: () => 0,
    close: () => 0,
    errno: () => 0,
  };
}

/** The sequence number of a request as sent. */
export const seqOf = (req: Uint8Array): number => new DataView(req.buffer, req.byteOffset).getUint32(8, true);

/** An NLMSG_ERROR (an ack when `errno` is 0) or NLMSG_DONE for `seq`, the errno negative as the kernel writes it. */
export function control(type: number, seq: number, errno: number): Uint8Array {
  const out = new Uint8Array(type === NLMSG.ERROR ? 36 : 20);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint16(4, type, true);
  v.setUint32(8, seq, true);
  v.setInt32(16, -errno, true);
  return out;
}
