import { basename, dirname } from "node:path";
import { BatchSession } from "./batch-session.js";
import { run, startFollower, type Interactive, type InteractiveHandlers, type Runner } from "./exec.js";

/**
 * iproute2 driven as a library: `ip -json` to read, `ip -batch -` to write many changes in one
 * process start. Node cannot switch network namespaces per thread, so a handle is bound to a
 * namespace and every call runs `ip` inside it: `ip -n NAME` for named namespaces (cheapest),
 * `nsenter --net=PATH ip` for any other path such as /proc/PID/ns/net. A long-lived user (the
 * agent) asks for `persistent`: reads (`-json`) and forced batches then go to `ip` and `bridge`
 * processes kept running (batch-session.ts), one per kind of command and set of global flags,
 * instead of a process each.
 */

export class KernelError extends Error {
  /** The kernel's errno when the call that failed reports it (netlink does, `ip` does not). */
  readonly errno: number | undefined;
  private readonly step: number | undefined;

  constructor(
    readonly op: string,
    readonly stderr: string,
    detail: { errno?: number; step?: number } = {},
  ) {
    super(`failed to ${op}: ${stderr.trim() || "unknown error"}`);
    this.name = "KernelError";
    this.errno = detail.errno;
    this.step = detail.step;
  }
  /** The object is already there (EEXIST). */
  get exists(): boolean {
    if (this.errno !== undefined) return this.errno === EEXIST;
    return /File exists|already exists/i.test(this.stderr);
  }
  /** In a batch: the 1-based line (or step) the kernel stopped at ("Command failed -:N"), else null. */
  get batchLine(): number | null {
    if (this.step !== undefined) return this.step;
    const m = /Command failed -:(\d+)/.exec(this.stderr);
    return m ? Number(m[1]) : null;
  }
  /** iproute2's message without batch bookkeeping, for an error that names its own object. */
  get reason(): string {
    return this.stderr.split("\n").filter((l) => l.trim() !== "" && !/^Command failed -:/.test(l)).join("; ") || "unknown error";
  }
  /** The object is not there (ENODEV, ENOENT, ESRCH, "Cannot find device"). */
  get notFound(): boolean {
    if (this.errno !== undefined) return NOT_FOUND.has(this.errno);
    return /Cannot find device|No such device|No such file|No such process|does not exist|not found/i.test(
      this.stderr,
    );
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

/** A batch line: `ip` arguments without the leading `ip`. */
export type BatchLine = readonly (string | number)[];

export interface IpRouteOptions {
  /** Keep `ip`/`bridge` processes running for reads and forced batches (close() ends them). */
  persistent?: boolean;
}

export class IpRoute {
  private readonly prefix: readonly string[];
  private readonly sessions = new Map<string, BatchSession>();

  /** `netns`: null for the namespace this process is in, else a netns path. */
  constructor(
    readonly netns: string | null = null,
    private readonly runner: Runner = run,
    private readonly opts: IpRouteOptions = {},
  ) {
    this.prefix = ipPrefix(netns);
  }

  /** How many persistent processes this handle keeps (started lazily, one per kind). */
  get persistentProcesses(): number {
    return this.sessions.size;
  }

  /** Ends the persistent processes; a later call starts them again. */
  close(): void {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }

  /**
   * The persistent process of `tool` with these global flags for one kind of command, when
   * this handle keeps them. One per kind: iproute2 keeps state between batch lines (after a
   * `link show`, `addr show` lists links without their addresses), so reads of links never
   * share a process with anything else.
   */
  private session(tool: "ip" | "bridge", flags: readonly string[], kind: string): BatchSession | null {
    if (!this.opts.persistent) return null;
    const key = [tool, kind, ...flags].join(" ");
    let s = this.sessions.get(key);
    if (!s) {
      const argv = [...(tool === "ip" ? this.prefix : toolPrefix(this.netns, "bridge")), ...flags, "-force", "-batch", "-"];
      // The marker: a listing filtered by a device that cannot exist fails, printing after all
      // else, and leaves iproute2's state as it was.
      s = new BatchSession({ argv, marker: (dev) => `${tool === "ip" ? "route" : "fdb"} show dev ${dev}` });
      this.sessions.set(key, s);
    }
    return s;
  }

  /** A `-json` read through a persistent process: its document, or a KernelError naming `op`. */
  private async sessionJson(tool: "ip" | "bridge", args: BatchLine, op: string): Promise<string | null> {
    const flags = leadingFlags(args);
    const command = args.slice(flags.length);
    const s = this.session(tool, flags.includes("-json") ? flags : ["-json", ...flags], String(command[0]));
    if (!s) return null;
    const r = await s.run([batchLine(command)]);
    if (r.failed) {
      if (!/Cannot find device|does not exist/.test(r.output)) this.dropSession(s);
      throw new KernelError(op, r.output);
    }
    // A process that printed a large dump keeps the memory it built it in (iproute2 and glibc
    // do not give it back): tens of MB after the 10000 routes of 5000 peers. Such reads are
    // rare (start-up, and every 30th resync), so that process ends and the next read starts one.
    if (r.output.length > LARGE_READ_BYTES) this.dropSession(s);
    return r.output;
  }

  /**
   * A forced batch of route, neighbor, address and FDB changes through a persistent process;
   * false when this handle keeps none or a line is of another kind (links change iproute2's
   * state for the lines after them).
   */
  private async sessionBatch(tool: "ip" | "bridge", lines: readonly BatchLine[], op: string): Promise<boolean> {
    if (!lines.every((l) => SESSION_BATCH_OBJECTS.has(String(l[0])))) return false;
    const s = this.session(tool, ["-json"], "batch");
    if (!s) return false;
    const r = await s.run(lines.map(batchLine));
    if (r.failed) {
      // A device replaced behind our back fails under its old index: the next batch starts afresh.
      this.dropSession(s);
      throw new KernelError(op, r.output);
    }
    // Like a large dump, a batch of thousands of lines leaves the process holding memory (40 MB
    // after the 10000 routes and neighbors of 5000 peers); peer events are a few lines each.
    if (lines.length > LARGE_BATCH_LINES) this.dropSession(s);
    return true;
  }

  /**
   * iproute2 remembers device names by index for its whole life: after a link is added or
   * deleted through this handle, the persistent processes start afresh.
   */
  private linksChanging(lines: readonly BatchLine[]): void {
    if (this.sessions.size === 0) return;
    if (lines.some((l) => l[0] === "link" && l[1] !== "show")) this.close();
  }

  private dropSession(s: BatchSession): void {
    s.close();
    for (const [key, v] of this.sessions) if (v === s) this.sessions.delete(key);
  }

  /** Runs `ip ARGS`, throws a KernelError naming `op` on failure. */
  async exec(args: BatchLine, op: string): Promise<string> {
    this.linksChanging([args]);
    const r = await this.runner([...this.prefix, ...args.map(String)]);
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
    return r.stdout;
  }

  async json<T>(args: BatchLine, op: string): Promise<T> {
    const out = (await this.sessionJson("ip", args, op)) ?? (await this.exec(["-json", ...args], op));
    return (out.trim() === "" ? [] : JSON.parse(out)) as T;
  }

  /**
   * Applies many changes in one `ip` process. Stops at the first failing line unless
   * `force`; the error names the operation and carries iproute2's message for that line.
   */
  async batch(lines: readonly BatchLine[], op: string, force = false): Promise<void> {
    if (lines.length === 0) return;
    if (force && (await this.sessionBatch("ip", lines, op))) return;
    this.linksChanging(lines);
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
    // Without -pretty every document is one line.
    return r.stdout.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as unknown);
  }

  /** Runs `bridge ARGS` (the FDB lives there, not in `ip`) in the same namespace. */
  async bridge(args: BatchLine, op: string): Promise<string> {
    if (args[0] === "-json") {
      const out = await this.sessionJson("bridge", args, op);
      if (out !== null) return out;
    }
    const r = await this.runner([...toolPrefix(this.netns, "bridge"), ...args.map(String)]);
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
    return r.stdout;
  }

  /** `bridge -batch -`: many FDB changes in one process, as batch() does for `ip`. */
  async bridgeBatch(lines: readonly BatchLine[], op: string, force = false): Promise<void> {
    if (lines.length === 0) return;
    if (force && (await this.sessionBatch("bridge", lines, op))) return;
    const input = lines.map(batchLine).join("\n") + "\n";
    const r = await this.runner([...toolPrefix(this.netns, "bridge"), ...(force ? ["-force"] : []), "-batch", "-"], { input });
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
  }

  /** Follows `ip monitor label OBJECTS` in the same namespace until the handle is closed. */
  monitor(objects: readonly string[], on: InteractiveHandlers): Promise<Interactive> {
    return startFollower([...this.prefix, "monitor", "label", ...objects], on);
  }

  /** Follows `nft monitor` (every nftables change) in the same namespace until the handle is closed. */
  nftMonitor(on: InteractiveHandlers): Promise<Interactive> {
    return startFollower([...toolPrefix(this.netns, "nft"), "monitor"], on);
  }

  /** Runs `nft ARGS` in the same namespace, `input` on its stdin (for `nft -f -`). */
  nft(args: readonly string[], op: string, input?: string): Promise<string> {
    return this.tool("nft", args, op, input);
  }

  /** Runs `ethtool ARGS` in the same namespace (a device's offload features). */
  ethtool(args: readonly string[], op: string): Promise<string> {
    return this.tool("ethtool", args, op);
  }

  private async tool(tool: "nft" | "ethtool", args: readonly string[], op: string, input?: string): Promise<string> {
    const r = await this.runner([...toolPrefix(this.netns, tool), ...args], input === undefined ? {} : { input });
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
    return r.stdout;
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
  links(): Promise<Link[]> {
    return this.json<Link[]>(["-details", "link", "show"], "list links");
  }

  /** One link by name, or null when it does not exist. */
  async link(name: string): Promise<Link | null> {
    try {
      const [link] = await this.json<Link[]>(["-details", "link", "show", "dev", name], `read link "${name}"`);
      return link ?? null;
    } catch (err) {
      if (err instanceof KernelError && err.notFound) return null;
      throw err;
    }
  }

  async addrs(dev?: string): Promise<LinkAddrs[]> {
    const args = dev ? ["addr", "show", "dev", dev] : ["addr", "show"];
    try {
      return await this.json<LinkAddrs[]>(args, dev ? `read addresses of "${dev}"` : "list addresses");
    } catch (err) {
      if (dev && err instanceof KernelError && err.notFound) return [];
      throw err;
    }
  }

  /** Routes of one family (4 or 6), optionally filtered (`["proto", "200"]`, `["dev", "x"]`). */
  routes(family: 4 | 6, filter: readonly string[] = []): Promise<RouteEntry[]> {
    return this.json<RouteEntry[]>([`-${family}`, "route", "show", ...filter], `list IPv${family} routes`);
  }
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

/** A read whose output is larger than this, or a batch longer than this, ends its persistent process. */
const LARGE_READ_BYTES = 256 * 1024;
const LARGE_BATCH_LINES = 1000;

/** What a batch through a persistent process may change. */
const SESSION_BATCH_OBJECTS = new Set(["route", "neigh", "addr", "fdb"]);

/** The global options a command line starts with (`-json`, `-details`, `-4`). */
function leadingFlags(args: BatchLine): string[] {
  const flags: string[] = [];
  for (const a of args) {
    if (!String(a).startsWith("-")) break;
    flags.push(String(a));
  }
  return flags;
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
