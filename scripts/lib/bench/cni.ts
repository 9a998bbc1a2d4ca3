// ./scripts/bench cni: twill against the reference bridge + host-local, side by side in one run.
//
// For each ipMasq setting: a fresh node namespace holding both plugins (each its own bridge and
// subnet) and 100 pod namespaces per plugin. ADD, then DEL, of every pod one after another with
// the plugins and the start floor (dist/bin/noop, compiled like twill) taking turns on each
// pod, so a change in machine load hits all of them alike; then each plugin 8 at a time. Median
// and p95 latency, pods per second, the peak RSS of one invocation. Plugins start with a clean
// environment, as a runtime starts them. The timing loop runs inside the node namespace (the
// script re-runs itself there), so no `ip netns exec` or nsenter sits between clock and plugin.
//
// Options: --pods N (100), --parallel N (8), --masq only|none|both (both), --twill-ipam NAME
// (twill-ipam when ipam/plugin.ts exists in the build, else host-local through delegation),
// --twill PATH (another build of the twill executable, to compare build options).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { addNetns, deleteNetnsSync, netnsPath } from "../../../testkit/netns.js";

const SELF = fileURLToPath(import.meta.url);
const ROOT = resolve(dirname(SELF), "../../..");
const BIN = join(ROOT, "dist/bin");
const REF = "/usr/lib/cni";
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

interface Options {
  pods: number;
  parallel: number;
  masq: boolean[];
  twillIpam: string;
  twill: string;
}

interface Sample {
  ms: number;
  ok: boolean;
  out: string;
}

interface PhaseStats {
  median: number;
  p95: number;
  perSecond: number;
  failures: number;
}

interface RunStats {
  seqAdd: PhaseStats;
  seqDel: PhaseStats;
  parAdd: PhaseStats;
  parDel: PhaseStats;
  rssAddKb: number;
  rssDelKb: number;
  firstError?: string;
}

interface Plugin {
  label: string;
  binary: string;
  cniPath: string;
  /** `k`: the target's index, which picks its bridge and subnet in the shared node namespace. */
  conf: (masq: boolean, dataDir: string, k: number) => object;
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
  };
}

const subnet = (k: number) => `10.${88 + k}.0.0/16`;

function plugins(opts: Options): Plugin[] {
  const common = (type: string, masq: boolean, k: number) => ({
    cniVersion: "1.0.0",
    name: `bench${k}`,
    type,
    bridge: `cni${k}`,
    isDefaultGateway: true,
    ipMasq: masq,
    mtu: 1450,
  });
  return [
    {
      label: `twill + ${opts.twillIpam}${opts.twillIpam === "twill-ipam" ? " (in-process)" : ""}`,
      binary: opts.twill,
      cniPath: `${BIN}:${REF}`,
      conf: (masq, dataDir, k) => ({
        ...common("twill", masq, k),
        logFile: join(dataDir, "twill.log"),
        ipam: { type: opts.twillIpam, ranges: [[{ subnet: subnet(k) }]], dataDir },
      }),
    },
    {
      label: "reference bridge + host-local",
      binary: join(REF, "bridge"),
      cniPath: REF,
      conf: (masq, dataDir, k) => ({ ...common("bridge", masq, k), ipam: { type: "host-local", ranges: [[{ subnet: subnet(k) }]], dataDir } }),
    },
  ];
}

// ---------------------------------------------------------------- inside the node namespace

interface Target {
  binary: string;
  cniPath: string;
  conf: object;
  pods: string[];
}

/** Every plugin of a run shares one node namespace (own bridge, own subnet) and one clock. */
interface WorkerJob {
  targets: Target[];
  /** Invocations of dist/bin/noop interleaved with the sequential phases: the start floor under the same load. */
  floor: Target;
  parallel: number;
}

interface WorkerOut {
  stats: RunStats[];
  floor: { median: number; rssKb: number };
}

async function invoke(t: Target, command: string, i: number): Promise<Sample> {
  const env = {
    PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: `bench-${i}`,
    CNI_NETNS: t.pods[i] ?? "",
    CNI_IFNAME: "eth0",
    CNI_PATH: t.cniPath,
  };
  const stdin = JSON.stringify(t.conf);
  const started = performance.now();
  return new Promise((done) => {
    const child = spawn(t.binary, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", () => {});
    child.on("close", (code) =>
      done({ ms: performance.now() - started, ok: code === 0, out: Buffer.concat(out).toString("utf8") }),
    );
    child.stdin.on("error", () => {}); // a plugin may exit without reading its config
    child.stdin.end(stdin);
  });
}

/** One pod after the other, the targets taking turns on each pod, so load changes hit all alike. */
async function sequential(targets: Target[], command: string, n: number): Promise<{ samples: Sample[]; wallMs: number }[]> {
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

/** `parallel` invocations at a time for one target. */
async function concurrent(t: Target, command: string, parallel: number): Promise<{ samples: Sample[]; wallMs: number }> {
  const samples: Sample[] = new Array(t.pods.length);
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < t.pods.length) {
      const i = next++;
      samples[i] = await invoke(t, command, i);
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return { samples, wallMs: performance.now() - started };
}

function stats(samples: Sample[], wallMs: number): PhaseStats {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]!;
  return { median: at(0.5), p95: at(0.95), perSecond: (samples.length * 1000) / wallMs, failures: samples.filter((s) => !s.ok).length };
}

/** Peak RSS of one invocation, measured apart from the timing (GNU time forks and waits). */
function rssKb(t: Target, command: string, i: number): number {
  const r = spawnSync("/usr/bin/time", ["-f", "%M", t.binary], {
    input: JSON.stringify(t.conf),
    env: { PATH, CNI_COMMAND: command, CNI_CONTAINERID: `bench-${i}`, CNI_NETNS: t.pods[i] ?? "", CNI_IFNAME: "eth0", CNI_PATH: t.cniPath },
    encoding: "utf8",
  });
  const lines = r.stderr.trim().split("\n");
  return Number(lines[lines.length - 1]);
}

async function worker(job: WorkerJob): Promise<WorkerOut> {
  const n = job.targets[0]!.pods.length;
  const all = [...job.targets, job.floor];
  const seqAdd = await sequential(all, "ADD", n);
  const seqDel = await sequential(all, "DEL", n);
  const stats_: RunStats[] = [];
  for (const [k, t] of job.targets.entries()) {
    const parAdd = await concurrent(t, "ADD", job.parallel);
    const parDel = await concurrent(t, "DEL", job.parallel);
    // One more ADD and DEL of the first pod, under GNU time.
    const rssAddKb = rssKb(t, "ADD", 0);
    const rssDelKb = rssKb(t, "DEL", 0);
    const err = [seqAdd[k]!, seqDel[k]!, parAdd, parDel].flatMap((p) => p.samples).find((x) => !x.ok)?.out;
    stats_.push({
      seqAdd: stats(seqAdd[k]!.samples, seqAdd[k]!.wallMs),
      seqDel: stats(seqDel[k]!.samples, seqDel[k]!.wallMs),
      parAdd: stats(parAdd.samples, parAdd.wallMs),
      parDel: stats(parDel.samples, parDel.wallMs),
      rssAddKb,
      rssDelKb,
      ...(err ? { firstError: err.trim().slice(0, 300) } : {}),
    });
  }
  const floorSamples = [...seqAdd[all.length - 1]!.samples, ...seqDel[all.length - 1]!.samples];
  return { stats: stats_, floor: { median: stats(floorSamples, 1).median, rssKb: rssKb(job.floor, "VERSION", 0) } };
}

// ---------------------------------------------------------------- orchestration (root namespace)

const run = (argv: string[], input?: string) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { input, encoding: "utf8" });
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
  const prefix = `twbench${process.pid}`;
  const namespaces: string[] = [];
  const dirs: string[] = [];
  const addNs = async (name: string) => {
    namespaces.push(name);
    await addNetns(name);
    return netnsPath(name);
  };
  const cleanup = () => {
    for (const ns of namespaces.reverse()) deleteNetnsSync(ns);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  try {
    const ps = plugins(opts);
    const pods: string[][] = [];
    for (let k = 0; k < ps.length; k++) {
      pods.push([]);
      for (let i = 0; i < opts.pods; i++) pods[k]!.push(await addNs(`${prefix}-${k}p${i}`));
    }
    const results: { masq: boolean; floor: WorkerOut["floor"]; labels: string[]; stats: RunStats[] }[] = [];
    for (const masq of opts.masq) {
      const node = `${prefix}-n${results.length}`;
      await addNs(node);
      const targets = ps.map((p, k) => {
        const dataDir = mkdtempSync(join(tmpdir(), `${prefix}-`));
        dirs.push(dataDir);
        return { binary: p.binary, cniPath: p.cniPath, conf: p.conf(masq, dataDir, k), pods: pods[k]! };
      });
      const job: WorkerJob = {
        targets,
        floor: { binary: join(BIN, "noop"), cniPath: "", conf: {}, pods: [] },
        parallel: opts.parallel,
      };
      const out = JSON.parse(run(["ip", "netns", "exec", node, process.execPath, SELF, "--worker", JSON.stringify(job)])) as WorkerOut;
      results.push({ masq, floor: out.floor, labels: ps.map((p) => p.label), stats: out.stats });
    }
    report(opts, results);
  } finally {
    cleanup();
  }
}

function report(opts: Options, results: { masq: boolean; floor: WorkerOut["floor"]; labels: string[]; stats: RunStats[] }[]) {
  const f = (x: number) => x.toFixed(1);
  console.log(`CNI benchmark: ${opts.pods} pods, sequential (plugins taking turns) and ${opts.parallel} at a time; times in ms (median / p95)\n`);
  for (const run of results) {
    const fl = run.floor;
    const [t, r] = run.stats.map((s, k) => ({ s, label: run.labels[k]! }));
    if (!t || !r) continue;
    console.log(`ipMasq ${run.masq}; start floor (dist/bin/noop, same turns): ${f(fl.median)} ms, peak RSS ${fl.rssKb} KB`);
    const rows: [string, (s: RunStats) => string, (s: RunStats) => number][] = [
      ["ADD sequential", (s) => `${f(s.seqAdd.median)} / ${f(s.seqAdd.p95)}`, (s) => s.seqAdd.median],
      ["ADD minus floor", (s) => f(s.seqAdd.median - fl.median), (s) => s.seqAdd.median - fl.median],
      ["DEL sequential", (s) => `${f(s.seqDel.median)} / ${f(s.seqDel.p95)}`, (s) => s.seqDel.median],
      ["DEL minus floor", (s) => f(s.seqDel.median - fl.median), (s) => s.seqDel.median - fl.median],
      [`ADD x${opts.parallel}`, (s) => `${f(s.parAdd.median)} / ${f(s.parAdd.p95)}`, (s) => s.parAdd.median],
      [`DEL x${opts.parallel}`, (s) => `${f(s.parDel.median)} / ${f(s.parDel.p95)}`, (s) => s.parDel.median],
      ["ADD pods/s sequential", (s) => f(s.seqAdd.perSecond), (s) => s.seqAdd.perSecond],
      [`ADD pods/s x${opts.parallel}`, (s) => f(s.parAdd.perSecond), (s) => s.parAdd.perSecond],
      [`DEL pods/s x${opts.parallel}`, (s) => f(s.parDel.perSecond), (s) => s.parDel.perSecond],
      ["peak RSS ADD (KB)", (s) => String(s.rssAddKb), (s) => s.rssAddKb],
      ["peak RSS DEL (KB)", (s) => String(s.rssDelKb), (s) => s.rssDelKb],
    ];
    const w = 24;
    console.log(`  ${"".padEnd(w)}${t.label.padEnd(34)}${r.label.padEnd(34)}twill/ref`);
    for (const [name, show, value] of rows) {
      const ratio = value(r.s) !== 0 ? (value(t.s) / value(r.s)).toFixed(2) : "-";
      console.log(`  ${name.padEnd(w)}${show(t.s).padEnd(34)}${show(r.s).padEnd(34)}${ratio}`);
    }
    for (const x of [t, r]) {
      const failures = x.s.seqAdd.failures + x.s.seqDel.failures + x.s.parAdd.failures + x.s.parDel.failures;
      if (failures > 0) console.log(`  ${x.label}: ${failures} failed invocations; first: ${x.s.firstError ?? "?"}`);
    }
    console.log("");
  }
}

await main();
