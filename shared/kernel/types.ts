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

/**
 * A network device as twill reads it. Devices it points at (master, underlay) are named, as
 * everything that decides on them speaks of names; a name that cannot be resolved in the
 * device's namespace is given as its index in decimal.
 */
export interface Link {
  index: number;
  name: string;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** The device has a carrier (IFF_LOWER_UP). */
  lowerUp: boolean;
  mtu: number;
  /** RFC 2863 operational state (IF_OPER_*), lower case: `up`, `down`, `lowerlayerdown`, `unknown`, ... */
  operState?: string;
  /** The hardware address, lower case (`02:00:00:00:00:01`). */
  mac?: string;
  /** The name of the device this one is a port of (a bridge). */
  master?: string;
  /** The device's kind (`bridge`, `veth`, `vxlan`); none for a plain one such as `lo`. */
  kind?: string;
  /** The kind of device this one is a port of (`bridge`). */
  portKind?: string;
  /**
   * IFLA_LINK: the index of the device this one is tied to, a veth's peer (an index in the
   * peer's namespace) or a VLAN's parent; none when that is the device itself.
   */
  peerIndex?: number;
  /** A VXLAN device's settings (kind `vxlan`). */
  vxlan?: VxlanSettings;
}

/** What a VXLAN device was created with; none of it can change in place. */
export interface VxlanSettings {
  vni: number;
  /** The UDP destination port. */
  port: number;
  /** The underlay address the tunnel is sourced from, either family; none when unset. */
  local?: string;
  /** The name of the underlay device; none when unset. */
  underlay?: string;
  /** Whether the device learns remote MACs from the packets it receives. */
  learning: boolean;
}

/**
 * Why `link` is not a device of `kind` (`"cni0" is a veth, not a bridge`), or null when it is:
 * a name taken by another kind of device must be named, never used.
 */
export function wrongKind(link: Link, kind: string, subject = `"${link.name}"`, want = `a ${kind}`): string | null {
  const have = link.kind;
  return have === kind ? null : `${subject} is a ${have ?? "device of unknown kind"}, not ${want}`;
}

/**
 * An address's or route's scope (rtm_scope, ifa_scope) by the names the rt_scopes table
 * gives them; a value with no name is the number itself.
 */
export type Scope = "global" | "site" | "link" | "host" | "nowhere" | number;

/** An address on a device. */
export interface Address {
  family: 4 | 6;
  /** The address itself, canonical text (`10.1.0.5`, `fd00::5`). */
  ip: string;
  prefixLength: number;
  scope: Scope;
}

/** One device's addresses. */
export interface LinkAddresses {
  index: number;
  name: string;
  addresses: Address[];
}

/**
 * A route (its type, unicast, local or broadcast, is not kept). `dst` always carries its
 * length, host bits clear, canonical (normalizeDst's rule): the default route is `0.0.0.0/0`
 * or `::/0`, a host route `10.1.2.3/32`, never `default` or a bare address.
 */
export interface Route {
  family: 4 | 6;
  dst: string;
  gateway?: string;
  /** The name of the output device. */
  dev?: string;
  /** rtm_protocol: who installed it (2 the kernel, 3 boot, twill's TWILL_ROUTE_PROTO). */
  protocol: number;
  scope: Scope;
  /** The preferred source address. */
  prefsrc?: string;
  /** The gateway is used as if on-link, whether or not a connected prefix holds it. */
  onlink: boolean;
  metric?: number;
  /** The routing table: the main one, or another by number (255 local, 253 default). */
  table: "main" | number;
}
