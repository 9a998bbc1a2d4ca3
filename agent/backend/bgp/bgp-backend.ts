import { createHash } from "node:crypto";
import { familyOfText, formatIp } from "../../../shared/net/cidr.js";
import type { RefusedChange } from "../../../shared/kernel/node-kernel.js";
import type { RouteSpec } from "../../../shared/kernel/routes.js";
import { systemClock, type Clock } from "../../clock.js";
import { DEFAULT_BGP_AS } from "../../config.js";
import { ConfigError, errorMessage } from "../../errors.js";
import { run, type Runner } from "../../../shared/kernel/exec.js";
import type { Backend, BackendData, BgpConfig, BgpRouterConfig, LocalNode, NetworkConfig, NodeLease, PeerError, ReconcileReport } from "../../types.js";
import { hostGw } from "../host-gw.js";
import { underlayAddresses, type DaemonBackendDeps } from "../kind.js";
import { planDatapath } from "../plan.js";
import { parseProtocols, parseRoutes, parseStatus, type BirdProtocol, type BirdRoute, type BirdStatus } from "./bird-answers.js";
import { renderBirdConfig, type BirdConfigInput, type BirdSession, type Refusal } from "./bird-config.js";
import { BirdControl } from "./bird-control.js";
import { planBirdRoutes, routesToInstall, type RefusedRoute } from "./bird-routes.js";
import { announcing, BirdSupervisor, type BirdSupervisorOptions } from "./bird-supervisor.js";
import { BgpMetrics } from "./bgp-metrics.js";
import { sessionReports, sessionStates, writeBgpReport, type BgpReport, type BgpSessionReport } from "./bgp-report.js";

/**
 * The bgp backend: pod subnets announced over BGP by a BIRD per node, and the routes BIRD
 * learned installed in the kernel by twilld (proto 150), never by BIRD. No encapsulation, so
 * no MTU overhead and no device. twilld renders bird.conf from the leases on every reconcile
 * (bird-config.ts) and BIRD re-reads it without restarting the sessions it keeps
 * (bird-supervisor.ts); a poll of BIRD's control socket every 200 ms sees sessions and routes
 * change, and installs what BIRD learned as soon as it learned it, each route checked again
 * against the leases (bird-routes.ts). The poll also wakes BIRD 2.0's event loop, which
 * otherwise may sit on a first UPDATE for a second (docs/bgp-design.md).
 */

/** This node's BGP settings, from twilld's flags (over the network config's). */
export interface BgpNodeOptions {
  /** BIRD's files: bird.conf, bird.ctl, bird.pid, bird.log and the graceful restart marker. */
  dir: string;
  /** This node's AS (routers mode: its own or its rack's), over the network config's. */
  as?: number;
  /** The routers this node peers with, over the network config's. */
  routers?: BgpRouterConfig[];
  /** Where the sessions are reported for `twilld status`; none when absent. */
  reportFile?: string;
  /** How often BIRD is asked for its sessions. */
  pollMs?: number;
  /** Passed to the supervisor (tests: another BIRD binary, a namespace). */
  supervisor?: Partial<BirdSupervisorOptions>;
}

const POLL_MS = 200;
/** Sessions are read in full every this many polls, and whenever BIRD's status or route counts moved. */
const SESSIONS_EVERY = 10;
/**
 * After a change (a new configuration, routes or sessions that moved) BIRD is polled every
 * POLL_MS for this long, then every IDLE_EVERY × POLL_MS: a settled node costs a fifth.
 */
const BUSY_MS = 15_000;
const IDLE_EVERY = 5;
/** The graceful restart marker is rewritten at most this often while BIRD announces. */
const MARK_EVERY_MS = 5_000;
/** The report file is rewritten at least this often (the uptimes), else only on a change. */
const REPORT_EVERY_MS = 10_000;

/**
 * BIRD's router ID: the node's IPv4 underlay address, or for an IPv6-only node a 32-bit ID
 * from its name (BGP needs an IPv4-shaped ID; two nodes with the same one would not peer, a
 * chance of about n²/2³³ for n nodes), never 0.0.0.0.
 */
export function routerIdFor(nodeName: string, addresses: readonly string[]): string {
  const v4 = addresses.find((a) => familyOfText(a) === 4);
  if (v4) return v4;
  const n = createHash("sha256").update(nodeName).digest().readUInt32BE(0) || 1;
  return formatIp(4, BigInt(n));
}

/** BIRD's version, checked to be 2.x: bird.conf is BIRD 2's language (1.x reads another). */
export async function birdVersion(bird: string, runner: Runner): Promise<string> {
  let said: string;
  try {
    const r = await runner([bird, "--version"]);
    said = `${r.stdout}${r.stderr}`.trim();
  } catch (err) {
    throw new ConfigError(`the bgp backend runs BIRD 2, but ${JSON.stringify(bird)} cannot be started (${errorMessage(err)}): install Debian's bird2`);
  }
  const version = /BIRD version (\S+)/.exec(said)?.[1];
  if (!version?.startsWith("2.")) throw new ConfigError(`the bgp backend needs BIRD 2; "${bird} --version" says ${JSON.stringify(said)}`);
  return version;
}

/** The peering this node uses: the network config's, with the node's own AS and routers over it. */
export function nodePeering(config: BgpConfig, node: Pick<BgpNodeOptions, "as" | "routers">): { as: number; peering: BirdConfigInput["peering"] } {
  const as = node.as ?? config.as;
  if (config.mode === "mesh") return { as, peering: { mode: "mesh" } };
  return { as, peering: { mode: "routers", routers: node.routers ?? config.routers } };
}

/** The bird.conf input for this node's lease and its admitted peers. */
export function birdInput(network: NetworkConfig, local: { nodeName: string; routerId: string; addresses: string[]; underlayDev: string; as: number }, peering: BirdConfigInput["peering"], lease: NodeLease, peers: readonly NodeLease[]): BirdConfigInput {
  return {
    nodeName: local.nodeName,
    clusterCIDRs: network.clusterCIDRs,
    local: { routerId: local.routerId, addresses: local.addresses, underlayDev: local.underlayDev, subnets: lease.subnets, as: local.as },
    peering,
    peers: peers.map((p) => ({ nodeName: p.nodeName, address: p.publicIP, subnets: p.subnets, ...(p.backend.as !== undefined ? { as: p.backend.as } : {}) })),
  };
}

export class BgpBackend implements Backend {
  readonly type = "bgp" as const;
  private readonly supervisor: BirdSupervisor;
  private readonly control: BirdControl;
  private readonly clock: Clock;
  private readonly as: number;
  private readonly peering: BirdConfigInput["peering"];
  private readonly metrics: BgpMetrics | null;
  private local: (LocalNode & { routerId: string; addresses: string[] }) | null = null;
  private input: BirdConfigInput | null = null;
  private sessions: BirdSession[] = [];
  private refusedConfig: Refusal[] = [];
  private refusedRoutes: RefusedRoute[] = [];
  private appliedText: string | null = null;
  /** One kernel sync at a time (the poll and the agent's reconcile both ask). */
  private syncing: Promise<unknown> = Promise.resolve();
  private cancelPoll: () => void = () => undefined;
  private polling = false;
  private fingerprint = "";
  private quick = "";
  private polls = 0;
  private busyUntil = 0;
  private idleTicks = 0;
  private protocols: BirdProtocol[] | null = null;
  private lastMark = 0;
  private states = new Map<string, string>();
  private reportKey = "";
  private reportedAt = 0;

  constructor(
    private readonly network: NetworkConfig,
    private readonly node: BgpNodeOptions,
    private readonly deps: DaemonBackendDeps,
  ) {
    const config = network.backend.bgp ?? { mode: "mesh" as const, as: DEFAULT_BGP_AS, routers: [] };
    ({ as: this.as, peering: this.peering } = nodePeering(config, node));
    this.clock = deps.clock ?? systemClock;
    this.supervisor = new BirdSupervisor({ dir: node.dir, logger: deps.logger, clock: this.clock, ...node.supervisor });
    this.control = new BirdControl(this.supervisor.files.ctl, { timeoutMs: 2_000 });
    this.metrics = deps.registry ? new BgpMetrics(deps.registry) : null;
  }

  overhead(): number {
    return 0;
  }

  async prepare(local: LocalNode): Promise<BackendData> {
    const { kernel, logger } = this.deps;
    // A node switched from vxlan: its VTEP would keep answering for the routes BGP now owns.
    await hostGw.prepare({ kernel, logger, network: this.network, local });
    const version = await birdVersion(this.node.supervisor?.bird ?? "bird", this.node.supervisor?.runner ?? run);
    const [link] = await kernel.addrs(local.underlayDev);
    const addresses = underlayAddresses(local.publicIP, link?.addresses ?? []);
    this.local = { ...local, addresses, routerId: routerIdFor(local.nodeName, addresses) };
    await this.supervisor.start();
    this.cancelPoll = this.clock.every(this.node.pollMs ?? POLL_MS, () => void this.poll());
    logger.info("BGP backend", { mode: this.peering.mode, as: this.as, routerId: this.local.routerId, dir: this.node.dir, bird: version });
    return { type: this.type, underlayMTU: local.underlayMTU, underlayIPs: addresses, as: this.as };
  }

  /** Renders bird.conf for the lease and the peers, has BIRD take it, and installs what BIRD learned. */
  async reconcile(lease: NodeLease, peers: NodeLease[]): Promise<ReconcileReport> {
    const local = this.local;
    if (!local) throw new Error("bgp backend: reconcile before prepare");
    const input = birdInput(this.network, { ...local, as: this.as }, this.peering, lease, peers);
    const config = renderBirdConfig(input);
    this.input = input;
    this.sessions = config.sessions;
    this.refusedConfig = config.refused;
    if (config.text !== this.appliedText) {
      this.busy();
      const applied = await this.supervisor.applyConfig(config.text);
      if (applied.applied) this.appliedText = config.text;
      else if (applied.error) this.deps.logger.warn("BIRD did not take the new configuration; trying again next round", { error: applied.error });
    }
    const changes = await this.syncRoutes();
    return { changes, errors: this.errors() };
  }

  underlayChanged(mtu: number): void {
    if (this.local) this.local = { ...this.local, underlayMTU: mtu };
  }

  /** Every peer event renders the whole file: BIRD compares it protocol by protocol. */
  reconcilePeers(lease: NodeLease, peers: NodeLease[]): Promise<ReconcileReport> {
    return this.reconcile(lease, peers);
  }

  close(): void {
    this.cancelPoll();
    this.control.close();
    // BIRD runs on: its peers' graceful restart and the next twilld's adoption cover the gap.
    void this.supervisor.stop();
  }

  /**
   * Peers (or routers) left out of bird.conf: what the datapath cannot reach. Routes refused
   * are not unreachability (the peer's own subnets are routed): they are the BGP report's.
   */
  private errors(): PeerError[] {
    return this.refusedConfig.map((r) => ({ peer: r.subject, message: r.reason }));
  }

  /** The kernel's proto-150 routes made what BIRD's table says (kept whole while BIRD is away or recovering). */
  private syncRoutes(): Promise<number> {
    const run = this.syncing.then(() => this.syncOnce());
    this.syncing = run.catch(() => undefined);
    return run;
  }

  private async syncOnce(): Promise<number> {
    const input = this.input;
    if (!input) return 0;
    const { kernel, logger } = this.deps;
    const [status, routes, filtered] = await Promise.all([
      this.ask("show status", parseStatus),
      this.ask("show route all", (a) => parseRoutes(a)),
      this.ask("show route filtered all", (a) => parseRoutes(a, "show route filtered all")),
    ]);
    const installed = await kernel.ownedRoutes();
    let wanted: RouteSpec[] = installed;
    if (status && routes) {
      const plan = planBirdRoutes(routes, input);
      this.noteRefusedRoutes([...plan.refused, ...filteredRefusals(filtered ?? [], input)]);
      wanted = routesToInstall(plan.routes, installed, status);
    }
    const changes = planDatapath({ routes: wanted, neighbors: [], fdb: [] }, { routes: installed, neighbors: [], fdb: [] });
    if (changes.length === 0) return 0;
    const refused: RefusedChange[] = await kernel.applyDatapath(changes);
    logger.info("Installed BGP routes", {
      added: changes.filter((c) => c.op === "replace").length,
      removed: changes.filter((c) => c.op === "del").length,
      routes: wanted.length,
      ...(status?.gracefulRestart ? { keptForGracefulRestart: true } : {}),
    });
    if (refused.length) throw new Error(`the kernel refused BGP routes: ${refused.map((r) => r.error.message).join("; ")}`);
    return changes.length;
  }

  private noteRefusedRoutes(refused: RefusedRoute[]): void {
    const key = (list: RefusedRoute[]) => JSON.stringify(list.map((r) => [r.prefix, r.protocol, r.reason]));
    if (key(refused) !== key(this.refusedRoutes)) {
      for (const r of refused) this.deps.logger.warn("Refused a route BIRD learned", { prefix: r.prefix, from: r.protocol, via: r.via, reason: r.reason });
    }
    this.refusedRoutes = refused;
    this.metrics?.refusedRoutes.set(refused.length);
  }

  /**
   * One poll. Every time: BIRD's status and route counts (two short answers, and the wake-up
   * BIRD 2.0's loop needs); the sessions in full (`show protocols all`, whose size grows with
   * the peers) every SESSIONS_EVERY polls or when those moved. Routes are synced when anything
   * of it moved: counts catch a route learned or lost, the channels' update counters a route
   * replaced in place.
   */
  private async poll(): Promise<void> {
    if (this.polling) return;
    // Settled (nothing moved for BUSY_MS): one poll in IDLE_EVERY.
    if (this.clock.now() >= this.busyUntil && ++this.idleTicks < IDLE_EVERY) return;
    this.idleTicks = 0;
    this.polling = true;
    try {
      const [status, counts] = await Promise.all([this.ask("show status", parseStatus), this.ask("show route count", (a) => a)]);
      const quick = JSON.stringify([status?.gracefulRestart ?? null, status === null, counts]);
      if (quick !== this.quick || ++this.polls % SESSIONS_EVERY === 0) {
        if (quick !== this.quick) this.busy();
        this.quick = quick;
        this.protocols = await this.ask("show protocols all", (a) => parseProtocols(a));
        this.readSessions(status, this.protocols);
      }
      const fingerprint = JSON.stringify([quick, routeCounters(this.protocols ?? [])]);
      if (fingerprint !== this.fingerprint) {
        this.fingerprint = fingerprint;
        this.busy();
        await this.syncRoutes();
      }
    } catch (err) {
      // Next poll tries again; the full reconcile reports what stays wrong.
      this.fingerprint = "";
      this.deps.logger.warn("Installing BGP routes failed", { error: errorMessage(err) });
    } finally {
      this.polling = false;
    }
  }

  /** Something moved: poll every tick for BUSY_MS (BIRD's first UPDATE waits for a wake-up). */
  private busy(): void {
    this.busyUntil = this.clock.now() + BUSY_MS;
  }

  /** Sessions logged, reported and counted; the graceful restart marker kept fresh while BIRD announces. */
  private readSessions(status: BirdStatus | null, protocols: BirdProtocol[] | null): void {
    const reports = sessionReports(this.sessions, protocols, status?.serverTime ?? null);
    this.noteSessions(reports);
    this.report(status, protocols, reports);
    if (protocols && announcing(protocols) && this.clock.now() - this.lastMark >= MARK_EVERY_MS) {
      this.supervisor.markAnnounced();
      this.lastMark = this.clock.now();
    }
  }

  private noteSessions(reports: BgpSessionReport[]): void {
    const states = sessionStates(reports);
    for (const [peer, state] of states) {
      if (this.states.get(peer) === state) continue;
      if (state === "Established") this.deps.logger.info("BGP session established", { peer });
      else this.deps.logger.warn("BGP session not established", { peer, state });
    }
    this.states = states;
  }

  private report(status: BirdStatus | null, protocols: BirdProtocol[] | null, sessions: BgpSessionReport[]): void {
    const report: BgpReport = {
      at: this.clock.now(),
      bird: { ...this.supervisor.state(), answering: status !== null, gracefulRestartRecovery: status?.gracefulRestart ?? false },
      sessions,
      refusedConfig: this.refusedConfig,
      refusedRoutes: this.refusedRoutes,
    };
    this.metrics?.update(report, protocols !== null);
    // Rewritten when something other than the clock moved, and every REPORT_EVERY_MS.
    const key = JSON.stringify({ ...report, at: 0, sessions: sessions.map((s) => ({ ...s, sinceMs: null })) });
    if (!this.node.reportFile || (key === this.reportKey && report.at - this.reportedAt < REPORT_EVERY_MS)) return;
    this.reportKey = key;
    this.reportedAt = report.at;
    try {
      writeBgpReport(this.node.reportFile, report);
    } catch (err) {
      this.deps.logger.warn("Writing the BGP report failed", { path: this.node.reportFile, error: errorMessage(err) });
    }
  }

  /** BIRD's parsed answer, or null when it does not answer. */
  private async ask<T>(command: string, parse: (answer: string) => T): Promise<T | null> {
    try {
      return parse(await this.control.request(command));
    } catch {
      return null;
    }
  }
}

/**
 * Routes BIRD's import filters refused (kept by `import keep filtered`), each with the reason
 * twilld's own check gives; a route the check would take was refused by a filter rendered from
 * other leases (the file BIRD runs is older than the leases).
 */
export function filteredRefusals(filtered: readonly BirdRoute[], input: BirdConfigInput): RefusedRoute[] {
  const plan = planBirdRoutes(filtered, input);
  const taken = new Set(plan.routes.map((r) => r.dst));
  return [
    ...plan.refused,
    ...filtered
      .filter((r) => taken.has(r.prefix))
      .map((r) => ({ prefix: r.prefix, protocol: r.protocol, via: r.via, dev: r.dev, reason: "refused by BIRD's import filter, rendered from older leases" })),
  ];
}

/** What moves when BIRD's BGP routes change: per BGP channel, routes held and import updates/withdraws seen. */
function routeCounters(protocols: readonly BirdProtocol[]): unknown[] {
  return protocols
    .filter((p) => p.proto === "BGP")
    .map((p) => [p.name, p.state, p.channels.map((c) => [c.imported, c.filtered, c.importUpdates?.received, c.importWithdraws?.received])]);
}
