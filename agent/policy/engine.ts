import { bridgeNetfilterLoaded, ensureBridgeNetfilter } from "../../shared/kernel/bridge.js";
import type { NodeKernel } from "../../shared/kernel/node-kernel.js";
import { applyNftScript } from "../../shared/kernel/nft.js";
import type { Logger } from "../../shared/log.js";
import { writePolicyReady } from "../../shared/policy-ready.js";
import { errorMessage } from "../errors.js";
import { compilePolicies, type DenyMode } from "./compile.js";
import type { PolicyMetrics } from "./metrics.js";
import { policyReadyOf } from "./new-pods.js";
import type { PolicyPlan } from "./plan.js";
import { writePolicyReport, type PolicyReport } from "./report.js";
import { POLICY_TABLE, renderRuleset, renderUpdate, type Ruleset } from "./ruleset.js";
import type { PolicySnapshot } from "./types.js";

/**
 * Keeps the node's nftables policy table equal to the compiled snapshot. `update` is the one
 * seam: the Kubernetes watch calls it with a whole snapshot on every change, tests call it
 * with plain objects. Applies are coalesced (one at a time; changes during one are applied
 * right after it, together) and skipped when the ruleset text is unchanged.
 *
 * Until the first snapshot nothing is written: a table left by the previous run of the agent
 * keeps enforcing while it restarts. Stopping leaves the table in place for the same reason.
 */

export interface PolicyEngineOptions {
  nodeName: string;
  /** The node namespace's kernel: nft for rulesets, netlink for counters and the bridge. */
  ip: Pick<NodeKernel, "nft" | "nftCounters" | "bridgeNetfilter">;
  /** The pod bridge whose bridged traffic must pass netfilter (same-node pod to pod). */
  bridge: string;
  logDropsPerSecond?: number;
  deny?: DenyMode;
  /** Re-check that the table is there, re-read drop counters, at least this often. */
  resyncMs: number;
  reportFile?: string;
  /** Where the plugin learns which of this node's pod addresses the ruleset in force covers. */
  readyFile?: string;
  logger: Logger;
  metrics: PolicyMetrics;
  /** Default twill-policy; tests use their own. */
  table?: string;
  now?: () => number;
}

export interface ApplyStats {
  compileMs: number;
  applyMs: number;
  rules: number;
  elements: number;
  /** The whole ruleset's text. */
  bytes: number;
  /** What was sent to nft: an update's size, or the whole ruleset's; 0 when nothing changed. */
  transactionBytes: number;
  /** False when the ruleset was unchanged and nothing was written. */
  applied: boolean;
}

export class PolicyEngine {
  private snapshot: PolicySnapshot | null = null;
  /** When the oldest change not yet in the kernel arrived. */
  private pendingSince: number | undefined;
  private applying: Promise<void> | null = null;
  private again = false;
  private appliedScript: string | null = null;
  private plan: PolicyPlan | null = null;
  /** Counter name -> packets already accounted, for the table generation in the kernel. */
  private seen = new Map<string, number>();
  private readonly drops = new Map<string, { ingress: number; egress: number }>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastError: string | undefined;
  private appliedAt: number | undefined;
  private lastRuleset: (Ruleset & { compileMs: number; applyMs: number }) | undefined;
  private readyText: string | undefined;
  /** The policies the last compile refused, and the reasons already logged. */
  private refused: PolicyPlan["refused"] = [];
  private refusalsLogged = new Map<string, string>();
  /** Stats of the last apply round, for tests and the benchmark. */
  lastStats: ApplyStats | undefined;

  constructor(private readonly o: PolicyEngineOptions) {
    o.metrics.enabled.set(1);
  }

  private get table(): string {
    return this.o.table ?? POLICY_TABLE;
  }
  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  start(): void {
    this.writeReport();
    this.timer = setInterval(() => void this.resync(), this.o.resyncMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.applying;
  }

  /** A complete view of policies, pods and namespaces; `eventAt` is when its change was seen. */
  update(snapshot: PolicySnapshot, eventAt = this.now()): void {
    this.snapshot = snapshot;
    if (this.pendingSince === undefined || eventAt < this.pendingSince) this.pendingSince = eventAt;
    this.schedule();
  }

  /** Resolves when every update so far is in the kernel (or failed). */
  async settled(): Promise<void> {
    while (this.applying) await this.applying;
  }

  private schedule(): void {
    if (this.stopped || !this.snapshot) return;
    if (this.applying) {
      this.again = true;
      return;
    }
    this.applying = (async () => {
      do {
        this.again = false;
        await this.applyOnce();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.applying = null;
    });
  }

  private async applyOnce(): Promise<void> {
    const { metrics, logger } = this.o;
    const snapshot = this.snapshot!;
    const since = this.pendingSince;
    this.pendingSince = undefined;
    const t0 = performance.now();
    try {
      const plan = compilePolicies(snapshot, {
        nodeName: this.o.nodeName,
        ...(this.o.logDropsPerSecond ? { logDropsPerSecond: this.o.logDropsPerSecond } : {}),
        ...(this.o.deny ? { deny: this.o.deny } : {}),
      });
      this.noteRefused(plan.refused);
      const full = renderRuleset(plan, this.table);
      const t1 = performance.now();
      const changed = full.script !== this.appliedScript;
      let bytes = 0;
      if (changed) {
        bytes = await this.write(plan, full);
        metrics.applies.inc();
        metrics.rules.set(full.rules);
        metrics.setElements.set(full.elements);
        metrics.isolatedPods.set(plan.pods.length);
        if (since !== undefined) metrics.enforceSeconds.observe(Math.max(0, this.now() - since) / 1000);
        logger.info("Applied NetworkPolicy ruleset", { policies: plan.policies.length, isolatedPods: plan.pods.length, rules: full.rules, elements: full.elements, transactionBytes: bytes });
      }
      const t2 = performance.now();
      metrics.applySeconds.observe((t2 - t0) / 1000);
      this.lastStats = { compileMs: t1 - t0, applyMs: t2 - t1, rules: full.rules, elements: full.elements, bytes: full.bytes, transactionBytes: bytes, applied: changed };
      if (changed) {
        this.lastRuleset = { ...full, compileMs: t1 - t0, applyMs: t2 - t1 };
        this.appliedAt = this.now();
      }
      this.lastError = undefined;
      this.writeReady(snapshot);
    } catch (err) {
      metrics.applyErrors.inc();
      this.lastError = errorMessage(err);
      // The next resync tries again; the previous ruleset stays in force meanwhile.
      this.pendingSince = since;
      logger.error("Applying the NetworkPolicy ruleset failed; the previous one stays in force", { error: this.lastError });
    }
    this.writeReport();
  }

  /** Logs a refused policy once per reason (not on every apply), and counts them. */
  private noteRefused(refused: PolicyPlan["refused"]): void {
    this.refused = refused;
    this.o.metrics.refused.set(refused.length);
    const now = new Map(refused.map((r) => [r.policy, r.reason]));
    for (const r of refused) {
      if (this.refusalsLogged.get(r.policy) === r.reason) continue;
      this.o.logger.warn("NetworkPolicy cannot be compiled; its pods get it as allowing nothing", { policy: r.policy, reason: r.reason, pods: r.pods });
    }
    this.refusalsLogged = now;
  }

  /**
   * Puts `plan` in the kernel: as an update of the plan already there when there is one, else
   * (start-up, after a failure) by replacing the table. Returns the transaction's size.
   */
  private async write(plan: PolicyPlan, full: Ruleset): Promise<number> {
    const { ip, logger } = this.o;
    const op = `apply the NetworkPolicy ruleset (nftables table inet ${this.table})`;
    const prev = this.plan;
    const known = new Set(prev?.pods.map((p) => p.pod) ?? []);
    // Bridged pod-to-pod traffic must reach the rules before they matter; a new pod may be the
    // first on a bridge just created.
    if (plan.pods.some((p) => !known.has(p.pod))) await ensureBridgeNetfilter(ip, this.o.bridge);
    const nextCounters = new Set(plan.counters.map((c) => c.name));
    if (prev) {
      // Counters about to go are read first, so their last drops are not lost.
      if (prev.counters.some((c) => !nextCounters.has(c.name))) await this.collectDrops();
      const update = renderUpdate(prev, plan, this.table);
      try {
        if (update.script !== "") await applyNftScript(ip, update.script, op);
        this.commit(plan, full, nextCounters);
        return update.bytes;
      } catch (err) {
        logger.warn("Updating the NetworkPolicy table failed; replacing it whole", { error: errorMessage(err) });
      }
    }
    await this.collectDrops();
    await applyNftScript(ip, full.script, op);
    // A new table: every counter starts from zero.
    this.seen = new Map();
    this.commit(plan, full, nextCounters);
    return full.bytes;
  }

  private commit(plan: PolicyPlan, full: Ruleset, counters: Set<string>): void {
    this.appliedScript = full.script;
    this.plan = plan;
    for (const name of this.seen.keys()) if (!counters.has(name)) this.seen.delete(name);
  }

  /** Adds what the kernel's drop counters gained since the last read to the metrics. */
  private async collectDrops(): Promise<void> {
    if (!this.plan || this.plan.counters.length === 0) return;
    const counters = await this.o.ip.nftCounters(this.table);
    if (!counters) return;
    for (const c of this.plan.counters) {
      const packets = counters.get(c.name) ?? 0;
      const before = this.seen.get(c.name) ?? 0;
      this.seen.set(c.name, packets);
      const delta = packets >= before ? packets - before : packets;
      if (delta === 0) continue;
      const [namespace, pod] = c.pod.split("/") as [string, string];
      this.o.metrics.dropped.inc({ namespace, pod, direction: c.direction }, delta);
      const total = this.drops.get(c.pod) ?? { ingress: 0, egress: 0 };
      total[c.direction] += delta;
      this.drops.set(c.pod, total);
    }
  }

  /** Re-reads counters; re-applies when the table vanished (flushed by hand, say). */
  private async resync(): Promise<void> {
    if (this.stopped || this.applying || !this.plan) {
      if (this.lastError !== undefined) this.schedule();
      return;
    }
    try {
      const present = await this.o.ip.nftCounters(this.table);
      if (!present) {
        this.o.logger.warn("The NetworkPolicy table is gone; applying it again", { table: this.table });
        this.appliedScript = null;
        this.plan = null;
        this.pendingSince = this.now();
        this.schedule();
        return;
      }
      await this.collectDrops();
      if (this.plan.pods.length > 0) await ensureBridgeNetfilter(this.o.ip, this.o.bridge);
      if (this.lastError !== undefined) this.schedule();
      this.writeReport();
    } catch (err) {
      this.o.logger.warn("Checking the NetworkPolicy table failed", { error: errorMessage(err) });
    }
  }

  report(): PolicyReport {
    const plan = this.plan;
    const r: PolicyReport = {
      enabled: true,
      policies: plan?.policies ?? [],
      drops: (plan?.pods ?? []).map((p) => ({ pod: p.pod, ...(this.drops.get(p.pod) ?? { ingress: 0, egress: 0 }) })),
    };
    if (!plan) r.reason = this.snapshot ? "first apply pending" : "waiting for the first complete list of policies, pods and namespaces";
    if (this.appliedAt !== undefined) r.appliedAt = this.appliedAt;
    if (this.lastError !== undefined) r.error = this.lastError;
    if (this.refused.length > 0) r.refused = this.refused;
    if (plan && plan.pods.length > 0 && !bridgeNetfilterLoaded()) {
      r.warning = "br_netfilter is not loaded: pods on this node reach each other whatever the policy says (modprobe br_netfilter)";
    }
    if (this.lastRuleset) {
      const { rules, elements, bytes, compileMs, applyMs } = this.lastRuleset;
      r.ruleset = { rules, elements, bytes, compileMs: round(compileMs), applyMs: round(applyMs) };
    }
    return r;
  }

  /** Tells the plugin what is in force now (after the kernel has it, never before). */
  private writeReady(snapshot: PolicySnapshot): void {
    if (!this.o.readyFile) return;
    const ready = policyReadyOf(snapshot, this.o.nodeName);
    const text = JSON.stringify(ready);
    if (text === this.readyText) return;
    try {
      writePolicyReady(this.o.readyFile, ready);
      this.readyText = text;
    } catch (err) {
      this.o.logger.warn("Writing the policy ready file failed", { path: this.o.readyFile, error: errorMessage(err) });
    }
  }

  private writeReport(): void {
    if (!this.o.reportFile) return;
    try {
      writePolicyReport(this.o.reportFile, this.report());
    } catch (err) {
      this.o.logger.warn("Writing the policy report failed", { path: this.o.reportFile, error: errorMessage(err) });
    }
  }
}

const round = (ms: number): number => Math.round(ms * 10) / 10;
