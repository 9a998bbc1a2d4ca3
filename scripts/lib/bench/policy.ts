// ./scripts/bench policy: NetworkPolicy compile and apply at scale, and change-to-enforcement.
//
// A synthetic cluster of --pods pods (5000) in 50 namespaces and --policies policies (1000),
// each selecting one app label of its namespace, admitting peers by podSelector,
// namespaceSelector, both, or an ipBlock with except, on numbered and named ports; a quarter
// also restrict egress. The node under test holds --local pods (110, the kubelet's default
// maximum; "all" puts every pod on it). The real policy engine applies the ruleset with real
// nft in a namespace of its own (a bridge cni0 in it), so the figures include nft parsing the
// transaction and the kernel committing it.
// Reported: compile (pure) and apply (nft -f) of the whole table, as at start-up, and its size;
// then --changes (60) single changes (a pod relabelled, a pod started with a new address, a
// policy added) from update() to the rules being in the kernel, p50/p95, applied as in-place
// updates, with their transaction size.
import { execFileSync } from "node:child_process";
import { Registry } from "prom-client";
import { PolicyEngine } from "../../../agent/policy/engine.js";
import { createPolicyMetrics } from "../../../agent/policy/metrics.js";
import type { NetworkPolicy, PodInfo, PolicySnapshot } from "../../../agent/policy/types.js";
import { nullLogger } from "../../../shared/log.js";
import { addNetns, deleteNetns, kernelIn } from "../../../testkit/netns.js";

const argv = process.argv.slice(2);
const opt = (name: string, def: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1]! : def);
const PODS = Number(opt("pods", "5000"));
const POLICIES = Number(opt("policies", "1000"));
const LOCAL = opt("local", "110");
const CHANGES = Number(opt("changes", "60"));
const NAMESPACES = 50;
const APPS = 20;

const NODE = "node-0";
const netns = `twbench-policy-${process.pid}`;

function cluster(): PolicySnapshot {
  const local = LOCAL === "all" ? PODS : Number(LOCAL);
  const pods: PodInfo[] = Array.from({ length: PODS }, (_, i) => ({
    namespace: `ns-${i % NAMESPACES}`,
    name: `pod-${i}`,
    // Spread so every namespace has local pods; the rest on 100 other nodes.
    nodeName: i < local ? NODE : `node-${1 + (i % 100)}`,
    labels: { app: `app-${Math.floor(i / NAMESPACES) % APPS}`, role: i % 3 === 0 ? "client" : "backend" },
    ips: [`10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, `fd00:10:244::${i.toString(16)}`],
    ports: [{ name: "http", port: 8080, protocol: "TCP" }, { name: "metrics", port: 9090, protocol: "TCP" }],
  }));
  const policies: NetworkPolicy[] = Array.from({ length: POLICIES }, (_, k) => {
    const ns = `ns-${k % NAMESPACES}`;
    const kind = k % 4;
    const peer =
      kind === 0 ? { podSelector: { matchLabels: { role: "client" } } }
      : kind === 1 ? { namespaceSelector: { matchLabels: { tier: `t${k % 5}` } } }
      : kind === 2 ? { namespaceSelector: { matchLabels: { tier: `t${k % 5}` } }, podSelector: { matchLabels: { role: "client" } } }
      : { ipBlock: { cidr: "10.64.0.0/16", except: [`10.64.${k % 256}.0/24`] } };
    return {
      namespace: ns,
      name: `policy-${k}`,
      podSelector: { matchLabels: { app: `app-${Math.floor(k / NAMESPACES) % APPS}` } },
      policyTypes: k % 4 === 3 ? ["ingress", "egress"] : ["ingress"],
      ingress: [{ peers: [peer], ports: [{ port: 8080 + (k % 3) }, { port: "metrics" }, { protocol: "UDP", port: 5000, endPort: 5100 }] }],
      egress: k % 4 === 3 ? [{ peers: [{ podSelector: { matchLabels: { role: "backend" } } }], ports: [{ port: "http" }] }] : [],
    };
  });
  const namespaces = Array.from({ length: NAMESPACES }, (_, i) => ({ name: `ns-${i}`, labels: { "kubernetes.io/metadata.name": `ns-${i}`, tier: `t${i % 5}` } }));
  return { policies, pods, namespaces };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const f1 = (x: number) => x.toFixed(1);

await addNetns(netns);
try {
  execFileSync("ip", ["-n", netns, "link", "add", "cni0", "type", "bridge"]);
  const newEngine = () =>
    new PolicyEngine({ nodeName: NODE, ip: kernelIn(netns), bridge: "cni0", resyncMs: 3_600_000, logger: nullLogger, metrics: createPolicyMetrics(new Registry()) });
  const base = cluster();

  // Whole-table applies: a fresh engine knows nothing of the kernel and replaces the table
  // (the first run into an empty namespace), as the agent does at start-up.
  const full = { compile: [] as number[], apply: [] as number[] };
  let engine = newEngine();
  for (let i = 0; i < 5; i++) {
    engine = newEngine();
    engine.update(base);
    await engine.settled();
    const s = engine.lastStats!;
    if (!s.applied) throw new Error("expected a full apply");
    full.compile.push(s.compileMs);
    full.apply.push(s.applyMs);
  }
  const size = engine.lastStats!;
  const report = engine.report();
  const isolated = JSON.parse(execFileSync("ip", ["netns", "exec", netns, "nft", "-j", "list", "map", "inet", "twill-policy", "ingress4"]).toString()).nftables[1].map.elem?.length ?? 0;

  // Single changes, each to enforcement.
  let current = base;
  const latencies: Record<string, number[]> = { "pod relabelled": [], "pod started": [], "policy added": [] };
  const parts = { compile: [] as number[], apply: [] as number[], bytes: [] as number[] };
  for (let i = 0; i < CHANGES; i++) {
    const kind = Object.keys(latencies)[i % 3]!;
    if (kind === "pod relabelled") {
      const j = (i * 7) % Math.min(PODS, 110);
      current = { ...current, pods: current.pods.map((p, x) => (x === j ? { ...p, labels: { ...p.labels, role: p.labels.role === "client" ? "backend" : "client" } } : p)) };
    } else if (kind === "pod started") {
      const app = `app-${i % APPS}`;
      const pod: PodInfo = { namespace: `ns-${i % NAMESPACES}`, name: `late-${i}`, nodeName: NODE, labels: { app, role: "backend" }, ips: [`10.98.${i >> 8}.${i & 255}`], ports: [{ name: "http", port: 8080, protocol: "TCP" }] };
      current = { ...current, pods: [...current.pods, pod] };
    } else {
      const policy: NetworkPolicy = { namespace: `ns-${i % NAMESPACES}`, name: `extra-${i}`, podSelector: { matchLabels: { app: `app-${i % APPS}` } }, policyTypes: ["ingress"], ingress: [{ ports: [{ port: 443 }] }], egress: [] };
      current = { ...current, policies: [...current.policies, policy] };
    }
    const t0 = performance.now();
    engine.update(current);
    await engine.settled();
    latencies[kind]!.push(performance.now() - t0);
    parts.compile.push(engine.lastStats!.compileMs);
    parts.apply.push(engine.lastStats!.applyMs);
    parts.bytes.push(engine.lastStats!.transactionBytes);
  }
  await engine.stop();

  const all = Object.values(latencies).flat();
  console.log(`NetworkPolicy: ${POLICIES} policies, ${PODS} pods (${LOCAL === "all" ? PODS : LOCAL} on this node), ${NAMESPACES} namespaces`);
  console.log(`  policies selecting local pods: ${report.policies.length}; isolated local pods: ${isolated}`);
  console.log(`  whole ruleset: ${size.rules} rules, ${size.elements} set elements, ${((size.bytes ?? 0) / 1024).toFixed(0)} KiB`);
  console.log(`  whole-table apply   compile p50 ${f1(quantile(full.compile, 0.5))} ms   nft -f p50 ${f1(quantile(full.apply, 0.5))} ms   (5 runs, max ${f1(Math.max(...full.compile))} / ${f1(Math.max(...full.apply))} ms)`);
  console.log(`  change to enforcement (${CHANGES} changes): p50 ${f1(quantile(all, 0.5))} ms   p95 ${f1(quantile(all, 0.95))} ms`);
  console.log(`    of which compile p50 ${f1(quantile(parts.compile, 0.5))} ms, update transaction p50 ${f1(quantile(parts.apply, 0.5))} ms, ${f1(quantile(parts.bytes, 0.5) / 1024)} KiB (p95 ${f1(quantile(parts.bytes, 0.95) / 1024)} KiB)`);
  for (const [k, xs] of Object.entries(latencies)) console.log(`    ${k.padEnd(15)} p50 ${f1(quantile(xs, 0.5))} ms   p95 ${f1(quantile(xs, 0.95))} ms`);
} finally {
  await deleteNetns(netns);
}
