// The CNI benchmark's figures: statistics of the samples, twill's phase timings from its log,
// the table (every figure beside the start floor and as a ratio to each reference) and the
// issue's targets (#22), judged on the medians. A report, not a test: nothing here fails a run.
import type { Sample } from "./invoke.js";
import { OPEN_NAMESPACE, POLICY_NAMESPACE, WAIT_CAP_MS } from "./policy-wait.js";

export interface PhaseStats {
  median: number;
  p95: number;
  perSecond: number;
  cpuMedian: number;
  failures: number;
}

/** One column: a plugin, or the start floor (dist/bin/noop) measured the same way. */
export interface RunStats {
  seqAdd: PhaseStats;
  seqDel: PhaseStats;
  parAdd: PhaseStats;
  parDel: PhaseStats;
  version: PhaseStats;
  rssAddKb: number;
  rssDelKb: number;
  firstError?: string;
  /** Medians of the plugin's own phase timings, from its log (twill only). */
  phases?: { add: Record<string, number>; del: Record<string, number>; count: number };
}

export const quantile = (xs: number[], q: number): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
};

export function stats(samples: Sample[], wallMs: number): PhaseStats {
  const ms = samples.map((s) => s.ms);
  return {
    median: quantile(ms, 0.5),
    p95: quantile(ms, 0.95),
    perSecond: (samples.length * 1000) / wallMs,
    cpuMedian: quantile(samples.map((s) => s.cpuMs), 0.5),
    failures: samples.filter((s) => !s.ok).length,
  };
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};

/**
 * Medians of the closing lines of twill's log ("Added pod", "Deleted pod"): `before` is
 * `sinceStart`, the time from the runtime's clock origin to the operation (loading the code,
 * reading stdin and the environment; the origin is set after part of the runtime's start-up);
 * `operation` is `ms`; the rest are its phases, which overlap where twill runs them side by side.
 */
export function phaseMedians(logText: string): RunStats["phases"] {
  const byMsg: Record<string, Record<string, number[]>> = { "Added pod": {}, "Deleted pod": {} };
  let count = 0;
  for (const line of logText.split("\n")) {
    if (!line.startsWith("{")) continue;
    let entry: { msg?: string; sinceStart?: number; ms?: number; phases?: Record<string, number> };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    const into = entry.msg ? byMsg[entry.msg] : undefined;
    if (!into || typeof entry.sinceStart !== "number" || typeof entry.ms !== "number") continue;
    count++;
    const put = (k: string, v: number) => (into[k] ??= []).push(v);
    put("before", entry.sinceStart);
    for (const [k, v] of Object.entries(entry.phases ?? {})) put(k, v);
    put("operation", entry.ms);
  }
  const medians = (m: Record<string, number[]>) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, median(v)]));
  return { add: medians(byMsg["Added pod"]!), del: medians(byMsg["Deleted pod"]!), count };
}

export interface WaitStats {
  /** ADDs in the namespace with policies. */
  count: number;
  p50: number;
  p95: number;
  max: number;
  /** ADDs that gave up waiting at WAIT_CAP_MS. */
  capped: number;
}

/** The `policy` phase of the ADDs in POLICY_NAMESPACE logged in `logText` (twill's log). */
export function policyWaits(logText: string): WaitStats {
  const waits: number[] = [];
  for (const line of logText.split("\n")) {
    if (!line.startsWith("{")) continue;
    let entry: { msg?: string; phases?: { policy?: number }; cniArgs?: { K8S_POD_NAMESPACE?: string } };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (entry.msg !== "Added pod" || entry.cniArgs?.K8S_POD_NAMESPACE !== POLICY_NAMESPACE) continue;
    if (typeof entry.phases?.policy === "number") waits.push(entry.phases.policy);
  }
  return {
    count: waits.length,
    p50: quantile(waits, 0.5),
    p95: quantile(waits, 0.95),
    max: waits.length > 0 ? Math.max(...waits) : NaN,
    capped: waits.filter((w) => w >= WAIT_CAP_MS).length,
  };
}

export interface Goal {
  what: string;
  ratio: number;
  /** The ratio must be at most `limit`, or at least it when `atLeast`. */
  limit: number;
  atLeast?: boolean;
}

/** The issue's targets for twill against Flannel's chain, the reference and the floor. */
export function goals(twill: RunStats, flannel: RunStats, reference: RunStats, floor: RunStats, parallel: number): Goal[] {
  return [
    { what: "ADD ≤ 1.0× Flannel's chain", ratio: twill.seqAdd.median / flannel.seqAdd.median, limit: 1.0 },
    { what: "ADD ≤ 1.1× bridge + host-local", ratio: twill.seqAdd.median / reference.seqAdd.median, limit: 1.1 },
    { what: "DEL ≤ 1.0× Flannel's chain", ratio: twill.seqDel.median / flannel.seqDel.median, limit: 1.0 },
    { what: `ADD ${parallel} at a time ≥ Flannel's chain (pods/s)`, ratio: twill.parAdd.perSecond / flannel.parAdd.perSecond, limit: 1.0, atLeast: true },
    { what: "VERSION ≤ 1.15× noop (CPU)", ratio: twill.version.cpuMedian / floor.version.cpuMedian, limit: 1.15 },
  ];
}

export const met = (t: Goal): boolean => (t.atLeast ? t.ratio >= t.limit : t.ratio <= t.limit);

/** The --policies column (twill only): its ADDs by the pod's namespace, its waits, the engine's nft runs. */
export interface PolicyRunStats {
  label: string;
  stats: RunStats;
  withPolicies: { seqAdd: PhaseStats; parAdd: PhaseStats };
  withoutPolicies: { seqAdd: PhaseStats; parAdd: PhaseStats };
  /** The `policy` phase of the ADDs in the namespace with policies: one by one, and `parallel` at a time. */
  wait: { seq: WaitStats; par: WaitStats };
  /** Each `nft -f` of the engine: the start-up table first, then one per change. */
  nftMs: number[];
}

/** The issue's target for the wait, on the one-by-one ADDs: a runtime starting pods one after another. */
export const POLICY_WAIT_P95_MS = 50;

export interface Run {
  masq: boolean;
  /** twill, Flannel's chain, bridge + host-local, in this order, then the floor. */
  columns: { label: string; stats: RunStats }[];
  floor: RunStats;
  policy?: PolicyRunStats;
}

const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const ratio = (a: number, b: number) => (b !== 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : "-");

export function report(runs: Run[], opts: { pods: number; parallel: number; header: string[] }): string {
  const out: string[] = [];
  const p = opts.parallel;
  out.push(`CNI benchmark: ${opts.pods} pods, one after another (the plugins and the floor taking turns on each pod) and ${p} at a time`);
  for (const line of opts.header) out.push(`  ${line}`);
  out.push("");
  for (const run of runs) {
    const [twill, flannel, reference] = run.columns;
    if (!twill || !flannel || !reference) continue;
    const fl = run.floor;
    const both = (s: PhaseStats) => `${f(s.median)} / ${f(s.p95)}`;
    type Row = [name: string, show: (s: RunStats) => string, value: (s: RunStats) => number, floor?: boolean];
    const rows: Row[] = [
      ["ADD ms, median / p95", (s) => both(s.seqAdd), (s) => s.seqAdd.median],
      ["ADD ms minus floor", (s) => f(s.seqAdd.median - fl.seqAdd.median), (s) => s.seqAdd.median - fl.seqAdd.median, false],
      ["DEL ms, median / p95", (s) => both(s.seqDel), (s) => s.seqDel.median],
      ["DEL ms minus floor", (s) => f(s.seqDel.median - fl.seqDel.median), (s) => s.seqDel.median - fl.seqDel.median, false],
      [`ADD ms, ${p} at a time`, (s) => both(s.parAdd), (s) => s.parAdd.median],
      [`DEL ms, ${p} at a time`, (s) => both(s.parDel), (s) => s.parDel.median],
      ["ADD pods/s, one by one", (s) => f(s.seqAdd.perSecond), (s) => s.seqAdd.perSecond],
      [`ADD pods/s, ${p} at a time`, (s) => f(s.parAdd.perSecond), (s) => s.parAdd.perSecond],
      [`DEL pods/s, ${p} at a time`, (s) => f(s.parDel.perSecond), (s) => s.parDel.perSecond],
      ["CPU ms per ADD", (s) => f(s.seqAdd.cpuMedian), (s) => s.seqAdd.cpuMedian],
      ["CPU ms per ADD - floor", (s) => f(s.seqAdd.cpuMedian - fl.seqAdd.cpuMedian), (s) => s.seqAdd.cpuMedian - fl.seqAdd.cpuMedian, false],
      ["CPU ms per DEL", (s) => f(s.seqDel.cpuMedian), (s) => s.seqDel.cpuMedian],
      ["VERSION ms", (s) => f(s.version.median), (s) => s.version.median],
      ["VERSION CPU ms", (s) => f(s.version.cpuMedian), (s) => s.version.cpuMedian],
      ["peak RSS ADD (KB)", (s) => String(s.rssAddKb), (s) => s.rssAddKb],
      ["peak RSS DEL (KB)", (s) => String(s.rssDelKb), (s) => s.rssDelKb],
    ];
    out.push(`ipMasq ${run.masq}`);
    const cols = [26, 16, 16, 16, 14, 15, 12];
    const line = (cells: string[]) => "  " + cells.map((c, i) => c.padEnd(cols[i] ?? 0)).join("").trimEnd();
    out.push(line(["", "twill", "flannel chain", "bridge+h-local", "noop floor", "twill/flannel", "twill/bridge"]));
    for (const [name, show, value, withFloor = true] of rows) {
      out.push(
        line([
          name,
          show(twill.stats),
          show(flannel.stats),
          show(reference.stats),
          withFloor ? show(fl) : "",
          ratio(value(twill.stats), value(flannel.stats)),
          ratio(value(twill.stats), value(reference.stats)),
        ]),
      );
    }
    const ph = twill.stats.phases;
    if (ph && ph.count > 0) {
      out.push(`  twill's own log, medians in ms of ${ph.count} one-by-one ADDs and DELs (phases overlap):`);
      for (const [op, m, wall] of [["ADD", ph.add, twill.stats.seqAdd.median], ["DEL", ph.del, twill.stats.seqDel.median]] as const) {
        const rest = wall - (m.before ?? 0) - (m.operation ?? 0);
        out.push(`    ${op}: ${Object.entries(m).map(([k, v]) => `${k} ${f(v)}`).join(", ")}; outside the log ${f(rest)}`);
      }
      out.push(`    ("before": from the runtime's clock origin, which Bun sets a few ms after exec, through loading the code and reading`);
      out.push(`    stdin and the environment, to the operation; "outside the log": exec and the runtime's start before its clock, exit)`);
    }
    for (const c of [...run.columns, { label: "noop floor", stats: fl }]) {
      const s = c.stats;
      const failures = s.seqAdd.failures + s.seqDel.failures + s.parAdd.failures + s.parDel.failures + s.version.failures;
      if (failures > 0) out.push(`  ${c.label}: ${failures} failed invocations; first: ${s.firstError ?? "?"}`);
    }
    out.push(`  targets (issue #22), on medians:`);
    for (const t of goals(twill.stats, flannel.stats, reference.stats, fl, p)) {
      out.push(`    ${t.what.padEnd(46)}${`${t.ratio.toFixed(2)}×`.padEnd(8)}${met(t) ? "met" : "NOT met"}`);
    }
    if (run.policy) out.push(...policySection(run.policy, p));
    out.push("");
  }
  return out.join("\n");
}

/** The --policies column's lines: ADD with and without policies, the wait, the target. */
function policySection(ps: PolicyRunStats, parallel: number): string[] {
  const out: string[] = [];
  const both = (s: PhaseStats) => `${f(s.median)} / ${f(s.p95)}`;
  const waits = (w: WaitStats) => `${f(w.p50)} / ${f(w.p95)} / ${f(w.max)}`;
  const cols = [40, 22, 22];
  const line = (cells: string[]) => "    " + cells.map((c, i) => c.padEnd(cols[i] ?? 0)).join("").trimEnd();
  out.push(`  NetworkPolicy wait of ADD, twill only (Flannel's chain and bridge + host-local enforce no policy):`);
  out.push(`    ${ps.label}; its pods take turns between ${POLICY_NAMESPACE} (has policies: ADD waits) and ${OPEN_NAMESPACE} (none)`);
  out.push(line(["", "one by one", `${parallel} at a time`]));
  out.push(line([`ADD ms, median / p95, in ${POLICY_NAMESPACE}`, both(ps.withPolicies.seqAdd), both(ps.withPolicies.parAdd)]));
  out.push(line([`ADD ms, median / p95, in ${OPEN_NAMESPACE}`, both(ps.withoutPolicies.seqAdd), both(ps.withoutPolicies.parAdd)]));
  out.push(line(["policy phase ms, p50 / p95 / max", waits(ps.wait.seq), waits(ps.wait.par)]));
  out.push(line([`ADDs in ${POLICY_NAMESPACE} / at the ${WAIT_CAP_MS / 1000} s cap`, `${ps.wait.seq.count} / ${ps.wait.seq.capped}`, `${ps.wait.par.count} / ${ps.wait.par.capped}`]));
  const [startup, ...updates] = ps.nftMs;
  if (startup !== undefined) {
    out.push(`    the engine's nft -f: start-up table ${f(startup)} ms; ${updates.length} updates, p50 / p95 ${f(quantile(updates, 0.5))} / ${f(quantile(updates, 0.95))} ms`);
  }
  const failures = ps.stats.seqAdd.failures + ps.stats.seqDel.failures + ps.stats.parAdd.failures + ps.stats.parDel.failures;
  if (failures > 0) out.push(`    ${failures} failed invocations; first: ${ps.stats.firstError ?? "?"}`);
  const p95 = ps.wait.seq.p95;
  out.push(`  target, on the one-by-one ADDs:`);
  out.push(`    ${`policy wait p95 ≤ ${POLICY_WAIT_P95_MS} ms, none at the cap`.padEnd(46)}${`${f(p95)} ms`.padEnd(10)}${p95 <= POLICY_WAIT_P95_MS && ps.wait.seq.capped === 0 ? "met" : "NOT met"}`);
  return out;
}
