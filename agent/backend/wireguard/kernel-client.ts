import { resolveFamily } from "../../../shared/kernel/netlink/genl.js";
import { asKernelError } from "../../../shared/kernel/netlink/kernel.js";
import { Errno, errnoText, requireLibc, type Libc } from "../../../shared/kernel/netlink/libc.js";
import { Rtnl } from "../../../shared/kernel/netlink/rtnl.js";
import { NETLINK, NetlinkError, NetlinkSocket } from "../../../shared/kernel/netlink/socket.js";
import { KernelError } from "../../../shared/kernel/types.js";
import { DumpInterrupted, WG_GENL_NAME, decodeGetDevice, getDeviceRequest, setDeviceRequests } from "./genl.js";
import { isEmptySet, type SetRequest, type UapiDevice, type WireguardControl } from "./uapi.js";

/**
 * The kernel WireGuard device `device`, read and configured over generic netlink in one network
 * namespace (null: the caller's), with the surface of UapiClient. The family's number is asked
 * of nlctrl once; the device's index is looked up on every call, as a device made again has a
 * new one. Errors are KernelErrors naming the device and the operation, with the errno.
 */

/** How often a dump the device changed under is read again before giving up. */
const DUMP_ATTEMPTS = 3;

/** The kernel has no WireGuard: nlctrl knows no family "wireguard" (ENOENT). */
export class NoKernelWireguardError extends KernelError {
  constructor(op: string) {
    super(op, `the kernel has no WireGuard (generic netlink family "${WG_GENL_NAME}" not found)`, { errno: Errno.ENOENT });
    this.name = "NoKernelWireguardError";
  }
}

export class KernelWireguardClient implements WireguardControl {
  private genl: NetlinkSocket | null = null;
  private route: NetlinkSocket | null = null;
  private familyId: number | null = null;

  constructor(
    readonly device: string,
    private readonly c: Libc,
    private readonly netns: string | null = null,
  ) {}

  async get(): Promise<UapiDevice> {
    const op = `read WireGuard device "${this.device}"`;
    return this.call(op, (familyId, ifindex, sock) => {
      for (let attempt = 1; ; attempt++) {
        const messages = sock.request(getDeviceRequest(familyId, ifindex), op);
        try {
          return decodeGetDevice(messages);
        } catch (err) {
          if (!(err instanceof DumpInterrupted) || attempt >= DUMP_ATTEMPTS) throw err;
        }
      }
    });
  }

  /**
   * Applies a set request, in several messages when it is large, each acknowledged before the
   * next; an error stops there, and what the messages before it did stays applied.
   */
  async set(req: SetRequest): Promise<void> {
    if (isEmptySet(req)) return;
    const op = `configure WireGuard device "${this.device}"`;
    return this.call(op, (familyId, ifindex, sock) => {
      const requests = setDeviceRequests(familyId, ifindex, req);
      for (const [i, r] of requests.entries()) {
        const part = requests.length > 1 ? `${op} (message ${i + 1} of ${requests.length})` : op;
        try {
          sock.request(r, part);
        } catch (err) {
          throw this.asError(err, part, requests.length > 1 ? i + 1 : undefined);
        }
      }
    });
  }

  close(): void {
    this.genl?.close();
    this.genl = null;
    this.route?.close();
    this.route = null;
  }

  /** Runs `fn` with the family's number, the device's index and the generic netlink socket. */
  private async call<T>(op: string, fn: (familyId: number, ifindex: number, sock: NetlinkSocket) => T): Promise<T> {
    try {
      const sock = (this.genl ??= NetlinkSocket.open(this.c, this.netns, NETLINK.GENERIC));
      if (this.familyId === null) {
        const id = resolveFamily(sock, WG_GENL_NAME, op);
        if (id === null) throw new NoKernelWireguardError(op);
        this.familyId = id;
      }
      const ifindex = new Rtnl((this.route ??= NetlinkSocket.open(this.c, this.netns))).indexOf(this.device, op);
      return fn(this.familyId, ifindex, sock);
    } catch (err) {
      throw this.asError(err, op, undefined);
    }
  }

  /**
   * Any failure as a KernelError naming `op`: a refused value or a malformed answer too. A
   * device that is not the kernel's WireGuard (wireguard-go's TUN) is refused with EOPNOTSUPP.
   */
  private asError(err: unknown, op: string, step: number | undefined): KernelError {
    if (err instanceof NetlinkError && err.errno === Errno.EOPNOTSUPP) {
      return new KernelError(op, `"${this.device}" is not a kernel WireGuard device: ${errnoText(Errno.EOPNOTSUPP)}`, { errno: Errno.EOPNOTSUPP, ...(step ? { step } : {}) });
    }
    const e = asKernelError(err, op, step);
    return e instanceof KernelError ? e : new KernelError(op, e.message, step ? { step } : {});
  }
}

/** The kernel WireGuard device `device` in the namespace at `netns` (null: twilld's own). */
export const kernelWireguardClient = (device: string, netns: string | null = null): KernelWireguardClient =>
  new KernelWireguardClient(device, requireLibc("twilld"), netns);
