import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bits, formatCidr, parseCidr, type Family } from "../../shared/net/cidr.js";
import { startDaemon, waitUntilReady, type Daemon } from "../../testkit/daemon.js";
import { inNetns } from "../../testkit/netns.js";
import type { Resources } from "./cleanup.js";
import { SEGMENTS, type Segment, type UnderlayFamily } from "./topology.js";

/**
 * The underlay router as a BGP speaker for the bgp backend's routers mode: FRR (zebra + bgpd)
 * in the router namespace, a different implementation than the nodes' BIRD. Any node on a
 * segment may peer (listen ranges, `remote-as external`: each node its own AS), one session
 * per family; the router installs what it learns into its namespace's kernel (zebra), so it
 * forwards pod traffic between segments, and passes it on to the other nodes with itself as
 * next hop (eBGP). Inbound it takes only pod subnets: prefixes inside the cluster CIDRs, of the
 * subnet length, so a node announcing anything else is refused here too (design: docs/bgp-design.md §3, §4).
 */

export const ROUTER_AS = 65000;
/** BGP's router ID on an IPv6-only underlay (TEST-NET-1, on no interface: only an identifier). */
const ROUTER_ID_V6_ONLY = "192.0.2.1";
/**
 * Graceful restart (RFC 4724), short for a testbed: `restart-time` is what the router tells the
 * nodes, how long they keep its routes while it restarts; `stalepath-time` how long it keeps a
 * restarted node's stale routes once that node is back, waiting for its End-of-RIB. How long it
 * keeps the routes of a node that is down is the restart time that node told it (bird.conf's).
 */
export const ROUTER_GRACEFUL_RESTART_S = 30;

const ZEBRA = "/usr/lib/frr/zebra";
const BGPD = "/usr/lib/frr/bgpd";
const VTYSH = "vtysh";
const START_WITHIN_MS = 20_000;

export interface FrrConfigInput {
  as: number;
  routerId: string;
  /** Per underlay family, the prefixes nodes may peer from (one peer group per family). */
  listen: Partial<Record<Family, readonly string[]>>;
  clusterCIDRs: readonly string[];
  /** Pod subnet length per cluster family. */
  subnetLen: Partial<Record<Family, number>>;
}

export interface FrrConfig {
  zebra: string;
  bgpd: string;
}

const FAMILIES: readonly Family[] = [4, 6];
const group = (f: Family): string => (f === 4 ? "nodes" : "nodes6");
const prefixList = (f: Family): string => `twill-pods${f}`;
const PREFER_GLOBAL = "twill-prefer-global";

/**
 * zebra.conf and bgpd.conf. A family is peered only when the underlay and the cluster both have
 * it, so every peer group has its family's prefix-list. Each node is also sent its own subnets
 * back (next hop: the node itself, which its BIRD drops as an invalid next hop): FRR 8.4 puts
 * all members of a peer group in one update group, and `sender-as-path-loop-detection` or
 * `solo` on the group did not change that.
 */
export function renderFrrConfig(input: FrrConfigInput): FrrConfig {
  const cluster = input.clusterCIDRs.map(parseCidr);
  const families = FAMILIES.filter((f) => input.listen[f]?.length && cluster.some((c) => c.family === f));
  const head = ["frr defaults datacenter", "hostname twill-router", "log stdout informational", "!"];
  const lists = families.flatMap((f) => {
    const len = input.subnetLen[f];
    const cmd = f === 4 ? "ip" : "ipv6";
    return cluster.filter((c) => c.family === f).map((c, k) => {
      if (len === undefined || len < c.prefix || len > bits(f)) throw new Error(`pod subnet length ${len} does not fit cluster CIDR ${formatCidr(c)}`);
      // FRR wants len < ge: a cluster CIDR of the subnet length is matched exactly.
      const range = len === c.prefix ? "" : ` ge ${len} le ${len}`;
      return `${cmd} prefix-list ${prefixList(f)} seq ${5 * (k + 1)} permit ${formatCidr(c)}${range}`;
    });
  });
  const bgp = [
    `router bgp ${input.as}`,
    ` bgp router-id ${input.routerId}`,
    // Nodes export their pod subnets with no policy on the router's side but the prefix-lists.
    " no bgp ebgp-requires-policy",
    // Each family's sessions carry that family alone: an IPv6 session offers no ipv4 unicast.
    " no bgp default ipv4-unicast",
    " bgp graceful-restart",
    ` bgp graceful-restart restart-time ${ROUTER_GRACEFUL_RESTART_S}`,
    ` bgp graceful-restart stalepath-time ${ROUTER_GRACEFUL_RESTART_S}`,
    ...families.flatMap((f) => [
      ` neighbor ${group(f)} peer-group`,
      ` neighbor ${group(f)} remote-as external`,
      ...(input.listen[f] ?? []).map((p) => ` bgp listen range ${formatCidr(parseCidr(p))} peer-group ${group(f)}`),
    ]),
    ...families.flatMap((f) => [
      ` address-family ipv${f} unicast`,
      `  neighbor ${group(f)} activate`,
      `  neighbor ${group(f)} prefix-list ${prefixList(f)} in`,
      // BIRD sends a global and a link-local next hop; zebra would install the link-local one.
      ...(f === 6 ? [`  neighbor ${group(f)} route-map ${PREFER_GLOBAL} in`] : []),
      " exit-address-family",
    ]),
    "exit",
  ];
  const routeMaps = families.includes(6) ? [`route-map ${PREFER_GLOBAL} permit 10`, " set ipv6 next-hop prefer-global", "exit", "!"] : [];
  return { zebra: `${head.join("\n")}\n`, bgpd: `${[...head, ...lists, "!", ...routeMaps, ...bgp].join("\n")}\n` };
}

export interface FrrRouterOptions {
  /** The router namespace (topology.ts's `<prefix>rt`). */
  ns: string;
  /** FRR's files (configs, vty sockets, pid files, logs); made here and given to user `frr`, whose parents it must be able to enter. */
  dir: string;
  family: UnderlayFamily;
  segments: readonly Segment[];
  clusterCIDRs: readonly string[];
  subnetLen: Partial<Record<Family, number>>;
  as?: number;
}

/** The config input for the testbed's router: its legs' segments, `.1` of the first as router ID. */
export function frrConfigInput(o: Omit<FrrRouterOptions, "ns" | "dir">): FrrConfigInput {
  const has = (f: Family) => o.family === "dual" || o.family === f;
  const first = o.segments[0];
  if (!first) throw new Error("the router needs a segment");
  return {
    as: o.as ?? ROUTER_AS,
    routerId: has(4) ? `${SEGMENTS[first].prefix}.1` : ROUTER_ID_V6_ONLY,
    listen: {
      ...(has(4) ? { 4: o.segments.map((s) => `${SEGMENTS[s].prefix}.0/24`) } : {}),
      ...(has(6) ? { 6: o.segments.map((s) => `${SEGMENTS[s].prefix6}:/64`) } : {}),
    },
    clusterCIDRs: o.clusterCIDRs,
    subnetLen: o.subnetLen,
  };
}

/** One BGP session as bgpd reports it (`show bgp summary json`). */
export interface FrrSession {
  family: Family;
  peer: string;
  remoteAs: number;
  state: string;
  /** Prefixes accepted from the peer (after the inbound prefix-list); 0 before the session is up. */
  pfxRcd: number;
  pfxSnt: number;
  uptimeMs: number;
}

/** A route of zebra's table (`show ip route bgp json`): `installed` when it is in the kernel. */
export interface FrrRoute {
  prefix: string;
  protocol: string;
  selected: boolean;
  installed: boolean;
  nexthops: { ip: string | null; dev: string | null }[];
}

export class FrrAnswerError extends Error {
  readonly code = "FRR_ANSWER";
  constructor(command: string, why: string) {
    super(`FRR's answer to "${command}" ${why}`);
    this.name = "FrrAnswerError";
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

function parseJson(text: string, command: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new FrrAnswerError(command, `is not JSON: ${text.slice(0, 200)}`);
  }
  if (!isObject(doc)) throw new FrrAnswerError(command, "is not a JSON object");
  return doc;
}

/** `show bgp summary json`: every session of ipv4Unicast and ipv6Unicast, sorted by family and peer. */
export function parseBgpSummary(text: string, command = "show bgp summary json"): FrrSession[] {
  const doc = parseJson(text, command);
  const sessions: FrrSession[] = [];
  for (const f of FAMILIES) {
    const af = doc[`ipv${f}Unicast`];
    if (af === undefined) continue;
    if (!isObject(af) || !isObject(af.peers)) throw new FrrAnswerError(command, `has no peers in ipv${f}Unicast`);
    for (const [peer, p] of Object.entries(af.peers)) {
      if (!isObject(p) || typeof p.remoteAs !== "number" || typeof p.state !== "string") throw new FrrAnswerError(command, `has a malformed peer ${peer}`);
      sessions.push({ family: f, peer, remoteAs: p.remoteAs, state: p.state, pfxRcd: num(p.pfxRcd), pfxSnt: num(p.pfxSnt), uptimeMs: num(p.peerUptimeMsec) });
    }
  }
  return sessions.sort((a, b) => a.family - b.family || a.peer.localeCompare(b.peer));
}

/** `show ip route bgp json` / `show ipv6 route bgp json`: every route, sorted by prefix. */
export function parseZebraRoutes(text: string, command = "show ip route bgp json"): FrrRoute[] {
  const doc = parseJson(text, command);
  const routes: FrrRoute[] = [];
  for (const [prefix, entries] of Object.entries(doc)) {
    if (!Array.isArray(entries)) throw new FrrAnswerError(command, `has no route list for ${prefix}`);
    for (const r of entries) {
      if (!isObject(r) || !Array.isArray(r.nexthops)) throw new FrrAnswerError(command, `has a malformed route for ${prefix}`);
      routes.push({
        prefix,
        protocol: str(r.protocol) ?? "",
        selected: r.selected === true,
        installed: r.installed === true,
        nexthops: r.nexthops.filter(isObject).map((n) => ({ ip: str(n.ip), dev: str(n.interfaceName) })),
      });
    }
  }
  return routes.sort((a, b) => a.prefix.localeCompare(b.prefix));
}

/** A bad line in a config file, as FRR's dry run (`-C`) logs it: FRR skips the line, starts anyway and exits 0. */
const CONFIG_ERROR = /\[EC \d+\][^\n]*config line \d+[^\n]*/g;

/** Fails on any line of zebra.conf or bgpd.conf in `dir` that FRR would skip (a filter silently missing). */
export async function checkFrrConfig(ns: string, dir: string): Promise<void> {
  for (const [name, bin] of [["zebra", ZEBRA], ["bgpd", BGPD]] as const) {
    const args = ["-C", "-f", join(dir, `${name}.conf`), "--vty_socket", dir, "-i", join(dir, `${name}-check.pid`), "-z", join(dir, "check.api"), "-A", "127.0.0.1", "-P", "0"];
    const r = await inNetns(ns, [bin, ...args, ...(name === "bgpd" ? ["-Z"] : [])]);
    const errors = `${String(r.stdout)}\n${String(r.stderr)}`.match(CONFIG_ERROR);
    if (r.exitCode !== 0 || errors) throw new Error(`${name}.conf in ${dir} is refused: ${errors?.join("; ") ?? `exit ${r.exitCode}: ${String(r.stderr)}`}`);
  }
}

export interface FrrRouter {
  /** zebra's and bgpd's PIDs (also in the Resources given to startFrrRouter until stop()). */
  pids: number[];
  config: FrrConfig;
  sessions(): Promise<FrrSession[]>;
  /** zebra's BGP routes of one family. */
  routes(family: Family): Promise<FrrRoute[]>;
  /** A vtysh command to one daemon; its output (throws when vtysh fails). */
  vtysh(daemon: "zebra" | "bgpd", command: string): Promise<string>;
  logTail(): string;
  /** Stops bgpd, then zebra (which takes its kernel routes with it), by PID; waits for both. */
  stop(): Promise<void>;
}

/**
 * Starts zebra, then bgpd, in the foreground inside `o.ns`, with no TCP vty (`-P 0`): vtysh
 * reaches them through the unix sockets in `o.dir`. Their PIDs go into `res.pids` at once, so
 * the testbed's cleanup kills them whatever happens after.
 */
export async function startFrrRouter(o: FrrRouterOptions, res: Resources): Promise<FrrRouter> {
  const config = renderFrrConfig(frrConfigInput(o));
  mkdirSync(o.dir, { recursive: true });
  writeFileSync(join(o.dir, "zebra.conf"), config.zebra);
  writeFileSync(join(o.dir, "bgpd.conf"), config.bgpd);
  // The daemons drop to user frr before reading their config and making their sockets.
  execFileSync("chown", ["-R", "frr:frr", o.dir]);
  await checkFrrConfig(o.ns, o.dir);
  const zserv = join(o.dir, "zserv.api");
  const daemons: Daemon[] = [];
  const start = (name: "zebra" | "bgpd", bin: string): Daemon => {
    const args = ["-f", join(o.dir, `${name}.conf`), "-i", join(o.dir, `${name}.pid`), "-z", zserv, "--vty_socket", o.dir, "-A", "127.0.0.1", "-P", "0"];
    // `ip netns exec` execs the daemon: the PID stays the daemon's.
    const d = startDaemon(`${name} in ${o.ns}`, "ip", ["netns", "exec", o.ns, bin, ...args], join(o.dir, `${name}.log`));
    res.pids.add(d.pid);
    daemons.push(d);
    return d;
  };
  const vtysh = async (daemon: "zebra" | "bgpd", command: string): Promise<string> => {
    const r = await inNetns(o.ns, [VTYSH, "--vty_socket", o.dir, "-d", daemon, "-c", command]);
    if (r.exitCode !== 0) throw new Error(`vtysh -d ${daemon} -c "${command}" in "${o.ns}" failed: ${String(r.stderr || r.stdout).trim()}`);
    return String(r.stdout);
  };
  const stop = async (): Promise<void> => {
    for (const d of [...daemons].reverse()) {
      await d.stop();
      res.pids.delete(d.pid);
    }
  };
  try {
    const zebra = start("zebra", ZEBRA);
    await waitUntilReady(zebra, "listening on zserv.api", async () => existsSync(zserv), START_WITHIN_MS);
    const bgpd = start("bgpd", BGPD);
    await waitUntilReady(bgpd, "answering vtysh", async () => (await vtysh("bgpd", "show bgp summary json"), true), START_WITHIN_MS);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    pids: daemons.map((d) => d.pid),
    config,
    sessions: async () => parseBgpSummary(await vtysh("bgpd", "show bgp summary json")),
    routes: async (f) => {
      const command = `show ${f === 4 ? "ip" : "ipv6"} route bgp json`;
      return parseZebraRoutes(await vtysh("zebra", command), command);
    },
    vtysh,
    logTail: () => daemons.map((d) => `${d.name}:\n${d.logTail()}`).join("\n"),
    stop,
  };
}
