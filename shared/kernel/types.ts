/**
 * The kernel objects twill reads, in one shape for the plugin and the agent, and the error
 * every kernel call throws: the operation that failed, the kernel's reason and errno.
 */

export class KernelError extends Error {
  /** The kernel's errno when the call that failed reports it (netlink does; nft and ethtool do not). */
  readonly errno: number | undefined;
  /** Of several steps applied in order, the 1-based one that failed. */
  private readonly step: number | undefined;

  constructor(
    /** What was being done, naming the object (`create VXLAN device "twill.1"`). */
    readonly op: string,
    /** Why it failed: the kernel's reason, or what a tool printed. */
    readonly detail: string,
    opts: { errno?: number; step?: number } = {},
  ) {
    super(`failed to ${op}: ${detail.trim() || "unknown error"}`);
    this.name = "KernelError";
    this.errno = opts.errno;
    this.step = opts.step;
  }
  /** The object is already there (EEXIST). */
  get exists(): boolean {
    if (this.errno !== undefined) return this.errno === EEXIST;
    return /File exists|already exists/i.test(this.detail);
  }
  /** Of several steps applied in order, the 1-based one that failed, else null. */
  get failedStep(): number | null {
    return this.step ?? null;
  }
  /** The reason alone, for an error that names its own object. */
  get reason(): string {
    return this.detail.split("\n").map((l) => l.trim()).filter((l) => l !== "").join("; ") || "unknown error";
  }
  /** The object is not there (ENODEV, ENOENT, ESRCH; a tool's "No such file or directory"). */
  get notFound(): boolean {
    if (this.errno !== undefined) return NOT_FOUND.has(this.errno);
    return /Cannot find device|No such device|No such file|No such process|does not exist|not found/i.test(this.detail);
  }
}

const EEXIST = 17;
/** ENOENT, ESRCH, ENODEV. */
const NOT_FOUND = new Set([2, 3, 19]);

export interface Link {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate?: string;
  address?: string;
  master?: string;
  link?: string;
  link_index?: number;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string };
}

/**
 * Why `link` is not a device of `kind` (`"cni0" is a veth, not a bridge`), or null when it is:
 * a name taken by another kind of device must be named, never used.
 */
export function wrongKind(link: Link, kind: string, subject = `"${link.ifname}"`, want = `a ${kind}`): string | null {
  const have = link.linkinfo?.info_kind;
  return have === kind ? null : `${subject} is a ${have ?? "device of unknown kind"}, not ${want}`;
}

export interface AddrInfo {
  family: "inet" | "inet6";
  local: string;
  prefixlen: number;
  scope?: string;
}

export interface LinkAddrs {
  ifindex: number;
  ifname: string;
  addr_info: AddrInfo[];
}

export interface RouteEntry {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  flags?: string[];
  metric?: number;
  mtu?: number;
  table?: string;
}

