import type { Logger } from "../../shared/log.js";
import { Store } from "../../ipam/store.js";
import { errorMessage } from "../errors.js";
import type { AgentMetrics } from "../metrics.js";
import { judgeReservations, leaked, reservationKey, suspected, type Judged } from "./leaks.js";
import type { PodSource } from "./pods.js";
import { currentBoot, readReservations, type BootInfo } from "./reservations.js";

/**
 * The agent's leak recovery: every interval, judge this node's reservations against the pods
 * running on it (leaks.ts) and release what has looked leaked for the grace period. The
 * suspicion is remembered between sweeps, so a reservation is released only after sweeps
 * spanning the whole grace period saw it unused; a restart of the agent starts it over.
 */

export interface LeakRecoveryOptions {
  /** twill-ipam's store of the network: <dataDir>/<network>. */
  storeDir: string;
  pods: PodSource;
  graceMs: number;
  intervalMs: number;
  logger: Logger;
  metrics: AgentMetrics;
  now?: () => number;
  boot?: () => BootInfo;
}

export class LeakRecovery {
  private suspects = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private lastSkip = "";

  constructor(private readonly o: LeakRecoveryOptions) {}

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
    const reservations = readReservations(this.o.storeDir, (this.o.boot ?? currentBoot)());
    const pods = await this.o.pods.view();
    const at = now();
    const judged = judgeReservations(reservations, pods, {
      now: at,
      graceMs: this.o.graceMs,
      suspectSince: (r) => this.suspects.get(reservationKey(r)),
    });
    metrics.ipamReservations.set(reservations.length);
    if (pods.kind === "unavailable") {
      // Suspicions stay as they were: the API being away neither confirms nor clears them.
      metrics.leakSweepsSkipped.inc();
      if (pods.reason !== this.lastSkip) logger.warn("Pods cannot be read; no address is released", { reason: pods.reason });
      this.lastSkip = pods.reason;
      return judged;
    }
    this.lastSkip = "";
    const next = new Map<string, number>();
    for (const j of suspected(judged)) {
      const key = reservationKey(j.reservation);
      next.set(key, this.suspects.get(key) ?? at);
    }
    this.suspects = next;
    const store = new Store(this.o.storeDir);
    for (const { reservation: r, verdict } of leaked(judged)) {
      if (verdict.state !== "leaked") continue;
      try {
        if (!store.releaseAddress(r.ip, r)) continue; // DEL or GC freed it meanwhile
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
    return judged;
  }
}
