import { writeDatapathReport, type DatapathReport } from "./datapath-report.js";
import type { NodeKernel } from "../shared/kernel/node-kernel.js";
import type { Logger } from "../shared/log.js";
import { readSubnetFile, validateSubnetInfo, writeSubnetFile, type SubnetInfo } from "../shared/subnet-file.js";
import { systemClock, type Clock } from "./clock.js";
import { LeaseLostError, errorMessage } from "./errors.js";
import type { Readiness } from "./http.js";
import { diffLeases, isEmptyDiff, sortLeases, withoutExpiry } from "./leases.js";
import { Masquerade } from "./masquerade.js";
import { MASQ_TABLE } from "../shared/kernel/masq.js";
import type { AgentMetrics } from "./metrics.js";
import { PeerAdmission } from "./peers.js";
import type { Backend, BackendData, NetworkConfig, NodeLease, PeerError, SubnetStore } from "./types.js";
import { findStalePods } from "./stale-subnet.js";
import { detectUnderlay, type Underlay, type UnderlayWanted } from "./underlay.js";

/**
 * The node agent's loop: detect the underlay, prepare the backend, acquire the node's subnet
 * lease with the backend's data, write the subnet file, then reconcile the datapath against
 * the peers on every change the watch reports, every resync period and once at start-up (the
 * masquerade table with each full one), renewing the lease as it goes. Stopping leaves the
 * datapath and the subnet file in place: pods keep their connectivity while the agent
 * restarts (flannel#1308).
 */

export interface AgentOptions {
  nodeName: string;
  network: NetworkConfig;
  store: SubnetStore;
  /** The node namespace's kernel. */
  kernel: NodeKernel;
  backend: (underlay: Underlay) => Backend;
  /** The node's masquerade; by default the `inet twill` table through `nft`, watched through nfnetlink. */
  masquerade?: Pick<Masquerade, "reconcile"> & Partial<Pick<Masquerade, "close">>;
  underlay: UnderlayWanted;
  subnetFile: string;
  /** The IPAM store (`<dir>/<network>/<ip>`), searched for pods left on a subnet the node lost; none when absent. */
  ipamDir?: string;
  /** Where the last reconcile's outcome is written for `twilld status`; none when absent. */
  datapathReportFile?: string;
  resyncMs: number;
  renewMs: number;
  logger: Logger;
  metrics: AgentMetrics;
  /** The system clock unless a test runs the loop on its own time. */
  clock?: Clock;
}

const ACQUIRE_BACKOFF_MS = { first: 1_000, max: 30_000 };

export class Agent {
  private lease: NodeLease | null = null;
  private subnetFileWritten = false;
  /** What the subnet file must say, once a lease is held. */
  private subnetInfo: SubnetInfo | null = null;
  private stalePodsKey = "";
  private notReadyReason = "starting";
  private peers: NodeLease[] = [];
  /** The watch's last view, before admission: admitted again when this node's own lease changes. */
  private lastView: NodeLease[] | null = null;
  private readonly admission: PeerAdmission;
  /** Peer records refused by admission, as of the last view. */
  private refused: PeerError[] = [];
  private refusedKey = "[]";
  /** The last datapath report written, rewritten with the refused records when only those change. */
  private lastReport: DatapathReport | null = null;
  private backend: Backend | null = null;
  private backendData: BackendData | null = null;
  private readonly abort = new AbortController();
  private stopWatch: (() => void) | null = null;
  private cancelResync: () => void = () => {};
  private cancelRenew: () => void = () => {};
  private reconciling: Promise<void> | null = null;
  /** A full read-and-diff is due (start-up, resync timer, lease change). */
  private fullPending = false;
  /** Peers named by watch events since the last reconcile; only their entries are redone. */
  private changedPeers = new Set<string>();
  private reconciledOnce = false;
  private readonly clock: Clock;
  private readonly masquerade: Pick<Masquerade, "reconcile"> & Partial<Pick<Masquerade, "close">>;

  constructor(private readonly o: AgentOptions) {
    this.clock = o.clock ?? systemClock;
    this.admission = new PeerAdmission(o.network);
    this.masquerade = o.masquerade ?? new Masquerade(o.network, o.kernel, o.logger, o.kernel.watchTable("inet", MASQ_TABLE));
  }

  readiness(): Readiness {
    const ready = this.lease !== null && this.subnetFileWritten && this.leaseLive();
    if (!ready) return { ready, reason: this.notReadyReason };
    // Checked on every probe (a small file): a damaged file makes every ADD fail until repaired.
    const problem = this.subnetFileProblem();
    if (problem) return { ready: false, reason: `${problem}; rewriting it on the next resync` };
    return { ready, reason: `lease ${this.lease!.subnets.join(",")} held, subnet file written` };
  }

  /** Runs until stop(); throws only on what retrying cannot fix (no underlay, a broken backend). */
  async start(): Promise<void> {
    const { logger, metrics } = this.o;
    const underlay = await detectUnderlay(this.o.kernel, this.o.underlay);
    logger.info("Detected underlay", { ...underlay });
    const backend = this.o.backend(underlay);
    this.backendData = await backend.prepare({
      nodeName: this.o.nodeName,
      publicIP: underlay.ip,
      underlayDev: underlay.dev,
      underlayMTU: underlay.mtu,
    });
    this.backend = backend;

    const lease = await this.acquireWithRetry(underlay, this.previousSubnets());
    if (!lease) return; // stopped while waiting
    this.adoptLease(lease, underlay);
    if (this.stopped) return;

    this.stopWatch = this.o.store.watch(
      (leases) => this.onLeases(leases),
      (err) => {
        metrics.watchRestarts.inc();
        metrics.datastoreErrors.inc({ op: "watch" });
        logger.warn("Peer watch failed; resuming", { error: err.message });
      },
    );
    // The watch's first view (a full list) triggers the start-up reconcile, which prunes what
    // peers that left while the agent was down left behind; a second list here would read
    // the whole datastore twice at start-up.
    if (this.stopped) return;
    this.cancelResync = this.clock.every(this.o.resyncMs, () => this.scheduleReconcile());
    this.scheduleRenew(underlay);
  }

  /** Stops loops and watches; leaves the lease, the datapath and the subnet file alone. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.cancelResync();
    this.cancelRenew();
    this.stopWatch?.();
    await this.reconciling;
    this.backend?.close?.();
    this.masquerade.close?.();
    await this.o.store.close();
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private leaseLive(): boolean {
    return this.lease !== null && (this.lease.expiresAt === undefined || this.lease.expiresAt > this.clock.now());
  }

  /** The subnets of the last subnet file this node wrote: tried first, claimed atomically. */
  private previousSubnets(): string[] {
    try {
      const info = readSubnetFile(this.o.subnetFile);
      return info.nodeName === undefined || info.nodeName === this.o.nodeName ? info.nodeSubnets : [];
    } catch {
      return [];
    }
  }

  /** Acquires, retrying with backoff (pool exhausted, datastore down) until it works or stop(). */
  private async acquireWithRetry(underlay: Underlay, preferredSubnets: string[]): Promise<NodeLease | null> {
    let delay = ACQUIRE_BACKOFF_MS.first;
    while (!this.stopped) {
      try {
        return await this.o.store.acquire({
          nodeName: this.o.nodeName,
          publicIP: underlay.ip,
          backend: this.backendData!,
          preferredSubnets,
        });
      } catch (err) {
        this.o.metrics.datastoreErrors.inc({ op: "acquire" });
        this.notReadyReason = `no subnet lease: ${errorMessage(err)}`;
        this.o.logger.error("Acquiring the node subnet failed; retrying", { error: errorMessage(err), retryInMs: delay });
        await this.clock.sleep(delay, this.abort.signal);
        delay = Math.min(delay * 2, ACQUIRE_BACKOFF_MS.max);
      }
    }
    return null;
  }

  private adoptLease(lease: NodeLease, underlay: Underlay, previousSubnets?: string[]): void {
    this.lease = lease;
    this.o.metrics.leaseHeld.set(1);
    if (previousSubnets && previousSubnets.join() !== lease.subnets.join()) {
      // Pods already on the old subnet lose their routes: say so loudly (flannel#520).
      this.o.logger.error("Node subnet changed after the lease was lost", { from: previousSubnets, to: lease.subnets });
    }
    const info: SubnetInfo = validateSubnetInfo({
      clusterCIDRs: this.o.network.clusterCIDRs,
      nodeSubnets: lease.subnets,
      mtu: underlay.mtu - this.backend!.overhead(underlay.family),
      backend: this.backend!.type,
      ipMasq: this.o.network.ipMasq,
      nodeName: this.o.nodeName,
    });
    this.subnetInfo = info;
    writeSubnetFile(this.o.subnetFile, info);
    this.subnetFileWritten = true;
    this.o.metrics.ready.set(1);
    this.o.logger.info("Wrote subnet file", { path: this.o.subnetFile, subnets: lease.subnets, mtu: info.mtu });
  }

  private onLeases(all: NodeLease[]): void {
    if (this.stopped) return;
    // Kept also while no lease is held: the next lease's admission judges the latest view.
    this.lastView = all;
    if (!this.lease) return;
    this.reportUnreadable();
    // Only admitted records reach the datapath: a bad or forged one is refused for that peer alone.
    const { admitted, refused } = this.admission.admit(all, this.lease);
    this.noteRefused(refused);
    // The watch is the authority on liveness: it drops a lapsed lease itself, and it reports
    // no event for a renewal (only the expiry moves). A copy's expiresAt would go stale and
    // make the datapath drop a live peer, so it is not kept.
    const peers = sortLeases(admitted).map(withoutExpiry);
    const diff = diffLeases(this.peers, peers);
    this.peers = peers;
    this.o.metrics.peers.set(peers.length);
    // The first view always reconciles in full (start-up prune); later ones only the peers that changed.
    if (isEmptyDiff(diff) && this.reconciledOnce) return;
    const first = !this.reconciledOnce;
    this.reconciledOnce = true;
    // The first view names its peers at debug level only: a line each for 5000 peers at every
    // start is noise (and tens of milliseconds of start-up). Changes after it are logged one by one.
    if (first) this.o.logger.info("Peers at start", { peers: peers.length });
    for (const l of diff.added) {
      const fields = { peer: l.nodeName, subnets: l.subnets, publicIP: l.publicIP };
      if (first) this.o.logger.debug("Peer joined", fields);
      else this.o.logger.info("Peer joined", fields);
    }
    for (const l of diff.removed) this.o.logger.info("Peer left", { peer: l.nodeName, subnets: l.subnets });
    for (const l of diff.changed) this.o.logger.info("Peer changed", { peer: l.nodeName, subnets: l.subnets, publicIP: l.publicIP });
    if (first) return this.scheduleReconcile();
    for (const l of [...diff.added, ...diff.removed, ...diff.changed]) this.changedPeers.add(l.nodeName);
    this.scheduleReconcile("peers");
  }

  /** Logs each refused record once (again when its reason changes), counts them, and shows them in the report. */
  private noteRefused(refused: PeerError[]): void {
    const key = JSON.stringify(refused);
    if (key === this.refusedKey) return;
    const before = new Map(this.refused.map((r) => [r.peer, r.message]));
    for (const r of refused) {
      if (before.get(r.peer) !== r.message) this.o.logger.warn("Refused peer record; not routed", { peer: r.peer, reason: r.message });
      before.delete(r.peer);
    }
    for (const peer of before.keys()) this.o.logger.info("Peer record no longer refused", { peer });
    this.refused = refused;
    this.refusedKey = key;
    this.o.metrics.unreadableRecords.set({ kind: "peer" }, refused.length);
    if (this.lastReport) this.recordDatapath(this.lastReport);
  }

  /**
   * One reconcile at a time; a request during one runs another right after it. Requests
   * coalesce: a full one absorbs any peer events pending, peer events accumulate.
   */
  private scheduleReconcile(kind: "full" | "peers" = "full"): void {
    if (this.stopped || !this.lease || !this.backend) return;
    if (kind === "full") this.fullPending = true;
    if (this.reconciling) return;
    this.reconciling = (async () => {
      // A lease lost mid-loop ends it: the requests wait for the next lease, whose adoption
      // asks for a full reconcile anyway.
      while (!this.stopped && this.lease && (this.fullPending || this.changedPeers.size > 0)) {
        const full = this.fullPending;
        const changed = [...this.changedPeers];
        this.fullPending = false;
        this.changedPeers.clear();
        await this.reconcileOnce(this.lease, full ? null : changed);
      }
    })().finally(() => {
      this.reconciling = null;
    });
  }

  /** Why the subnet file on disk is not what it must be (missing, unreadable, other content); null when it is. */
  private subnetFileProblem(): string | null {
    if (!this.subnetInfo) return null;
    try {
      const onDisk = readSubnetFile(this.o.subnetFile);
      return JSON.stringify(onDisk) === JSON.stringify(this.subnetInfo) ? null : `subnet file ${this.o.subnetFile} differs from the lease`;
    } catch (err) {
      return errorMessage(err);
    }
  }

  /** Rewrites a subnet file that was deleted, truncated or edited behind the agent's back. */
  private ensureSubnetFile(): void {
    const problem = this.subnetFileProblem();
    if (!problem || !this.subnetInfo) return;
    try {
      writeSubnetFile(this.o.subnetFile, this.subnetInfo);
      this.subnetFileWritten = true;
      if (this.leaseLive()) this.o.metrics.ready.set(1);
      this.o.metrics.subnetFileRepairs.inc();
      this.o.logger.warn("Rewrote the subnet file", { path: this.o.subnetFile, reason: problem });
    } catch (err) {
      this.subnetFileWritten = false;
      this.o.metrics.ready.set(0);
      this.notReadyReason = `cannot write the subnet file: ${errorMessage(err)}`;
      this.o.logger.error("Writing the subnet file failed", { path: this.o.subnetFile, error: errorMessage(err) });
    }
  }

  /** Pods whose addresses lie in a subnet this node no longer holds: counted, and logged when the set changes. */
  private reportStalePods(): void {
    if (!this.o.ipamDir || !this.lease) return;
    const pods = findStalePods(this.o.ipamDir, this.o.network.clusterCIDRs, this.lease.subnets);
    this.o.metrics.stalePods.set(pods.length);
    const key = JSON.stringify(pods);
    if (key === this.stalePodsKey) return;
    this.stalePodsKey = key;
    if (pods.length > 0) {
      this.o.logger.error("Pods on a subnet this node no longer holds need a restart", { subnets: this.lease.subnets, pods });
    }
  }

  private reportUnreadable(): void {
    const found = this.o.store.unreadable();
    for (const kind of ["claim", "node"] as const) {
      this.o.metrics.unreadableRecords.set({ kind }, found.filter((r) => r.kind === kind).length);
    }
  }

  /** A full reconcile (`changed` null), or one of the peers named. */
  private async reconcileOnce(lease: NodeLease, changed: string[] | null): Promise<void> {
    const { metrics, logger } = this.o;
    metrics.reconciles.inc();
    const end = metrics.reconcileSeconds.startTimer({ kind: changed ? "peers" : "full" });
    if (!changed) {
      this.ensureSubnetFile();
      this.reportStalePods();
      this.reportUnreadable();
    }
    const backend = this.o.network.backend.type;
    // Masquerade (full reconciles only) is another table than the peers' entries: side by side.
    const masquerade = changed ? Promise.resolve(0) : this.reconcileMasquerade();
    try {
      const report = changed
        ? await this.backend!.reconcilePeers(lease, this.peers, changed)
        : await this.backend!.reconcile(lease, this.peers);
      const changes = report.changes + (await masquerade);
      end();
      metrics.reconcileChanges.inc(changes);
      metrics.peerErrors.set(report.errors.length);
      this.recordDatapath({ backend, at: this.clock.now(), changes, errors: report.errors });
    } catch (err) {
      await masquerade; // never rejects; not left running into the next reconcile
      metrics.reconcileErrors.inc();
      logger.error("Reconciling the datapath failed", { error: errorMessage(err) });
      this.recordDatapath({ backend, at: this.clock.now(), changes: 0, errors: [], failed: errorMessage(err) });
    }
  }

  /** The masquerade table in line (full reconciles only: nothing a peer event changes); its changes, 0 when it failed. */
  private async reconcileMasquerade(): Promise<number> {
    try {
      return await this.masquerade.reconcile();
    } catch (err) {
      this.o.metrics.reconcileErrors.inc();
      this.o.logger.error("Reconciling masquerade failed", { error: errorMessage(err) });
      return 0;
    }
  }

  private recordDatapath(report: DatapathReport): void {
    this.lastReport = report;
    if (!this.o.datapathReportFile) return;
    try {
      writeDatapathReport(this.o.datapathReportFile, { ...report, refused: this.refused });
    } catch (err) {
      this.o.logger.warn("Writing the datapath report failed", { path: this.o.datapathReportFile, error: errorMessage(err) });
    }
  }

  private scheduleRenew(underlay: Underlay): void {
    if (this.stopped) return;
    this.cancelRenew = this.clock.after(this.o.renewMs, () => void this.renew(underlay).finally(() => this.scheduleRenew(underlay)));
  }

  private async renew(underlay: Underlay): Promise<void> {
    const { metrics, logger, store } = this.o;
    if (!this.lease || this.stopped) return;
    try {
      this.lease = await store.renew({ ...this.lease, publicIP: underlay.ip, backend: this.backendData! });
      metrics.leaseRenewals.inc();
      metrics.leaseHeld.set(1);
      if (!this.subnetFileWritten) this.adoptLease(this.lease, underlay);
      metrics.ready.set(1);
    } catch (err) {
      metrics.datastoreErrors.inc({ op: "renew" });
      if (!(err instanceof LeaseLostError)) {
        logger.warn("Renewing the lease failed; retrying", { error: errorMessage(err) });
        if (!this.leaseLive()) {
          metrics.leaseHeld.set(0);
          metrics.ready.set(0);
          this.notReadyReason = `lease expired and cannot be renewed: ${errorMessage(err)}`;
        }
        return;
      }
      logger.error("Lease lost; acquiring again", { error: err.message });
      metrics.leaseHeld.set(0);
      metrics.ready.set(0);
      this.notReadyReason = err.message;
      const previous = this.lease.subnets;
      this.lease = null;
      const lease = await this.acquireWithRetry(underlay, previous);
      if (!lease) return;
      try {
        this.adoptLease(lease, underlay, previous);
        // Admission depends on this node's own subnets: the peers are judged again, and the
        // full reconcile asked for below absorbs what that changes.
        this.fullPending = true;
        if (this.lastView) this.onLeases(this.lastView);
      } catch (writeErr) {
        // The lease is held but the plugin cannot see it: not ready until the next renewal writes it.
        this.subnetFileWritten = false;
        metrics.ready.set(0);
        this.notReadyReason = `cannot write the subnet file: ${errorMessage(writeErr)}`;
        logger.error("Writing the subnet file failed", { path: this.o.subnetFile, error: errorMessage(writeErr) });
      }
      this.scheduleReconcile();
    }
  }
}
