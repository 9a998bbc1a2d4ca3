import { bridgeNetfilterLoaded, ensureBridgeNetfilter } from "../../shared/kernel/bridge.js";
import type { NodeKernel } from "../../shared/kernel/node-kernel.js";
import { applyNftScript } from "../../shared/kernel/nft.js";
import type { Logger } from "../../shared/log.js";
import { writePolicyReady } from "../../shared/policy-ready.js";
import { errorMessage } from "../errors.js";
import { compilePolicies, type CompileOptions, type DenyMode } from "./compile.js";
import { IncrementalPolicyCompiler } from "./incremental.js";
import type { PolicyMetrics } from "./metrics.js";
import { policyReadyOf } from "./new-pods.js";
import type { DropCounter, PolicyPlan } from "./plan.js";
import { writePolicyReport, type PolicyReport } from "./report.js";
import { POLICY_TABLE, renderDelta, renderRuleset, renderUpdate, type Ruleset } from "./ruleset.js";
import type { PolicySnapshot } from "./types.js";

/**
 * Keeps the node's nftables policy table equal to the compiled snapshot. `update` is the one
 * seam: the Kubernetes watch calls it with a whole snapshot on every change, tests call it
 * with plain objects. Applies are coalesced (one at a time; changes during one are applied
 * right after it, together) and skipped when nothing changed.
 *
 * A change goes through the incremental compile (incremental.ts): the compiler's state is the
 * table in the kernel, and a snapshot becomes an update of only what it changed (issue 26).
 * The whole table is written at start-up, when it vanished, and when an update failed; if the
 * incremental compile itself fails, the snapshot is compiled whole (compile.ts) and the table
 * replaced, so an unsure compiler never leaves a wrong table. Each such whole compile is
 * counted in twill_policy_whole_compiles_total by reason.
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
  /**
   * False: every change is compiled whole and applied as the difference from the previous
   * plan, as before the incremental compile (the benchmark's reference). Default true.
   */
  incremental?: boolean;
  /** Makes the incremental compiler; tests wrap it. */
  newCompiler?: (opts: CompileOptions) => IncrementalCompile;
}

/** The incremental compiler as the engine uses it. */
export type IncrementalCompile = Pick<IncrementalPolicyCompiler, "update" | "plan" | "inForce" | "summary" | "size">;

export interface ApplyStats {
  /** "whole": the table was compiled whole (start-up, the repair, the whole-compile mode). */
  path: "incremental" | "whole";
  compileMs: number;
  applyMs: number;
  rules: number;
  elements: number;
  /** The whole ruleset's text, when this round rendered it. */
  bytes?: number;
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
  /** The incremental compile whose state is the table in the kernel. */
  private compiler: IncrementalCompile | null = null;
  /** The table in the kernel as a whole compile made it (whole-compile mode, and after a fallback). */
  private plan: PolicyPlan | null = null;
  /** Why the next round compiles whole, once there is neither. */
  private wholeReason: WholeReason = "start";
  /** What the table in the kernel enforces; made when asked (it lists every local pod). */
  private inForce: (() => InForce) | null = null;
  private isolatedPods = 0;
  /** The snapshot whose table is in the kernel. */
  private appliedSnapshot: PolicySnapshot | null = null;
  private reportTimer: NodeJS.Timeout | undefined;
  private reportedAt = -Infinity;
  /** The drop counters in the kernel's table. */
  private counters = new Map<string, DropCounter>();
  /** Counter name -> packets already accounted, for the table generation in the kernel. */
  private seen = new Map<string, number>();
  private readonly drops = new Map<string, { ingress: number; egress: number }>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastError: string | undefined;
  private appliedAt: number | undefined;
  private lastRuleset: { rules: number; elements: number; bytes: number; compileMs: number; applyMs: number } | undefined;
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
    if (this.reportTimer) this.writeReport();
  }

  /**
   * A complete view of policies, pods and namespaces; `eventAt` is when its change was seen.
   * Its objects are not changed afterwards (a changed pod is a new object): the incremental
   * compile keeps them and tells an unchanged one by identity first.
   */
  update(snapshot: PolicySnapshot, eventAt = this.now()): void {
    this.snapshot = snapshot;
    if (this.pendingSince === undefined || eventAt < this.pendingSince) this.pendingSince = eventAt;
    this.schedule();
  }

  /**
   * What flows are told by: the newest snapshot (every pod by address) and what the table in
   * the kernel enforces (the pod and direction of each drop counter, the policies isolating each
   * pod). Null until the first snapshot, and the second until the first apply.
   */
  flowView(): { snapshot: PolicySnapshot | null; enforced: InForce | null } {
    return { snapshot: this.snapshot, enforced: this.inForce?.() ?? null };
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
      const round = this.o.incremental === false ? await this.applyWhole(snapshot) : await this.applyIncremental(snapshot);
      this.inForce = once(round.inForce);
      this.isolatedPods = round.summary.isolatedPods;
      this.noteRefused(round.summary.refused);
      const t2 = performance.now();
      const { rules, elements } = round.size;
      if (round.applied) {
        metrics.applies.inc();
        metrics.rules.set(rules);
        metrics.setElements.set(elements);
        metrics.isolatedPods.set(round.summary.isolatedPods);
        if (since !== undefined) metrics.enforceSeconds.observe(Math.max(0, this.now() - since) / 1000);
        const fields = { policies: round.summary.policies, isolatedPods: round.summary.isolatedPods, rules, elements, transactionBytes: round.transactionBytes };
        // An update per pod event is routine; a whole table is worth a line.
        if (round.path === "whole") logger.info("Applied NetworkPolicy ruleset", fields);
        else logger.debug("Updated NetworkPolicy ruleset", fields);
      }
      metrics.applySeconds.observe((t2 - t0) / 1000);
      const applyMs = t2 - t0 - round.compileMs;
      this.lastStats = { path: round.path, compileMs: round.compileMs, applyMs, rules, elements, ...(round.bytes !== undefined ? { bytes: round.bytes } : {}), transactionBytes: round.transactionBytes, applied: round.applied };
      if (round.applied) {
        this.lastRuleset = { rules, elements, bytes: round.bytes ?? this.lastRuleset?.bytes ?? 0, compileMs: round.compileMs, applyMs };
        this.appliedAt = this.now();
      }
      this.lastError = undefined;
      this.appliedSnapshot = snapshot;
      this.writeReady(snapshot);
      if (round.path === "whole") this.writeReport();
      else this.writeReportSoon();
    } catch (err) {
      metrics.applyErrors.inc();
      this.lastError = errorMessage(err);
      // The next resync tries again; the previous ruleset stays in force meanwhile.
      this.pendingSince = since;
      logger.error("Applying the NetworkPolicy ruleset failed; the previous one stays in force", { error: this.lastError });
      // The compiler may hold the snapshot that failed: what is in force is the last applied one's.
      const applied = this.appliedSnapshot;
      this.inForce = applied ? once(() => compilePolicies(applied, this.compileOptions())) : null;
      this.writeReport();
    }
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

  private compileOptions(): CompileOptions {
    return {
      nodeName: this.o.nodeName,
      ...(this.o.logDropsPerSecond ? { logDropsPerSecond: this.o.logDropsPerSecond } : {}),
      ...(this.o.deny ? { deny: this.o.deny } : {}),
    };
  }

  /**
   * The snapshot through the incremental compile: an update of what changed. Without a
   * compiler (start-up, the table gone, a failure) one is made from the snapshot, and the
   * whole table written from it.
   */
  private async applyIncremental(snapshot: PolicySnapshot): Promise<Round> {
    const t0 = performance.now();
    const compiler = this.compiler;
    if (compiler) {
      let delta;
      try {
        delta = compiler.update(snapshot);
      } catch (err) {
        return this.fallBack(snapshot, err);
      }
      const update = renderDelta(delta, this.table);
      const compileMs = performance.now() - t0;
      const round = { path: "incremental", compileMs, transactionBytes: update.bytes, applied: update.script !== "" } as const;
      const done = () => ({ ...round, inForce: () => compiler.inForce(), summary: compiler.summary(), size: compiler.size() });
      if (update.script === "") return done();
      try {
        await this.send(update.script, delta.addCounters.length > 0, delta.deleteCounters.length > 0);
        for (const c of delta.addCounters) this.counters.set(c.name, c);
        for (const name of delta.deleteCounters) this.forgetCounter(name);
        return done();
      } catch (err) {
        this.o.logger.warn("Updating the NetworkPolicy table failed; replacing it whole", { error: errorMessage(err) });
        // The kernel kept its table (a transaction is all or nothing); the compiler holds the
        // next one. Should the replace fail too, the next round starts from the snapshot.
        this.compiler = null;
        this.wholeReason = "apply-failed";
        const plan = compiler.plan();
        const full = renderRuleset(plan, this.table);
        await this.replace(plan, full);
        this.compiler = compiler;
        return { ...done(), bytes: full.bytes, transactionBytes: full.bytes };
      }
    }
    this.o.metrics.wholeCompiles.inc({ reason: this.wholeReason });
    const fresh = (this.o.newCompiler ?? ((o) => new IncrementalPolicyCompiler(o)))(this.compileOptions());
    try {
      fresh.update(snapshot);
    } catch (err) {
      return this.fallBack(snapshot, err);
    }
    const plan = fresh.plan();
    const full = renderRuleset(plan, this.table);
    const compileMs = performance.now() - t0;
    const { bytes, applied } = await this.write(plan, full);
    this.compiler = fresh;
    this.plan = null;
    return { path: "whole", compileMs, bytes: full.bytes, transactionBytes: bytes, applied, inForce: () => fresh.inForce(), summary: fresh.summary(), size: fresh.size() };
  }

  /** The incremental compile failed: unsure of its state, compile whole and replace the table. */
  private async fallBack(snapshot: PolicySnapshot, err: unknown): Promise<Round> {
    this.o.logger.debug("The incremental NetworkPolicy compile failed; compiling whole", { error: errorMessage(err) });
    this.o.metrics.wholeCompiles.inc({ reason: "incremental-failed" });
    this.compiler = null;
    this.wholeReason = "incremental-failed";
    // Its state is not the table's any more, and there is no plan of the table: replace it.
    this.plan = null;
    return this.applyWhole(snapshot);
  }

  /** The snapshot compiled whole, applied as the difference from the plan in the kernel. */
  private async applyWhole(snapshot: PolicySnapshot): Promise<Round> {
    const t0 = performance.now();
    const plan = compilePolicies(snapshot, this.compileOptions());
    const full = renderRuleset(plan, this.table);
    const compileMs = performance.now() - t0;
    const { bytes, applied } = await this.write(plan, full);
    const summary = { policies: plan.policies.length, isolatedPods: plan.pods.length, refused: plan.refused };
    return { path: "whole", compileMs, bytes: full.bytes, transactionBytes: bytes, applied, inForce: () => plan, summary, size: { rules: full.rules, elements: full.elements } };
  }

  /**
   * Puts `plan` in the kernel: as an update of the plan already there when there is one, else
   * (start-up, after a failure) by replacing the table. Returns the transaction's size.
   */
  private async write(plan: PolicyPlan, full: Ruleset): Promise<{ bytes: number; applied: boolean }> {
    const prev = this.plan;
    if (prev) {
      const update = renderUpdate(prev, plan, this.table);
      if (update.script === "") return { bytes: 0, applied: false };
      try {
        const next = new Set(plan.counters.map((c) => c.name));
        const gone = [...this.counters.keys()].filter((name) => !next.has(name));
        await this.send(update.script, plan.counters.some((c) => !this.counters.has(c.name)), gone.length > 0);
        this.plan = plan;
        for (const name of gone) this.forgetCounter(name);
        for (const c of plan.counters) this.counters.set(c.name, c);
        return { bytes: update.bytes, applied: true };
      } catch (err) {
        this.o.logger.warn("Updating the NetworkPolicy table failed; replacing it whole", { error: errorMessage(err) });
      }
    }
    await this.replace(plan, full);
    this.plan = plan;
    return { bytes: full.bytes, applied: true };
  }

  /** Replaces the whole table: every counter starts from zero. */
  private async replace(plan: PolicyPlan, full: Ruleset): Promise<void> {
    if (plan.pods.length > 0) await ensureBridgeNetfilter(this.o.ip, this.o.bridge);
    await this.collectDrops();
    await applyNftScript(this.o.ip, full.script, this.operation());
    this.seen = new Map();
    this.counters = new Map(plan.counters.map((c) => [c.name, c]));
  }

  /**
   * Sends an update transaction. Bridged pod-to-pod traffic must reach the rules before they
   * matter (a new pod may be the first on a bridge just made); counters about to go are read
   * first, so their last drops are not lost.
   */
  private async send(script: string, newPods: boolean, countersGo: boolean): Promise<void> {
    if (newPods) await ensureBridgeNetfilter(this.o.ip, this.o.bridge);
    if (countersGo) await this.collectDrops();
    await applyNftScript(this.o.ip, script, this.operation());
  }

  private operation(): string {
    return `apply the NetworkPolicy ruleset (nftables table inet ${this.table})`;
  }

  private forgetCounter(name: string): void {
    this.counters.delete(name);
    this.seen.delete(name);
  }

  /** Adds what the kernel's drop counters gained since the last read to the metrics. */
  private async collectDrops(): Promise<void> {
    if (this.counters.size === 0) return;
    const counters = await this.o.ip.nftCounters(this.table);
    if (!counters) return;
    for (const c of this.counters.values()) {
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
    if (this.stopped || this.applying || !this.inForce || (!this.compiler && !this.plan)) {
      if (this.lastError !== undefined) this.schedule();
      return;
    }
    try {
      const present = await this.o.ip.nftCounters(this.table);
      if (!present) {
        this.o.logger.warn("The NetworkPolicy table is gone; applying it again", { table: this.table });
        this.compiler = null;
        this.plan = null;
        this.wholeReason = "table-gone";
        this.counters = new Map();
        this.pendingSince = this.now();
        this.schedule();
        return;
      }
      await this.collectDrops();
      if (this.isolatedPods > 0) await ensureBridgeNetfilter(this.o.ip, this.o.bridge);
      if (this.lastError !== undefined) this.schedule();
      this.writeReport();
    } catch (err) {
      this.o.logger.warn("Checking the NetworkPolicy table failed", { error: errorMessage(err) });
    }
  }

  report(): PolicyReport {
    const plan = this.inForce?.();
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

  private writeReportSoon(): void {
    if (!this.o.reportFile || this.reportTimer) return;
    const wait = this.reportedAt + REPORT_EVERY_MS - this.now();
    if (wait <= 0) return this.writeReport();
    this.reportTimer = setTimeout(() => this.writeReport(), wait).unref();
  }

  private writeReport(): void {
    clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    if (!this.o.reportFile) return;
    this.reportedAt = this.now();
    try {
      writePolicyReport(this.o.reportFile, this.report());
    } catch (err) {
      this.o.logger.warn("Writing the policy report failed", { path: this.o.reportFile, error: errorMessage(err) });
    }
  }
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

/** What the table in the kernel enforces: the report's, the metrics' and the drop counters' part of a plan. */
export type InForce = Pick<PolicyPlan, "counters" | "pods" | "policies" | "refused">;

/** Why everything was compiled anew rather than the change alone. */
type WholeReason = "start" | "table-gone" | "apply-failed" | "incremental-failed";

/** One apply round. */
interface Round {
  path: ApplyStats["path"];
  compileMs: number;
  /** The whole ruleset's text, when rendered. */
  bytes?: number;
  transactionBytes: number;
  applied: boolean;
  inForce: () => InForce;
  summary: { policies: number; isolatedPods: number; refused: PolicyPlan["refused"] };
  size: { rules: number; elements: number };
}

function once<T>(f: () => T): () => T {
  let made: { value: T } | undefined;
  return () => (made ??= { value: f() }).value;
}

/**
 * The report lists every policy and local pod: after an update it is written at most this
 * often, a burst of pod events being one write.
 */
const REPORT_EVERY_MS = 1000;
