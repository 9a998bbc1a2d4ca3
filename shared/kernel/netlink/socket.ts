import { closeSync, openSync } from "../../fs-sync.js";
import { NLM_F, NLMSG, decode, encode, errorCode, outcome, type Message, type Request } from "./codec.js";
import { errnoText, type Libc } from "./libc.js";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
/** The netlink families used: rtnetlink, nfnetlink for nftables, generic netlink (WireGuard). */
export const NETLINK = { ROUTE: 0, NETFILTER: 12, GENERIC: 16 } as const;
const CLONE_NEWNET = 0x40000000;
const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const ENOBUFS = 105;
/**
 * How much one send of a batch carries. Each ack the kernel queues takes about 1 KiB of the
 * socket's receive buffer (212 KiB by default) whatever its size, and an ack that does not fit
 * is dropped: 64 requests to a send keep a batch's acks well inside it.
 */
const BATCH_SEND_BYTES = 16 * 1024;
const BATCH_SEND_REQUESTS = 64;
const ETIMEDOUT = 110;
/** How long a call waits for the kernel's answer before it fails (SO_RCVTIMEO): never forever. */
const ANSWER_TIMEOUT_S = 10;
const SOL_SOCKET = 1;
const SOL_NETLINK = 270;
const NETLINK_GET_STRICT_CHK = 12;
const SO_RCVTIMEO = 20;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
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
    const where = netns === null ? "" : ` in ${netns}`;
    const fd = inNamespace(c, netns, () => socketOrThrow(c, `open a netlink socket${where}`, protocol));
    limitWait(c, fd);
    return new NetlinkSocket(c, fd);
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
      if (n < 0) throw this.recvError(op);
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

  /**
   * A dump the kernel filters by the fields its request's header sets (an RTM_GETADDR of one
   * link: its ifa_index), not every object of the namespace for the caller to sift: the address
   * dump of a node with a hundred pods holds a link-local address of every pod's veth. The kernel
   * filters only with the socket's strict checking on (NETLINK_GET_STRICT_CHK, Linux 4.20),
   * which is turned on for this request alone, since it also makes the kernel refuse dumps of
   * other kinds whose headers carry what it does not filter by. Null where it cannot be turned
   * on: the caller sifts a whole dump.
   */
  strictDump(req: Omit<Request, "seq">, op: string): Message[] | null {
    const on = new Uint8Array(4);
    new DataView(on.buffer).setUint32(0, 1, true);
    if (this.c.setsockopt(this.fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, on, 4) !== 0) return null;
    try {
      return this.request(req, op);
    } finally {
      this.c.setsockopt(this.fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, new Uint8Array(4), 4);
    }
  }

  /**
   * Sends many change requests (each with NLM_F_ACK), several to a send, and returns each
   * one's errno in order (0: done). The kernel handles every message of a send on its own, so
   * one refused request keeps no other out, as `ip -force -batch` did, without a process.
   */
  requestMany(reqs: readonly Omit<Request, "seq">[], op: string): number[] {
    if (this.fd < 0) throw new Error(`${op}: netlink socket is closed`);
    const errnos: number[] = new Array(reqs.length).fill(-1);
    let i = 0;
    while (i < reqs.length) {
      const first = this.seq;
      const parts: Uint8Array[] = [];
      let size = 0;
      while (i < reqs.length && (parts.length === 0 || (size < BATCH_SEND_BYTES && parts.length < BATCH_SEND_REQUESTS))) {
        const bytes = encode({ ...reqs[i], seq: this.seq++ });
        parts.push(bytes);
        size += bytes.length;
        i++;
      }
      const out = new Uint8Array(size);
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      if (this.c.send(this.fd, out, out.length, 0) < 0) throw new NetlinkError(op, this.c.errno());
      const start = i - parts.length;
      let pending = parts.length;
      while (pending > 0) {
        const n = this.c.recv(this.fd, this.buf, this.buf.length, MSG_TRUNC);
        if (n < 0) {
          const err = this.recvError(op);
          if (err.errno !== ENOBUFS && err.errno !== ETIMEDOUT) throw err;
          // Acks were lost (or never came): what happened to those requests is unknown, so
          // they count as failed; later acks of this send are thrown away with the queue, so
          // the next send's acks are not taken for them.
          for (let k = start; k < i; k++) if (errnos[k] === -1) errnos[k] = err.errno;
          this.discardQueued();
          break;
        }
        if (n > this.buf.length) throw new Error(`${op}: a netlink reply of ${n} bytes did not fit the buffer`);
        for (const m of decode(this.buf.slice(0, n))) {
          const k = m.seq - first;
          if (m.type !== NLMSG.ERROR || k < 0 || k >= parts.length || errnos[start + k] !== -1) continue;
          errnos[start + k] = errorCode(m);
          pending--;
        }
      }
    }
    return errnos;
  }

  /** A failed recv as an error: a timeout (EAGAIN under SO_RCVTIMEO) says so. */
  private recvError(op: string): NetlinkError {
    const errno = this.c.errno();
    if (errno === EAGAIN) return new NetlinkError(op, ETIMEDOUT, `no answer from the kernel within ${ANSWER_TIMEOUT_S} s`);
    return new NetlinkError(op, errno);
  }

  /** Reads and drops whatever is queued on the socket, without waiting. */
  private discardQueued(): void {
    for (;;) {
      const n = this.c.recv(this.fd, this.buf, this.buf.length, MSG_TRUNC | MSG_DONTWAIT);
      if (n < 0 && this.c.errno() !== ENOBUFS) return;
    }
  }

  close(): void {
    if (this.fd >= 0) this.c.close(this.fd);
    this.fd = -1;
  }
}

/**
 * A socket that receives a netlink family's change notifications (its multicast groups) and
 * is read without blocking: whoever wants to know what changed since it last looked drains
 * it. A queue that overflowed (ENOBUFS: more changes than the socket buffer holds) is
 * reported, as then some notifications were lost.
 */
export class NetlinkSubscription {
  private readonly buf = new Uint8Array(RECV_BUFFER);
  private seq = 1;
  /** Notifications read while waiting for a configuration answer, for the next drain. */
  private held: Message[] = [];
  /** Overflows met while waiting for a configuration answer, for the next drain. */
  private heldLost = 0;

  private constructor(
    private readonly c: Libc,
    private fd: number,
  ) {}

  /**
   * Subscribed to `groups` (a bind() bitmask; 0 for a socket that gets its messages by unicast,
   * as nfnetlink_log sends them) of `protocol` in the namespace at `netns` (null: the caller's).
   * `receiveBuffer` (bytes) raises the socket's queue above the default (net.core.rmem_default,
   * about 200 KiB), for a family whose notifications come in bursts.
   */
  static open(c: Libc, netns: string | null, protocol: number, groups: number, op: string, receiveBuffer?: number): NetlinkSubscription {
    const fd = inNamespace(c, netns, () => socketOrThrow(c, op, protocol));
    // struct sockaddr_nl: family, pad, pid (0: the kernel picks), groups.
    const addr = new Uint8Array(12);
    const v = new DataView(addr.buffer);
    v.setUint16(0, AF_NETLINK, true);
    v.setUint32(8, groups >>> 0, true);
    if (c.bind(fd, addr, addr.length) !== 0) {
      const errno = c.errno();
      c.close(fd);
      throw new NetlinkError(op, errno);
    }
    limitWait(c, fd);
    if (receiveBuffer !== undefined) {
      // SO_RCVBUFFORCE passes net.core.rmem_max (a limit of the whole machine, not of the
      // namespace) with CAP_NET_ADMIN, which twilld has; SO_RCVBUF is capped by it. Best
      // effort: a smaller queue only loses notifications sooner, and drain says so.
      const size = new Uint8Array(4);
      new DataView(size.buffer).setInt32(0, receiveBuffer, true);
      if (c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) !== 0) c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
    }
    return new NetlinkSubscription(c, fd);
  }

  /**
   * Sends a request that sets the subscription up (nflog's group binding) and waits for its
   * ack; a kernel error throws NetlinkError naming `op`. Notifications that come in the
   * meantime are kept for the next drain.
   */
  configure(req: Omit<Request, "seq">, op: string): void {
    if (this.fd < 0) throw new Error(`${op}: netlink socket is closed`);
    const seq = this.seq++;
    const bytes = encode({ ...req, flags: req.flags | NLM_F.ACK, seq });
    if (this.c.send(this.fd, bytes, bytes.length, 0) < 0) throw new NetlinkError(op, this.c.errno());
    for (;;) {
      const n = this.c.recv(this.fd, this.buf, this.buf.length, MSG_TRUNC);
      if (n < 0) {
        const errno = this.c.errno();
        if (errno === ENOBUFS) {
          this.heldLost++;
          continue;
        }
        if (errno === EAGAIN) throw new NetlinkError(op, ETIMEDOUT, `no answer from the kernel within ${ANSWER_TIMEOUT_S} s`);
        throw new NetlinkError(op, errno);
      }
      if (n > this.buf.length) {
        this.heldLost++;
        continue;
      }
      const msgs = decode(this.buf.slice(0, n));
      const end = outcome(msgs, seq);
      this.held.push(...msgs.filter((m) => m.seq !== seq));
      if (!end.done) continue;
      if (end.errno !== 0) throw new NetlinkError(op, end.errno);
      return;
    }
  }

  /**
   * Hands every queued notification to `on`, without waiting for more; true when some were
   * lost to an overflow since the last drain.
   */
  drain(on: (m: Message) => void, op: string): boolean {
    return this.drainCounting(on, op) > 0;
  }

  /**
   * As drain, but says how often the queue overflowed (ENOBUFS) or a datagram did not fit
   * since the last drain: each time at least one notification was lost, and the kernel does
   * not say how many.
   */
  drainCounting(on: (m: Message) => void, op: string): number {
    if (this.fd < 0) throw new Error(`${op}: netlink socket is closed`);
    let lost = this.heldLost;
    this.heldLost = 0;
    const held = this.held;
    this.held = [];
    for (const m of held) on(m);
    for (;;) {
      const n = this.c.recv(this.fd, this.buf, this.buf.length, MSG_TRUNC | MSG_DONTWAIT);
      if (n < 0) {
        const errno = this.c.errno();
        if (errno === EAGAIN) return lost;
        if (errno === ENOBUFS) {
          lost++;
          continue;
        }
        throw new NetlinkError(op, errno);
      }
      if (n > this.buf.length) {
        lost++;
        continue;
      }
      for (const m of decode(this.buf.slice(0, n))) on(m);
    }
  }

  close(): void {
    if (this.fd >= 0) this.c.close(this.fd);
    this.fd = -1;
  }
}

/**
 * struct timeval { tv_sec, tv_usec } as SO_RCVTIMEO: a blocking read whose answer was lost
 * fails instead of blocking the process for good. Best effort: without it, reads block as
 * netlink sockets do.
 */
function limitWait(c: Libc, fd: number): void {
  const timeout = new Uint8Array(16);
  new DataView(timeout.buffer).setBigInt64(0, BigInt(ANSWER_TIMEOUT_S), true);
  c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout, timeout.length);
}

/**
 * Runs `fn` (which creates a socket) inside the namespace at `netns` (null: the caller's).
 * setns acts on the calling thread only, so the thread enters the namespace, creates the
 * socket and returns before anything else runs on it; the way back is taken on every path, and
 * a failed return is fatal, as the process would otherwise act on the wrong namespace.
 */
function inNamespace(c: Libc, netns: string | null, fn: () => number): number {
  if (netns === null) return fn();
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
    try {
      return fn();
    } finally {
      if (c.setns(home, CLONE_NEWNET) !== 0) {
        const errno = c.errno();
        process.stderr.write(`twill: cannot return to its own network namespace: ${errnoText(errno)}\n`);
        process.exit(70);
      }
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}

function socketOrThrow(c: Libc, op: string, protocol: number): number {
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw new NetlinkError(op, c.errno());
  return fd;
}
