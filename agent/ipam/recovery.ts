import type { Logger } from "../../shared/log.js";
import { Store, type SkippedName } from "../../ipam/store.js";
import { errorMessage } from "../errors.js";
import type { AgentMetrics } from "../metrics.js";
import { TORN_ADD_GRACE_MS, judgeReservations, leaked, reservationKey, suspected, type Judged, type PodsView } from "./leaks.js";
import type { PodSource } from "./pod-source.js";
import { writeLeakReport, type LeakReport } from "./report.js";
import { currentBoot, readStoreView, releaseReservation, type BootInfo } from "./store-view.js";
import { noSandboxProbe, type SandboxProbe } from "./sandbox.js";

/**
 * The agent's leak recovery: every interval, judge this node's reservations against the pods
 * running on it (leaks.ts) and release what has looked leaked for the grace period. The
 * suspicion is remembered between sweeps, so a reservation is released only after sweeps
 * spanning the whole grace period saw it unused; a restart of the agent starts it over.
 * Each sweep first removes temporaries killed writers left in the store.
 */

export interface LeakRecoveryOptions {
  /** twill-ipam's store of the network: <dataDir>/<network>. */
  storeDir: string;
  pods: PodSource;
  graceMs: number;
  intervalMs: number;
  logger: Logger;
  metrics: AgentMetrics;
  /** Where `twilld status` reads the last sweep's outcome; none when unset. */
  reportFile?: string;
  now?: () => number;
  boot?: () => BootInfo;
  /** Made fresh for each sweep (links come and go). */
  sandbox?: () => SandboxProbe;
  tornGraceMs?: number;
}

type SweepState = LeakReport["state"];

export class LeakRecovery {
  private suspects = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private lastSkip = "";
  private state: { state: SweepState; reason: string; since: number } | null = null;
  /** One for the agent's life: it logs each skipped store file once. */
  private readonly store: Store;

  constructor(private readonly o: LeakRecoveryOptions) {
    this.store = new Store(o.storeDir, o.logger);
  }

  start(): void {
    this.timer = setInterval(() => void this.sweepOnce(), this.o.intervalMs);
    void this.sweepOnce();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One sweep at a time; a tick during one is dropped. */
  private sweepOnce(): Promise<void> {
    this.running ??= this.sweep()
      .then(() => undefined)
      .catch((err: unknown) => this.o.logger.warn("Leak sweep failed", { store: this.o.storeDir, error: errorMessage(err) }))
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  /** Judges and releases once; returns the judgement (tests read it). */
  async sweep(): Promise<Judged[]> {
    const { logger, metrics } = this.o;
    const now = this.o.now ?? Date.now;
    const store = this.store;
    const removed = store.removeOldTemporaries(undefined, now());
    if (removed.length > 0) logger.info("Removed temporaries of killed writers", { files: removed });
    const { reservations, skipped } = readStoreView(store, (this.o.boot ?? currentBoot)(), (this.o.sandbox ?? (() => noSandboxProbe))());
    metrics.ipamSkippedFiles.set(skipped.length);
    const pods = await this.o.pods.view();
    const at = now();
    const tornGraceMs = this.o.tornGraceMs ?? TORN_ADD_GRACE_MS;
    const judged = judgeReservations(reservations, pods, {
      now: at,
      graceMs: this.o.graceMs,
      tornGraceMs,
      suspectSince: (r) => this.suspects.get(reservationKey(r)),
    });
    metrics.ipamReservations.set(reservations.length);
    if (pods.kind === "unavailable" || pods.kind === "unverified") {
      // Suspicions stay as they were: the API being away, or a node name not this node's,
      // neither confirms nor clears them.
      metrics.leakSweepsSkipped.inc({ reason: pods.kind === "unverified" ? "node-unverified" : "pods-unavailable" });
      if (pods.reason !== this.lastSkip) {
        if (pods.kind === "unverified") logger.error("Leak recovery refuses to release any address: the node name is not shown to be this node's", { reason: pods.reason });
        else logger.warn("Pods cannot be read; no address is released", { reason: pods.reason });
      }
      this.lastSkip = pods.reason;
      this.report(pods, at, reservations.length, skipped);
      return judged;
    }
    if (this.lastSkip) logger.info("Leak recovery judges reservations again", { pods: pods.kind });
    this.lastSkip = "";
    const next = new Map<string, number>();
    for (const j of suspected(judged)) {
      const key = reservationKey(j.reservation);
      next.set(key, this.suspects.get(key) ?? at);
    }
    this.suspects = next;
    for (const { reservation: r, verdict } of leaked(judged)) {
      if (verdict.state !== "leaked") continue;
      try {
        if (!releaseReservation(store, r, at, tornGraceMs)) continue; // DEL or GC freed it meanwhile
      } catch (err) {
        logger.warn("Releasing a leaked address failed", { address: r.ip, containerId: r.containerID, error: errorMessage(err) });
        continue;
      }
      this.suspects.delete(reservationKey(r));
      metrics.leaksReleased.inc({ reason: verdict.reason });
      logger.info("Released leaked address", {
        address: r.ip,
        containerId: r.containerID,
        ifname: r.ifname,
        ...(r.pod ? { pod: `${r.pod.namespace}/${r.pod.name}`, podUid: r.pod.uid } : {}),
        reason: verdict.reason,
        why: verdict.why,
      });
    }
    metrics.leakSuspects.set(this.suspects.size);
    this.report(pods, at, reservations.length, skipped);
    return judged;
  }

  /** Writes the sweep's outcome for `twilld status`; a failed write costs the report only. */
  private report(pods: PodsView, at: number, reservations: number, skipped: SkippedName[]): void {
    const state: SweepState = { listed: "releasing", none: "boot-only", unverified: "refused", unavailable: "blind" }[pods.kind] as SweepState;
    const reason = pods.kind === "listed" ? "" : pods.reason;
    if (this.state?.state !== state || this.state.reason !== reason) this.state = { state, reason, since: at };
    if (!this.o.reportFile) return;
    const report: LeakReport = {
      at, state, ...(reason ? { reason } : {}), since: this.state.since, reservations, suspects: this.suspects.size, skipped,
    };
    try {
      writeLeakReport(this.o.reportFile, report);
    } catch (err) {
      this.o.logger.warn("Writing the leak report failed", { path: this.o.reportFile, error: errorMessage(err) });
    }
  }
}
