import { closeSync, openSync } from "node:fs";
import { decode, encode, outcome, type Message, type Request } from "./codec.js";
import { errnoText, type Libc } from "./libc.js";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
/** The netlink families used: rtnetlink, and nfnetlink for nftables. */
export const NETLINK = { ROUTE: 0, NETFILTER: 12 } as const;
const CLONE_NEWNET = 0x40000000;
const MSG_TRUNC = 0x20;
/** Big enough for any dump part the kernel sends (it caps them at 32 KiB). */
const RECV_BUFFER = 64 * 1024;

/** A failed netlink request or socket call: the kernel's errno, and what was being done. */
export class NetlinkError extends Error {
  constructor(
    readonly op: string,
    readonly errno: number,
    /** What was missing or wrong, when the errno alone does not say ("no link \"cni0\""). */
    readonly detail?: string,
  ) {
    super(`${op}: ${detail ? `${detail}: ` : ""}${errnoText(errno)}`);
    this.name = "NetlinkError";
  }
}

/**
 * An rtnetlink socket bound to one network namespace for its whole life: a socket acts in the
 * namespace it was created in, whatever namespace its user later runs in. Calls block until
 * the kernel answers, which it does at once for rtnetlink.
 */
export class NetlinkSocket {
  private seq = 1;
  private readonly buf = new Uint8Array(RECV_BUFFER);

  private constructor(
    private readonly c: Libc,
    private fd: number,
  ) {}

  /**
   * A socket in the namespace at `netns` (null: the caller's). setns acts on the calling
   * thread only, so the thread enters the namespace, creates the socket and returns before
   * anything else runs on it; the way back is taken on every path, and a failed return is
   * fatal, as the process would otherwise act on the wrong namespace.
   */
  static open(c: Libc, netns: string | null, protocol: number = NETLINK.ROUTE): NetlinkSocket {
    if (netns === null) return new NetlinkSocket(c, socketOrThrow(c, "open a netlink socket", protocol));
    const home = openSync("/proc/thread-self/ns/net", "r");
    let target: number;
    try {
      target = openSync(netns, "r");
    } catch (err) {
      closeSync(home);
      throw err;
    }
    try {
      if (c.setns(target, CLONE_NEWNET) !== 0) throw new NetlinkError(`enter network namespace ${netns}`, c.errno());
      let fd: number;
      try {
        fd = socketOrThrow(c, `open a netlink socket in ${netns}`, protocol);
      } finally {
        if (c.setns(home, CLONE_NEWNET) !== 0) {
          const errno = c.errno();
          process.stderr.write(`twill: cannot return to its own network namespace: ${errnoText(errno)}\n`);
          process.exit(70);
        }
      }
      return new NetlinkSocket(c, fd);
    } finally {
      closeSync(target);
      closeSync(home);
    }
  }

  /**
   * Sends one request and reads until the kernel has answered it; returns the reply messages
   * (dump parts, or the object a GET asks for). A kernel error throws NetlinkError naming `op`.
   */
  request(req: Omit<Request, "seq">, op: string): Message[] {
    if (this.fd < 0) throw new Error(`${op}: netlink socket is closed`);
    const seq = this.seq++;
    const bytes = encode({ ...req, seq });
    if (this.c.send(this.fd, bytes, bytes.length, 0) < 0) throw new NetlinkError(op, this.c.errno());
    const replies: Message[] = [];
    for (;;) {
      const n = this.c.recv(this.fd, this.buf, this.buf.length, MSG_TRUNC);
      if (n < 0) throw new NetlinkError(op, this.c.errno());
      if (n > this.buf.length) throw new Error(`${op}: a netlink reply of ${n} bytes did not fit the buffer`);
      // Copied out: the buffer is reused by the next recv.
      const msgs = decode(this.buf.slice(0, n));
      const end = outcome(msgs, seq);
      replies.push(...msgs.filter((m) => m.seq === seq && m.type >= 16));
      if (!end.done) continue;
      if (end.errno !== 0) throw new NetlinkError(op, end.errno);
      return replies;
    }
  }

  close(): void {
    if (this.fd >= 0) this.c.close(this.fd);
    this.fd = -1;
  }
}

function socketOrThrow(c: Libc, op: string, protocol: number): number {
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw new NetlinkError(op, c.errno());
  return fd;
}
