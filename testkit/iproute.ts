import { basename, dirname } from "node:path";
import type { FdbSpec } from "../shared/kernel/fdb.js";
import type { NeighSpec } from "../shared/kernel/neigh.js";
import { normalizeDst, TWILL_ROUTE_PROTO, type RouteSpec } from "../shared/kernel/routes.js";
import { run, type Runner } from "../shared/kernel/exec.js";
import { KernelError } from "../shared/kernel/types.js";

/**
 * iproute2 as the tests' own view of the kernel: an observer independent of twill's netlink
 * code, and a way to set a scene up (`ip -batch`). Bound to a namespace: `ip -n NAME` for
 * named namespaces, `nsenter --net=PATH ip` for any other path.
 */

/** A link as `ip -json -details link show` prints it (twill's own view is shared/kernel/types.ts). */
export interface IpLink {
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

/** An address as `ip -json addr show` prints it, in its link's `addr_info`. */
export interface IpAddrInfo {
  family: "inet" | "inet6";
  local: string;
  prefixlen: number;
  scope?: string;
}

/** One link's addresses as `ip -json addr show` prints them. */
export interface IpLinkAddrs {
  ifindex: number;
  ifname: string;
  addr_info: IpAddrInfo[];
}

/**
 * A route as `ip -json route show` prints it: `default` for a destination of length 0, a host
 * route without its length, names for protocol, scope and table, `onlink` among the flags.
 */
export interface IpRouteEntry {
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

/** A batch line: `ip` arguments without the leading `ip`. */
export type BatchLine = readonly (string | number)[];

export class IpRoute {
  private readonly prefix: readonly string[];

  /** `netns`: null for the namespace this process is in, else a netns path. */
  constructor(
    readonly netns: string | null = null,
    private readonly runner: Runner = run,
  ) {
    this.prefix = ipPrefix(netns);
  }

  /** Runs `ip ARGS`, throws a KernelError naming `op` on failure. */
  async exec(args: BatchLine, op: string): Promise<string> {
    const r = await this.runner([...this.prefix, ...args.map(String)]);
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
    return r.stdout;
  }

  async json<T>(args: BatchLine, op: string): Promise<T> {
    const out = await this.exec(["-json", ...args], op);
    return (out.trim() === "" ? [] : JSON.parse(out)) as T;
  }

  /** Applies many changes in one `ip` process; stops at the first failing line unless `force`. */
  async batch(lines: readonly BatchLine[], op: string, force = false): Promise<void> {
    if (lines.length === 0) return;
    const input = lines.map(batchLine).join("\n") + "\n";
    const r = await this.runner([...this.prefix, ...(force ? ["-force"] : []), "-batch", "-"], { input });
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
  }

  /**
   * batch() with `-json -details`: change things and read them back in one process. Returns
   * what the `show` lines print, one parsed document per such line, in order.
   */
  async batchRead(lines: readonly BatchLine[], op: string): Promise<unknown[]> {
    if (lines.length === 0) return [];
    const input = lines.map(batchLine).join("\n") + "\n";
    const r = await this.runner([...this.prefix, "-json", "-details", "-batch", "-"], { input });
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
    return r.stdout.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as unknown);
  }

  /** Runs `bridge ARGS` (the FDB lives there, not in `ip`) in the same namespace. */
  async bridge(args: BatchLine, op: string): Promise<string> {
    return this.tool("bridge", args.map(String), op);
  }

  /** Runs `nft ARGS` in the same namespace, `input` on its stdin (for `nft -f -`). */
  nft(args: readonly string[], op: string, input?: string): Promise<string> {
    return this.tool("nft", args, op, input);
  }

  /** Named counters of table `inet TABLE`, name -> packets, as `nft -j` lists them; null when there is no such table. */
  async nftCounters(table: string): Promise<Map<string, number> | null> {
    let text: string;
    try {
      text = await this.nft(["-j", "list", "counters", "table", "inet", table], `read the counters of nftables table inet ${table}`);
    } catch (err) {
      if (err instanceof KernelError && err.notFound) return null;
      throw err;
    }
    return parseNftCounters(text);
  }

  /** Runs `ethtool ARGS` in the same namespace. */
  ethtool(args: readonly string[], op: string): Promise<string> {
    return this.tool("ethtool", args, op);
  }

  private async tool(tool: "bridge" | "nft" | "ethtool", args: readonly string[], op: string, input?: string): Promise<string> {
    const r = await this.runner([...toolPrefix(this.netns, tool), ...args], input === undefined ? {} : { input });
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
    return r.stdout;
  }

  /**
   * Bridged traffic of `name` through netfilter, as the agent's kernel sets it (for tests
   * that run the policy engine on iproute2); false when there is no such bridge.
   */
  async bridgeNetfilter(name: string): Promise<boolean> {
    try {
      await this.exec(["link", "set", "dev", name, "type", "bridge", "nf_call_iptables", 1, "nf_call_ip6tables", 1], `pass bridged traffic of "${name}" through netfilter`);
      return true;
    } catch (err) {
      if (err instanceof KernelError && err.notFound) return false;
      throw err;
    }
  }

  /** Deletes a link (a veth takes its peer with it); false when it was not there. */
  async deleteLink(name: string, what = "link"): Promise<boolean> {
    try {
      await this.exec(["link", "del", "dev", name], `delete ${what} "${name}"`);
      return true;
    } catch (err) {
      if (err instanceof KernelError && err.notFound) return false;
      throw err;
    }
  }

  /** All links, with details (`-details` gives linkinfo: the kind, vxlan settings, ...). */
  links(): Promise<IpLink[]> {
    return this.json<IpLink[]>(["-details", "link", "show"], "list links");
  }

  /** One link by name, or null when it does not exist. */
  async link(name: string): Promise<IpLink | null> {
    try {
      const [link] = await this.json<IpLink[]>(["-details", "link", "show", "dev", name], `read link "${name}"`);
      return link ?? null;
    } catch (err) {
      if (err instanceof KernelError && err.notFound) return null;
      throw err;
    }
  }

  async addrs(dev?: string): Promise<IpLinkAddrs[]> {
    const args = dev ? ["addr", "show", "dev", dev] : ["addr", "show"];
    try {
      return await this.json<IpLinkAddrs[]>(args, dev ? `read addresses of "${dev}"` : "list addresses");
    } catch (err) {
      if (dev && err instanceof KernelError && err.notFound) return [];
      throw err;
    }
  }

  /** Routes of one family (4 or 6), optionally filtered (`["proto", "200"]`, `["dev", "x"]`). */
  routes(family: 4 | 6, filter: readonly string[] = []): Promise<IpRouteEntry[]> {
    return this.json<IpRouteEntry[]>([`-${family}`, "route", "show", ...filter], `list IPv${family} routes`);
  }
}

/** Every route twill owns (its protocol) in the main table, both families, as iproute2 lists them. */
export async function listOwnedRoutes(ip: IpRoute): Promise<RouteSpec[]> {
  const filter = ["proto", String(TWILL_ROUTE_PROTO)];
  const [v4, v6] = await Promise.all([ip.routes(4, filter), ip.routes(6, filter)]);
  return [...v4, ...v6].map((r) => ({ dst: normalizeDst(r.dst), via: r.gateway ?? "", dev: r.dev ?? "", onlink: r.flags?.includes("onlink") ?? false }));
}

/** Unicast FDB entries with a remote destination on `dev`, as `bridge fdb` lists them; none when the device is missing. */
export async function listFdb(ip: IpRoute, dev: string): Promise<FdbSpec[]> {
  let out: string;
  try {
    out = await ip.bridge(["-json", "fdb", "show", "dev", dev], `list FDB of "${dev}"`);
  } catch (err) {
    if (err instanceof KernelError && err.notFound) return [];
    throw err;
  }
  const entries = (out.trim() ? JSON.parse(out) : []) as { mac: string; dst?: string }[];
  return entries.filter((e) => e.dst && e.mac !== "00:00:00:00:00:00").map((e) => ({ mac: e.mac.toLowerCase(), dst: e.dst!, dev }));
}

/** Permanent neighbors on `dev`, as `ip neigh` lists them; none when the device is missing. */
export async function listPermanentNeighbors(ip: IpRoute, dev: string): Promise<NeighSpec[]> {
  let entries: { dst: string; lladdr?: string }[];
  try {
    entries = await ip.json(["neigh", "show", "dev", dev, "nud", "permanent"], `list neighbors of "${dev}"`);
  } catch (err) {
    if (err instanceof KernelError && err.notFound) return [];
    throw err;
  }
  return entries.filter((n) => n.lladdr).map((n) => ({ ip: n.dst, mac: n.lladdr!.toLowerCase(), dev }));
}

/** `nft -j list counters` output, name -> packets. Pure. */
export function parseNftCounters(json: string): Map<string, number> {
  const out = new Map<string, number>();
  const doc = JSON.parse(json) as { nftables?: { counter?: { name: string; packets: number } }[] };
  for (const item of doc.nftables ?? []) if (item.counter) out.set(item.counter.name, item.counter.packets);
  return out;
}

/** The argv that runs `ip` inside `netns` (null: the current namespace). */
export function ipPrefix(netns: string | null): readonly string[] {
  if (netns === null) return ["ip"];
  const dir = dirname(netns);
  if (dir === "/var/run/netns" || dir === "/run/netns") return ["ip", "-n", basename(netns)];
  return ["nsenter", `--net=${netns}`, "ip"];
}

/** The argv that runs another network tool inside `netns`; `bridge` knows `-n`, nft and ethtool do not. */
export function toolPrefix(netns: string | null, tool: "bridge" | "nft" | "ethtool"): readonly string[] {
  if (netns === null) return [tool];
  const dir = dirname(netns);
  if (tool === "bridge" && (dir === "/var/run/netns" || dir === "/run/netns")) return [tool, "-n", basename(netns)];
  return ["nsenter", `--net=${netns}`, tool];
}

function batchLine(line: BatchLine): string {
  return line
    .map((a) => {
      const s = String(a);
      // iproute2 splits batch lines on white space and treats '#' as a comment; names that
      // reach here are validated, so such a character means a bug, not input to quote.
      if (s === "" || /[\s"'#\\]/.test(s)) throw new Error(`invalid ip batch argument ${JSON.stringify(s)}`);
      return s;
    })
    .join(" ");
}
