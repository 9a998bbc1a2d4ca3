// ./scripts/bench cni: twill against Flannel's chain (flannel → bridge → host-local) and the
// reference bridge + host-local, side by side in one run.
//
// For each ipMasq setting: a fresh node namespace holding the three (each its own bridge and
// subnet) and 100 pod namespaces per plugin. ADD, then DEL, of every pod one after another with
// the plugins and the start floor (dist/bin/noop, compiled like twill) taking turns on each
// pod, so a change in machine load hits all of them alike; then each plugin, and the floor, 8
// at a time; then VERSION by all in turns (start-up cost alone). Median and p95 latency, pods
// per second, CPU per invocation (the plugin and every process it waited for), the peak RSS of
// one invocation, and twill's own phase timings from its log. Plugins start with a clean
// environment, as a runtime starts them. The timing loop runs inside the node namespace (the
// script re-runs itself there), so no `ip netns exec` or nsenter sits between clock and plugin.
//
// All three do the same work per pod: a veth into the node's bridge (hairpin on, as both
// deployments set it), an address from a /16, the bridge as default gateway, MTU 1450, and
// masquerading as the run's ipMasq says. Flannel's chain also routes its cluster network
// (FLANNEL_NETWORK) through the gateway: one more route in every pod, as Flannel always adds.
//
// With --policies N, one more twill column measures the ADD's wait for NetworkPolicy with
// twilld's policy engine running beside it over N policies (cni/policy-wait.ts); only twill
// has it, as the other two enforce no policy. The engine's work after each of its ADDs may fall
// in the other columns' turns: their own figures are for a run without --policies.
//
// Options: --pods N (100), --parallel N (8), --masq only|none|both (both), --twill-ipam NAME
// (twill-ipam when ipam/plugin.ts exists in the build, else host-local through delegation),
// --twill PATH (another build of the twill executable, to compare build options),
// --flannel-src PATH (Flannel's CNI plugin source, ../shared/peers/flannel-cni-plugin-src.tar.xz),
// --policies N (off; e.g. 1000), --policy-pods N (5000 pods in the cluster, 110 on the node).
import { spawnSync } from "node:child_process";
import { existsSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { addNetns, deleteNetnsSync, netnsPath } from "../../../testkit/netns.js";
import { phaseMedians, policyWaits, report, stats, type PolicyRunStats, type Run, type RunStats } from "./cni/report.js";
import { ensureFlannelPlugin, flannelConf, flannelSubnetEnv } from "./cni/flannel.js";
import { containerIdOf, invoke, rssKb, type Sample, type Target } from "./cni/invoke.js";
import { benchPods, cniArgsOf, POLICY_NAMESPACE, startPolicyEngine, writeNodeSubnet, type RunningEngine } from "./cni/policy-wait.js";
import { NAMESPACES } from "./policy/synthetic-cluster.js";

const SELF = fileURLToPath(import.meta.url);
const ROOT = resolve(dirname(SELF), "../../..");
const BIN = join(ROOT, "dist/bin");
const REF = "/usr/lib/cni";

interface Options {
  pods: number;
  parallel: number;
  masq: boolean[];
  twillIpam: string;
  twill: string;
  flannelSrc: string;
  /** NetworkPolicies in the --policies column's cluster; 0: no such column. */
  policies: number;
  policyPods: number;
}

interface Plugin {
  label: string;
  binary: string;
  cniPath: string;
  /** `k`: the plugin's index, which picks its bridge and subnet in the shared node namespace. */
  conf: (masq: boolean, dataDir: string, k: number) => object;
  /** Files the plugin reads from its data dir, by name (Flannel's subnet file). */
  files?: (masq: boolean, k: number) => Record<string, string>;
  /** Its own log, relative to its data dir, with phase timings on each closing line. */
  log?: string;
}

function parseOptions(argv: string[]): Options {
  const get = (name: string, def: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && argv[i + 1] ? argv[i + 1]! : def;
  };
  const masq = get("masq", "both");
  const defaultIpam = existsSync(join(ROOT, "ipam/plugin.ts")) ? "twill-ipam" : "host-local";
  return {
    pods: Number(get("pods", "100")),
    parallel: Number(get("parallel", "8")),
    masq: masq === "only" ? [true] : masq === "none" ? [false] : [false, true],
    twillIpam: get("twill-ipam", defaultIpam),
    twill: resolve(get("twill", join(BIN, "twill"))),
    flannelSrc: resolve(get("flannel-src", join(ROOT, "../shared/peers/flannel-cni-plugin-src.tar.xz"))),
    policies: Number(get("policies", "0")),
    policyPods: Number(get("policy-pods", "5000")),
  };
}

/** Each plugin's node subnet; the cluster network (Flannel's FLANNEL_NETWORK) holds them all. */
const subnet = (k: number) => `10.${88 + k}.0.0/16`;
const gateway = (k: number) => `10.${88 + k}.0.1`;
const CLUSTER = "10.88.0.0/13";
const MTU = 1450;
/** The --policies column's cluster: pods on this node besides the bench's, the kubelet's default maximum. */
const POLICY_LOCAL_PODS = 110;

const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");

const common = (type: string, masq: boolean, k: number) => ({
  cniVersion: "1.0.0",
  name: `bench${k}`,
  type,
  bridge: `cni${k}`,
  hairpinMode: true,
  isDefaultGateway: true,
  ipMasq: masq,
});

/**
 * Where each binary the bench runs is copied: a CNI directory of the bench's own. A node gets its
 * plugins the same way, written into /opt/cni/bin (the manifest's install-cni copies twill on
 * every agent start, a package or an image unpacks the others). Each start of a plugin is mostly
 * page faults on its executable, and their cost depends on how the file came into the page
 * cache: a 100 MB runtime read back from disk after eviction costs about 2 ms more per start
 * than the same bytes just written. Copied together, every column and the floor start alike,
 * whenever and however each was built.
 */
interface Installed {
  dir: string;
  twill: string;
  noop: string;
  flannel: string;
  bridge: string;
  /** Each copy's source, for the report. */
  source: Map<string, string>;
}

function install(dir: string, opts: Options, flannel: string): Installed {
  const source = new Map<string, string>();
  const copy = (from: string, name: string) => {
    const to = join(dir, name);
    writeFileSync(to, readFileSync(from), { mode: 0o755 });
    source.set(to, from);
    return to;
  };
  const twill = copy(opts.twill, "twill");
  linkSync(twill, join(dir, "twill-ipam"));
  copy(join(REF, "host-local"), "host-local");
  return { dir, twill, noop: copy(join(BIN, "noop"), "noop"), flannel: copy(flannel, "flannel"), bridge: copy(join(REF, "bridge"), "bridge"), source };
}

/** twill, Flannel's chain, bridge + host-local: the report's columns, in this order. */
function plugins(opts: Options, flannel: { hash: string }, bin: Installed): Plugin[] {
  return [
    {
      label: `twill + ${opts.twillIpam}${opts.twillIpam === "twill-ipam" ? " (in-process)" : ""}`,
      binary: bin.twill,
      cniPath: bin.dir,
      conf: (masq, dataDir, k) => ({
        ...common("twill", masq, k),
        mtu: MTU,
        logFile: join(dataDir, "twill.log"),
        ipam: { type: opts.twillIpam, ranges: [[{ subnet: subnet(k) }]], dataDir },
      }),
      log: "twill.log",
    },
    {
      label: `flannel (${flannel.hash}) → bridge → host-local`,
      binary: bin.flannel,
      cniPath: bin.dir,
      conf: (_masq, dataDir, k) => flannelConf(`bench${k}`, `cni${k}`, dataDir),
      files: (masq, k) => ({ "subnet.env": flannelSubnetEnv({ network: CLUSTER, subnet: subnet(k), gateway: gateway(k), mtu: MTU, ipMasq: masq }) }),
    },
    {
      label: "reference bridge + host-local",
      binary: bin.bridge,
      cniPath: bin.dir,
      conf: (masq, dataDir, k) => ({ ...common("bridge", masq, k), mtu: MTU, ipam: { type: "host-local", ranges: [[{ subnet: subnet(k) }]], dataDir } }),
    },
  ];
}

/**
 * The --policies column: twill as under twilld, in node mode (its subnet and MTU from the
 * subnet file beside which the policy engine writes the ready file), with twill-ipam, whose
 * reservations tell the engine the new pod's address.
 */
function policyPlugin(opts: Options, bin: Installed): Plugin {
  return {
    label: `twill + twill-ipam, node mode, ${opts.policies} policies`,
    binary: bin.twill,
    cniPath: bin.dir,
    conf: (masq, dataDir, k) => ({
      ...common("twill", masq, k),
      subnetFile: join(dataDir, "subnet.json"),
      logFile: join(dataDir, "twill.log"),
      ipam: { type: "twill-ipam", dataDir },
    }),
    log: "twill.log",
  };
}

// ---------------------------------------------------------------- inside the node namespace

/** Every plugin of a run shares one node namespace (own bridge, own subnet) and one clock. */
interface WorkerJob {
  targets: Target[];
  /** dist/bin/noop, run in the same turns and the same way as the plugins: the start floor under the same load. */
  floor: Target;
  /** The --policies column, and which of its pods are in a namespace with policies. */
  policy?: { target: Target; waits: boolean[] };
  parallel: number;
}

interface WorkerOut {
  stats: RunStats[];
  floor: RunStats;
  policy?: Omit<PolicyRunStats, "label" | "nftMs">;
}

interface Phase {
  samples: Sample[];
  wallMs: number;
}

/** One pod after the other, the targets taking turns on each pod, so load changes hit all alike. */
async function sequential(targets: Target[], command: string, n: number): Promise<Phase[]> {
  const out = targets.map(() => ({ samples: [] as Sample[], wallMs: 0 }));
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < targets.length; k++) {
      const s = await invoke(targets[k]!, command, i);
      out[k]!.samples.push(s);
      out[k]!.wallMs += s.ms;
    }
  }
  return out;
}

/** `n` invocations, `parallel` at a time, of one target. */
async function concurrent(t: Target, command: string, parallel: number, n: number): Promise<Phase> {
  const samples: Sample[] = new Array(n);
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < n) {
      const i = next++;
      samples[i] = await invoke(t, command, i);
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return { samples, wallMs: performance.now() - started };
}

async function worker(job: WorkerJob): Promise<WorkerOut> {
  const n = job.targets[0]!.pods.length;
  const plugins = [...job.targets, ...(job.policy ? [job.policy.target] : [])];
  const all = [...plugins, job.floor];
  const seqAdd = await sequential(all, "ADD", n);
  const seqDel = await sequential(all, "DEL", n);
  // Read now: the log holds the one-by-one operations only.
  const logs = plugins.map(readLog);
  const phases = logs.map((text) => (text === undefined ? undefined : phaseMedians(text)));
  const par: { add: Phase; del: Phase }[] = [];
  for (const t of all) {
    const add = await concurrent(t, "ADD", job.parallel, n);
    const del = t === job.floor ? add : await concurrent(t, "DEL", job.parallel, n);
    par.push({ add, del });
  }
  const last = plugins.length - 1;
  const policy = job.policy && policyStats(job.policy, seqAdd[last]!, par[last]!.add, logs[last] ?? "", readLog(job.policy.target) ?? "");
  const version = await sequential(all, "VERSION", n);
  const out = all.map((t, k): RunStats => {
    // One more ADD and DEL of the first pod, under GNU time.
    const rssAddKb = rssKb(t, t === job.floor ? "VERSION" : "ADD", 0);
    const rssDelKb = t === job.floor ? rssAddKb : rssKb(t, "DEL", 0);
    const phasesOf = [seqAdd[k]!, seqDel[k]!, par[k]!.add, par[k]!.del, version[k]!];
    const err = phasesOf.flatMap((p) => p.samples).find((x) => !x.ok)?.out;
    return {
      seqAdd: stats(seqAdd[k]!.samples, seqAdd[k]!.wallMs),
      seqDel: stats(seqDel[k]!.samples, seqDel[k]!.wallMs),
      parAdd: stats(par[k]!.add.samples, par[k]!.add.wallMs),
      parDel: stats(par[k]!.del.samples, par[k]!.del.wallMs),
      version: stats(version[k]!.samples, version[k]!.wallMs),
      rssAddKb,
      rssDelKb,
      ...(err ? { firstError: err.trim().slice(0, 300) } : {}),
      ...(phases[k] ? { phases: phases[k] } : {}),
    };
  });
  return { stats: out.slice(0, job.targets.length), floor: out[out.length - 1]!, ...(policy ? { policy: { stats: out[last]!, ...policy } } : {}) };
}

const readLog = (t: Target): string | undefined => (t.log && existsSync(t.log) ? readFileSync(t.log, "utf8") : undefined);

/**
 * The --policies column's ADDs split by the pod's namespace, and its waits from its log as it was
 * after the one-by-one ADDs and DELs (`seqLog`) and after the parallel ones (`parLog`).
 */
function policyStats(p: NonNullable<WorkerJob["policy"]>, seqAdd: Phase, parAdd: Phase, seqLog: string, parLog: string): Omit<PolicyRunStats, "label" | "nftMs" | "stats"> {
  const part = (ph: Phase, waits: boolean) => {
    const samples = ph.samples.filter((_, i) => p.waits[i] === waits);
    // Turns of several plugins (or lanes of one) interleave: the samples' own time stands for the wall.
    return stats(samples, samples.reduce((sum, x) => sum + x.ms, 0));
  };
  return {
    withPolicies: { seqAdd: part(seqAdd, true), parAdd: part(parAdd, true) },
    withoutPolicies: { seqAdd: part(seqAdd, false), parAdd: part(parAdd, false) },
    wait: { seq: policyWaits(seqLog), par: policyWaits(parLog.slice(seqLog.length)) },
  };
}

// ---------------------------------------------------------------- orchestration (root namespace)

const run = (argv: string[], input?: string) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { input, encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
};

async function main() {
  if (process.argv[2] === "--worker") {
    process.stdout.write(JSON.stringify(await worker(JSON.parse(process.argv[3]!) as WorkerJob)));
    return;
  }
  const opts = parseOptions(process.argv.slice(2));
  for (const f of ["twill", "noop"]) if (!existsSync(join(BIN, f))) throw new Error(`dist/bin/${f} is missing: run ./scripts/build`);
  // Before any namespace exists: a failed build leaves nothing behind.
  const flannel = ensureFlannelPlugin(opts.flannelSrc, join(ROOT, "dist/peers"));
  const started = performance.now();
  const loadAtStart = load();
  const prefix = `twbench${process.pid}`;
  const namespaces: string[] = [];
  const dirs: string[] = [];
  let engine: RunningEngine | null = null;
  const addNs = async (name: string) => {
    namespaces.push(name);
    await addNetns(name);
    return netnsPath(name);
  };
  const cleanup = () => {
    if (engine) process.kill(engine.pid, "SIGTERM");
    engine = null;
    for (const ns of namespaces.reverse()) deleteNetnsSync(ns);
    namespaces.length = 0;
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.on(signal, () => {
      cleanup();
      process.exit(code);
    });
  }
  try {
    const binDir = mkdtempSync(join(tmpdir(), `${prefix}-bin-`));
    dirs.push(binDir);
    const bin = install(binDir, opts, flannel.binary);
    const ps = plugins(opts, flannel, bin);
    const withPolicy = opts.policies > 0 ? [...ps, policyPlugin(opts, bin)] : ps;
    const pods: string[][] = [];
    for (let k = 0; k < withPolicy.length; k++) {
      pods.push([]);
      for (let i = 0; i < opts.pods; i++) pods[k]!.push(await addNs(`${prefix}-${k}p${i}`));
    }
    const podsOfPolicy = benchPods(opts.pods);
    const runs: Run[] = [];
    for (const masq of opts.masq) {
      const node = `${prefix}-n${runs.length}`;
      await addNs(node);
      const dataDirs: string[] = [];
      const targets = withPolicy.map((p, k): Target => {
        const dataDir = mkdtempSync(join(tmpdir(), `${prefix}-`));
        dirs.push(dataDir);
        dataDirs.push(dataDir);
        for (const [name, text] of Object.entries(p.files?.(masq, k) ?? {})) writeFileSync(join(dataDir, name), text);
        return { binary: p.binary, cniPath: p.cniPath, conf: p.conf(masq, dataDir, k), pods: pods[k]!, ...(p.log ? { log: join(dataDir, p.log) } : {}) };
      });
      const job: WorkerJob = {
        targets: targets.slice(0, ps.length),
        floor: { binary: bin.noop, cniPath: "", conf: {}, pods: [] },
        parallel: opts.parallel,
      };
      const k = ps.length;
      const policyTarget = targets[k];
      if (policyTarget) {
        const dataDir = dataDirs[k]!;
        const subnetFile = join(dataDir, "subnet.json");
        writeNodeSubnet(subnetFile, { cluster: CLUSTER, node: subnet(k), mtu: MTU });
        const sandboxes = { sandboxPrefix: "bench-policy-" };
        job.policy = {
          target: { ...policyTarget, ...sandboxes, cniArgs: podsOfPolicy.map((p, i) => cniArgsOf(p, containerIdOf(sandboxes, i))) },
          waits: podsOfPolicy.map((p) => p.namespace === POLICY_NAMESPACE),
        };
        engine = await startPolicyEngine(node, process.execPath, {
          cluster: { pods: opts.policyPods, policies: opts.policies, local: POLICY_LOCAL_PODS },
          pods: podsOfPolicy,
          stateDir: dataDir,
          ipamStore: join(dataDir, `bench${k}`),
          subnetFile,
          bridge: `cni${k}`,
          logFile: join(dataDir, "twilld-policy.log"),
          summaryFile: join(dataDir, "policy-engine.json"),
        });
      }
      try {
        const out = JSON.parse(run(["ip", "netns", "exec", node, process.execPath, SELF, "--worker", JSON.stringify(job)])) as WorkerOut;
        const summary = await engine?.stop();
        engine = null;
        const policy = out.policy ? { policy: { label: withPolicy[k]!.label, ...out.policy, nftMs: summary?.nftMs ?? [] } } : {};
        runs.push({ masq, columns: ps.map((p, k) => ({ label: p.label, stats: out.stats[k]! })), floor: out.floor, ...policy });
      } finally {
        // The worker failed: the engine goes before its namespace.
        await engine?.stop();
        engine = null;
      }
    }
    const header = [
      ...ps.map((p) => `${p.label}: ${bin.source.get(p.binary)}`),
      ...(opts.policies > 0
        ? [`${withPolicy[ps.length]!.label}: ${bin.source.get(bin.twill)}; beside it twilld's policy engine over ${opts.policies} policies, ${opts.policyPods} pods in ${NAMESPACES} namespaces (${POLICY_LOCAL_PODS} of them on this node, besides the bench's)`]
        : []),
      `noop floor: ${bin.source.get(bin.noop)} (compiled like twill, does nothing)`,
      `each copied into the bench's own CNI directory first, as a node's installer writes /opt/cni/bin: all start alike`,
      `times in ms, median / p95; CPU is user + system of the plugin and the processes it waited for`,
      `load average (1, 5, 15 min): ${loadAtStart} at the start, ${load()} at the end`,
    ];
    console.log(report(runs, { pods: opts.pods, parallel: opts.parallel, header }));
    console.log(`wall time of the benchmark: ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    cleanup();
  }
}

await main();
