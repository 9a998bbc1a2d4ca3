import { writeDatapathReport, type DatapathReport } from "./datapath-report.js";
import type { NodeKernel } from "../shared/kernel/node-kernel.js";
import type { Logger } from "../shared/log.js";
import { validateSubnetInfo } from "../shared/subnet-file.js";
import { systemClock, type Clock } from "./clock.js";
import { LeaseLostError, errorMessage } from "./errors.js";
import type { Readiness } from "./http.js";
import { Masquerade } from "./masquerade.js";
import { MASQ_TABLE } from "../shared/kernel/masq.js";
import type { AgentMetrics } from "./metrics.js";
import { PeerView } from "./peer-view.js";
import type { Backend, BackendData, NetworkConfig, NodeLease, SubnetStore } from "./types.js";
import { findStalePods } from "./stale-subnet.js";
import { SubnetFileKeeper } from "./subnet-file-keeper.js";
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
  /** twill-ipam's store of the network (`<dataDir>/<network>`): it and the other stores beside it are searched for pods left on a subnet the node lost; none when absent. */
  ipamStore?: string;
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
  private readonly subnetFile: SubnetFileKeeper;
  private stalePodsKey = "";
  private notReadyReason = "starting";
  private readonly peerView: PeerView;
  /** The last datapath report written, rewritten with the refused records when only those change. */
  private lastReport: DatapathReport | null = null;
  private backend: Backend | null = null;
  /** The underlay as last seen: its MTU is followed at each full reconcile. */
  private underlay: Underlay | null = null;
  private backendData: BackendData | null = null;
  private readonly abort = new AbortController();
  private stopWatch: (() => void) | null = null;
  private cancelResync: () => void = () => {};
  private cancelRenew: () => void = () => {};
  /** A renewal (scheduled or early) is running: an early one is not started beside it. */
  private renewing = false;
  /** The renewal loop runs (from the end of start()): only then may a torn record start one early. */
  private renewScheduled = false;
  private reconciling: Promise<void> | null = null;
  /** A full read-and-diff is due (start-up, resync timer, lease change). */
  private fullPending = false;
  /** Peers named by watch events since the last reconcile; only their entries are redone. */
  private changedPeers = new Set<string>();
  private readonly clock: Clock;
  private readonly masquerade: Pick<Masquerade, "reconcile"> & Partial<Pick<Masquerade, "close">>;

  constructor(private readonly options: AgentOptions) {
    const { network, kernel, logger } = options;
    this.clock = options.clock ?? systemClock;
    this.subnetFile = new SubnetFileKeeper(options.subnetFile, options.nodeName);
    this.peerView = new PeerView(network, logger, options.metrics, () => {
      if (this.lastReport) this.recordDatapath(this.lastReport);
    });
    this.masquerade = options.masquerade ?? new Masquerade(network, kernel, logger, kernel.watchTable("inet", MASQ_TABLE));
  }

  readiness(): Readiness {
    const ready = this.lease !== null && this.subnetFile.written && this.leaseLive();
    if (!ready) return { ready, reason: this.notReadyReason };
    // Checked on every probe (a small file): a damaged file makes every ADD fail until repaired.
    const problem = this.subnetFile.problem();
    if (problem) return { ready: false, reason: `${problem}; rewriting it on the next resync` };
    return { ready, reason: `lease ${this.lease!.subnets.join(",")} held, subnet file written` };
  }

  /** Runs until stop(); throws only on what retrying cannot fix (no underlay, a broken backend). */
  async start(): Promise<void> {
    const { logger, metrics } = this.options;
    const underlay = await detectUnderlay(this.options.kernel, this.options.underlay);
    this.underlay = underlay;
    logger.info("Detected underlay", { ...underlay });
    const backend = this.options.backend(underlay);
    this.backendData = await backend.prepare({
      nodeName: this.options.nodeName,
      publicIP: underlay.ip,
      underlayDev: underlay.dev,
      underlayMTU: underlay.mtu,
    });
    this.backend = backend;

    const lease = await this.acquireWithRetry(underlay, this.subnetFile.previousSubnets());
    if (!lease) return; // stopped while waiting
    this.adoptLease(lease, underlay);
    if (this.stopped) return;

    this.stopWatch = this.options.store.watch(
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
    this.cancelResync = this.clock.every(this.options.resyncMs, () => this.scheduleReconcile());
    this.scheduleRenew();
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
    await this.options.store.close();
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private leaseLive(): boolean {
    return this.lease !== null && (this.lease.expiresAt === undefined || this.lease.expiresAt > this.clock.now());
  }

  /** Acquires, retrying with backoff (pool exhausted, datastore down) until it works or stop(). */
  private async acquireWithRetry(underlay: Underlay, preferredSubnets: string[]): Promise<NodeLease | null> {
    let delay = ACQUIRE_BACKOFF_MS.first;
    while (!this.stopped) {
      try {
        return await this.options.store.acquire({
          nodeName: this.options.nodeName,
          publicIP: underlay.ip,
          backend: this.backendData!,
          preferredSubnets,
        });
      } catch (err) {
        this.options.metrics.datastoreErrors.inc({ op: "acquire" });
        this.notReadyReason = `no subnet lease: ${errorMessage(err)}`;
        this.options.logger.error("Acquiring the node subnet failed; retrying", { error: errorMessage(err), retryInMs: delay });
        await this.clock.sleep(delay, this.abort.signal);
        delay = Math.min(delay * 2, ACQUIRE_BACKOFF_MS.max);
      }
    }
    return null;
  }

  private adoptLease(lease: NodeLease, underlay: Underlay, previousSubnets?: string[]): void {
    this.lease = lease;
    this.options.metrics.leaseHeld.set(1);
    if (previousSubnets && previousSubnets.join() !== lease.subnets.join()) {
      // Pods already on the old subnet lose their routes: say so loudly (flannel#520).
      this.options.logger.error("Node subnet changed after the lease was lost", { from: previousSubnets, to: lease.subnets });
    }
    const info = validateSubnetInfo({
      clusterCIDRs: this.options.network.clusterCIDRs,
      nodeSubnets: lease.subnets,
      mtu: underlay.mtu - this.backend!.overhead(underlay.family),
      backend: this.backend!.type,
      ipMasq: this.options.network.ipMasq,
      nodeName: this.options.nodeName,
    });
    this.subnetFile.write(info);
    this.options.metrics.ready.set(1);
    this.options.logger.info("Wrote subnet file", { path: this.subnetFile.path, subnets: lease.subnets, mtu: info.mtu });
  }

  private onLeases(all: NodeLease[]): void {
    if (this.stopped) return;
    this.peerView.see(all);
    this.admitPeers();
    this.republishIfTorn(all);
  }

  /**
   * Peers drop a node whose record left the datastore (its Node annotations deleted by hand,
   * its Lease or etcd key deleted) until the node publishes it again: that is done at once, not
   * at the next renewal up to a minute later, during which every pod of the node is cut off
   * from every other node.
   */
  private republishIfTorn(all: NodeLease[]): void {
    const lease = this.lease;
    if (!lease || this.renewing || !this.renewScheduled) return;
    const own = all.find((l) => l.nodeName === this.options.nodeName);
    if (own && own.publicIP === lease.publicIP && own.backend.type === lease.backend.type) return;
    this.options.logger.warn("This node's record is missing from the datastore or differs; publishing it again", {
      seen: own ? { publicIP: own.publicIP, backend: own.backend.type } : null,
    });
    this.cancelRenew();
    void this.renew().finally(() => this.scheduleRenew());
  }

  /** The watch's last view admitted against the lease held; a reconcile of what that changed. */
  private admitPeers(): void {
    if (this.stopped || !this.lease || !this.peerView.hasView) return;
    this.reportUnreadable();
    const update = this.peerView.admit(this.lease);
    if (!update) return;
    if (update.first) return this.scheduleReconcile();
    for (const peer of update.changed) this.changedPeers.add(peer);
    this.scheduleReconcile("peers");
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

  /**
   * The underlay's MTU changed on a running node (a jumbo-frame rollout): the backend's device
   * (the VTEP) follows at this reconcile, the subnet file at once (new pods, and the bridge at
   * the next ADD), and peers with the next renewal. Running pods keep the MTU they were made
   * with until they are restarted (README).
   */
  private async followUnderlayMtu(lease: NodeLease): Promise<void> {
    const underlay = this.underlay;
    if (!underlay || !this.backend || !this.backendData) return;
    let mtu: number | undefined;
    try {
      mtu = (await this.options.kernel.link(underlay.dev))?.mtu;
    } catch (err) {
      this.options.logger.warn("Reading the underlay device failed", { dev: underlay.dev, error: errorMessage(err) });
      return;
    }
    if (mtu === undefined || mtu === underlay.mtu) return;
    this.options.logger.warn("Underlay MTU changed; following it", { dev: underlay.dev, from: underlay.mtu, to: mtu, podMtu: mtu - this.backend.overhead(underlay.family) });
    this.underlay = { ...underlay, mtu };
    this.backendData = { ...this.backendData, underlayMTU: mtu };
    this.backend.underlayChanged?.(mtu);
    try {
      this.adoptLease(lease, this.underlay);
    } catch (err) {
      this.subnetFileWriteFailed(err);
    }
  }

  /** Rewrites a subnet file that was deleted, truncated or edited behind the agent's back. */
  private ensureSubnetFile(): void {
    try {
      const repaired = this.subnetFile.repair();
      if (!repaired) return;
      if (this.leaseLive()) this.options.metrics.ready.set(1);
      this.options.metrics.subnetFileRepairs.inc();
      this.options.logger.warn("Rewrote the subnet file", { path: this.subnetFile.path, reason: repaired });
    } catch (err) {
      this.subnetFileWriteFailed(err);
    }
  }

  /** The lease is held but the plugin cannot see it: not ready until a later write succeeds. */
  private subnetFileWriteFailed(err: unknown): void {
    this.subnetFile.written = false;
    this.options.metrics.ready.set(0);
    this.notReadyReason = `cannot write the subnet file: ${errorMessage(err)}`;
    this.options.logger.error("Writing the subnet file failed", { path: this.subnetFile.path, error: errorMessage(err) });
  }

  /** Pods whose addresses lie in a subnet this node no longer holds: counted, and logged when the set changes. */
  private reportStalePods(): void {
    if (!this.options.ipamStore || !this.lease) return;
    const pods = findStalePods(this.options.ipamStore, this.options.network.clusterCIDRs, this.lease.subnets);
    this.options.metrics.stalePods.set(pods.length);
    const key = JSON.stringify(pods);
    if (key === this.stalePodsKey) return;
    this.stalePodsKey = key;
    if (pods.length > 0) {
      this.options.logger.error("Pods on a subnet this node no longer holds need a restart", { subnets: this.lease.subnets, pods });
    }
  }

  private reportUnreadable(): void {
    const found = this.options.store.unreadable();
    for (const kind of ["claim", "node"] as const) {
      this.options.metrics.unreadableRecords.set({ kind }, found.filter((r) => r.kind === kind).length);
    }
  }

  /** A full reconcile (`changed` null), or one of the peers named. */
  private async reconcileOnce(lease: NodeLease, changed: string[] | null): Promise<void> {
    const { metrics, logger } = this.options;
    metrics.reconciles.inc();
    const end = metrics.reconcileSeconds.startTimer({ kind: changed ? "peers" : "full" });
    if (!changed) {
      await this.followUnderlayMtu(lease);
      this.ensureSubnetFile();
      this.reportStalePods();
      this.reportUnreadable();
    }
    const backend = this.options.network.backend.type;
    // Masquerade (full reconciles only) is another table than the peers' entries: side by side.
    const masquerade = changed ? Promise.resolve(0) : this.reconcileMasquerade();
    try {
      const report = changed
        ? await this.backend!.reconcilePeers(lease, this.peerView.peers, changed)
        : await this.backend!.reconcile(lease, this.peerView.peers);
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
      this.options.metrics.reconcileErrors.inc();
      this.options.logger.error("Reconciling masquerade failed", { error: errorMessage(err) });
      return 0;
    }
  }

  private recordDatapath(report: DatapathReport): void {
    this.lastReport = report;
    if (!this.options.datapathReportFile) return;
    try {
      writeDatapathReport(this.options.datapathReportFile, { ...report, refused: this.peerView.refused });
    } catch (err) {
      this.options.logger.warn("Writing the datapath report failed", { path: this.options.datapathReportFile, error: errorMessage(err) });
    }
  }

  private scheduleRenew(): void {
    if (this.stopped) return;
    this.renewScheduled = true;
    this.cancelRenew = this.clock.after(this.options.renewMs, () => void this.renew().finally(() => this.scheduleRenew()));
  }

  private async renew(): Promise<void> {
    this.renewing = true;
    try {
      await this.renewOnce();
    } finally {
      this.renewing = false;
    }
  }

  private async renewOnce(): Promise<void> {
    const { metrics, logger, store } = this.options;
    const underlay = this.underlay;
    if (!this.lease || !underlay || this.stopped) return;
    try {
      this.lease = await store.renew({ ...this.lease, publicIP: underlay.ip, backend: this.backendData! });
      metrics.leaseRenewals.inc();
      metrics.leaseHeld.set(1);
      if (!this.subnetFile.written) this.adoptLease(this.lease, underlay);
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
        this.admitPeers();
      } catch (writeErr) {
        // Written again by the next renewal, which finds it not written.
        this.subnetFileWriteFailed(writeErr);
      }
      this.scheduleReconcile();
    }
  }
}
