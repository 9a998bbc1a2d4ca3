// ./scripts/bench policy: NetworkPolicy compile and apply at scale, and change-to-enforcement.
//
// A synthetic cluster (policy/synthetic-cluster.ts) of --pods pods (5000) in 50 namespaces and
// --policies policies (1000),
// each selecting one app label of its namespace, admitting peers by podSelector,
// namespaceSelector, both, or an ipBlock with except, on numbered and named ports; a quarter
// also restrict egress. The node under test holds --local pods (110, the kubelet's default
// maximum; "all" puts every pod on it). The real policy engine applies the ruleset with real
// nft in a namespace of its own (a bridge cni0 in it), so the figures include nft parsing the
// transaction and the kernel committing it.
// Reported: the whole table as at start-up (the compile, nft -f) and its size; then --changes
// (60) single changes (a pod relabelled, a pod started with a new address, a policy added)
// from update() to the rules being in the kernel, p50/p95, twice in one run: through the
// incremental compile (what twilld does) and compiled whole and applied as the difference
// (what it did before, and does as the repair), with their transaction sizes. The machine's
// load average is printed beside them: on a shared machine the figures move with it.
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import { Registry } from "prom-client";
import { compilePolicies } from "../../../agent/policy/compile.js";
import { PolicyEngine } from "../../../agent/policy/engine.js";
import { createPolicyMetrics } from "../../../agent/policy/metrics.js";
import type { NetworkPolicy, PodInfo, PolicySnapshot } from "../../../agent/policy/types.js";
import { nullLogger } from "../../../shared/log.js";
import { addNetns, deleteNetns, kernelIn } from "../../../testkit/netns.js";
import { APPS, NAMESPACES, NODE, syntheticCluster } from "./policy/synthetic-cluster.js";

const argv = process.argv.slice(2);
const opt = (name: string, def: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1]! : def);
const PODS = Number(opt("pods", "5000"));
const POLICIES = Number(opt("policies", "1000"));
const LOCAL = opt("local", "110");
const CHANGES = Number(opt("changes", "60"));
const netns = `twbench-policy-${process.pid}`;

const cluster = (): PolicySnapshot => syntheticCluster({ pods: PODS, policies: POLICIES, local: LOCAL === "all" ? PODS : Number(LOCAL) });

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const f1 = (x: number) => x.toFixed(1);

const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");

/** The same changes, one after another, for both paths: the cluster after each. */
function changes(base: PolicySnapshot): { kind: Kind; snapshot: PolicySnapshot }[] {
  const local = LOCAL === "all" ? PODS : Math.min(PODS, Number(LOCAL));
  let current = base;
  return Array.from({ length: CHANGES }, (_, i) => {
    const kind = KINDS[i % KINDS.length]!;
    if (kind === "pod relabelled") {
      const j = (i * 7) % local;
      current = { ...current, pods: current.pods.map((p, x) => (x === j ? { ...p, labels: { ...p.labels, role: p.labels.role === "client" ? "backend" : "client" } } : p)) };
    } else if (kind === "pod started") {
      const app = `app-${i % APPS}`;
      const pod: PodInfo = { namespace: `ns-${i % NAMESPACES}`, name: `late-${i}`, nodeName: NODE, labels: { app, role: "backend" }, ips: [`10.98.${i >> 8}.${i & 255}`], ports: [{ name: "http", port: 8080, protocol: "TCP" }] };
      current = { ...current, pods: [...current.pods, pod] };
    } else {
      // Selecting a pod of this node, as one that selects none changes nothing here.
      const m = (i * 13) % local;
      const policy: NetworkPolicy = { namespace: `ns-${m % NAMESPACES}`, name: `extra-${i}`, podSelector: { matchLabels: { app: `app-${Math.floor(m / NAMESPACES) % APPS}` } }, policyTypes: ["ingress"], ingress: [{ ports: [{ port: 443 }] }], egress: [] };
      current = { ...current, policies: [...current.policies, policy] };
    }
    return { kind, snapshot: current };
  });
}
const KINDS = ["pod relabelled", "pod started", "policy added"] as const;
type Kind = (typeof KINDS)[number];

interface PathResult {
  latencies: Record<Kind, number[]>;
  compile: number[];
  apply: number[];
  bytes: number[];
  paths: Set<string>;
  /** Changes that left the table as it was. */
  unchanged: number;
}

await addNetns(netns);
try {
  execFileSync("ip", ["-n", netns, "link", "add", "cni0", "type", "bridge"]);
  const newEngine = (incremental = true) =>
    new PolicyEngine({ nodeName: NODE, ip: kernelIn(netns), bridge: "cni0", resyncMs: 3_600_000, logger: nullLogger, metrics: createPolicyMetrics(new Registry()), incremental });
  const base = cluster();
  const loadBefore = load();

  // Whole-table applies: a fresh engine knows nothing of the kernel and replaces the table
  // (the first run into an empty namespace), as the agent does at start-up.
  const full = { compile: [] as number[], apply: [] as number[], reference: [] as number[] };
  let engine = newEngine();
  for (let i = 0; i < 5; i++) {
    engine = newEngine();
    engine.update(base);
    await engine.settled();
    const s = engine.lastStats!;
    if (!s.applied) throw new Error("expected a full apply");
    full.compile.push(s.compileMs);
    full.apply.push(s.applyMs);
    const t0 = performance.now();
    compilePolicies(base, { nodeName: NODE });
    full.reference.push(performance.now() - t0);
  }
  const size = engine.lastStats!;
  const report = engine.report();
  await engine.stop();
  const isolated = JSON.parse(execFileSync("ip", ["netns", "exec", netns, "nft", "-j", "list", "map", "inet", "twill-policy", "ingress4"]).toString()).nftables[1].map.elem?.length ?? 0;

  // The same single changes through each path, from the same table, each to enforcement.
  const sequence = changes(base);
  const results: Record<"whole" | "incremental", PathResult> = {} as never;
  for (const path of ["whole", "incremental"] as const) {
    const e = newEngine(path === "incremental");
    e.update(base);
    await e.settled();
    const r: PathResult = { latencies: { "pod relabelled": [], "pod started": [], "policy added": [] }, compile: [], apply: [], bytes: [], paths: new Set(), unchanged: 0 };
    for (const { kind, snapshot } of sequence) {
      const t0 = performance.now();
      e.update(snapshot);
      await e.settled();
      r.latencies[kind].push(performance.now() - t0);
      const s = e.lastStats!;
      if (!s.applied) r.unchanged++;
      r.compile.push(s.compileMs);
      r.apply.push(s.applyMs);
      r.bytes.push(s.transactionBytes);
      r.paths.add(s.path);
    }
    await e.stop();
    results[path] = r;
  }
  const loadAfter = load();

  const pq = (xs: number[]) => `${f1(quantile(xs, 0.5)).padStart(7)} / ${f1(quantile(xs, 0.95)).padEnd(7)}`;
  console.log(`NetworkPolicy: ${POLICIES} policies, ${PODS} pods (${LOCAL === "all" ? PODS : LOCAL} on this node), ${NAMESPACES} namespaces`);
  console.log(`  load average (1, 5, 15 min): ${loadBefore} at the start, ${loadAfter} at the end`);
  console.log(`  policies selecting local pods: ${report.policies.length}; isolated local pods: ${isolated}`);
  console.log(`  whole ruleset: ${size.rules} rules, ${size.elements} set elements, ${((size.bytes ?? 0) / 1024).toFixed(0)} KiB`);
  console.log(`  whole-table apply (start-up)   compile p50 ${f1(quantile(full.compile, 0.5))} ms   nft -f p50 ${f1(quantile(full.apply, 0.5))} ms   (5 runs, max ${f1(Math.max(...full.compile))} / ${f1(Math.max(...full.apply))} ms); whole compile alone p50 ${f1(quantile(full.reference, 0.5))} ms`);
  console.log(`  change to enforcement (${CHANGES} changes each), ms p50 / p95:   compiled whole        incremental`);
  for (const kind of KINDS) console.log(`    ${kind.padEnd(16)}                               ${pq(results.whole.latencies[kind])}     ${pq(results.incremental.latencies[kind])}`);
  const all = (r: PathResult) => Object.values(r.latencies).flat();
  console.log(`    ${"all".padEnd(16)}                               ${pq(all(results.whole))}     ${pq(all(results.incremental))}`);
  console.log(`    of which compile                                ${pq(results.whole.compile)}     ${pq(results.incremental.compile)}`);
  console.log(`    of which apply (nft and the rest)               ${pq(results.whole.apply)}     ${pq(results.incremental.apply)}`);
  const kib = (xs: number[]) => `${f1(quantile(xs, 0.5) / 1024).padStart(7)} / ${f1(quantile(xs, 0.95) / 1024).padEnd(7)}`;
  console.log(`    update transaction KiB                          ${kib(results.whole.bytes)}     ${kib(results.incremental.bytes)}`);
  for (const path of ["whole", "incremental"] as const) if (results[path].unchanged > 0) console.log(`  note: ${results[path].unchanged} changes left the table as it was (${path})`);
  if (!results.incremental.paths.has("incremental") || results.incremental.paths.size !== 1) console.log(`  note: the incremental engine took paths ${[...results.incremental.paths].join(", ")}`);
} finally {
  await deleteNetns(netns);
}
