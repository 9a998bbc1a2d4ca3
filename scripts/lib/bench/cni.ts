// ./scripts/bench cni: twill against the reference bridge + host-local, side by side in one run.
//
// For each plugin and each ipMasq setting: a fresh node namespace, 100 pod namespaces, ADD and
// DEL of every pod one after another, then again 8 at a time; median and p95 latency, pods per
// second, the peak RSS of one invocation; and the process-start floor (dist/bin/noop, compiled
// like twill). Plugins start with a clean environment, as a runtime starts them. The timing
// loop runs inside the node namespace (the script re-runs itself there), so no `ip netns exec`
// or nsenter sits between the clock and the plugin.
//
// Options: --pods N (100), --parallel N (8), --masq only|none|both (both), --twill-ipam NAME
// (twill-ipam when ipam/plugin.ts exists in the build, else host-local through delegation),
// --twill PATH (another build of the twill executable, to compare build options).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

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
  conf: (masq: boolean, dataDir: string) => object;
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

const SUBNET = "10.88.0.0/16";

function plugins(opts: Options): Plugin[] {
  const common = (type: string, masq: boolean) => ({
    cniVersion: "1.0.0",
    name: "bench",
    type,
    bridge: "cni0",
    isDefaultGateway: true,
    ipMasq: masq,
    mtu: 1450,
  });
  return [
    {
      label: `twill + ${opts.twillIpam}${opts.twillIpam === "twill-ipam" ? " (in-process)" : ""}`,
      binary: opts.twill,
      cniPath: `${BIN}:${REF}`,
      conf: (masq, dataDir) => ({
        ...common("twill", masq),
        logFile: join(dataDir, "twill.log"),
        ipam: { type: opts.twillIpam, ranges: [[{ subnet: SUBNET }]], dataDir },
      }),
    },
    {
      label: "reference bridge + host-local",
      binary: join(REF, "bridge"),
      cniPath: REF,
      conf: (masq, dataDir) => ({ ...common("bridge", masq), ipam: { type: "host-local", ranges: [[{ subnet: SUBNET }]], dataDir } }),
    },
  ];
}

// ---------------------------------------------------------------- inside the node namespace

interface WorkerJob {
  binary: string;
  cniPath: string;
  conf: object;
  pods: string[];
  parallel: number;
}

async function invoke(job: WorkerJob, command: string, id: string, netns: string): Promise<Sample> {
  const env = {
    PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: job.cniPath,
  };
  const stdin = JSON.stringify(job.conf);
  const started = performance.now();
  return new Promise((done) => {
    const child = spawn(job.binary, [], { env, stdio: ["pipe", "pipe", "pipe"] });
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

async function phase(job: WorkerJob, command: string, parallel: number): Promise<{ samples: Sample[]; wallMs: number }> {
  const samples: Sample[] = new Array(job.pods.length);
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < job.pods.length) {
      const i = next++;
      samples[i] = await invoke(job, command, `bench-${i}`, job.pods[i]!);
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

/** Peak RSS of single invocations, measured apart from the timing (GNU time forks and waits). */
function rssKb(job: WorkerJob, command: string, id: string, netns: string): number {
  const r = spawnSync("/usr/bin/time", ["-f", "%M", job.binary], {
    input: JSON.stringify(job.conf),
    env: { PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: "eth0", CNI_PATH: job.cniPath },
    encoding: "utf8",
  });
  const lines = r.stderr.trim().split("\n");
  return Number(lines[lines.length - 1]);
}

async function worker(job: WorkerJob): Promise<RunStats> {
  const seqAdd = await phase(job, "ADD", 1);
  const firstError = seqAdd.samples.find((s) => !s.ok)?.out;
  const seqDel = await phase(job, "DEL", 1);
  const parAdd = await phase(job, "ADD", job.parallel);
  const parDel = await phase(job, "DEL", job.parallel);
  // RSS: one more ADD and DEL of the first pod, under GNU time.
  const rssAddKb = rssKb(job, "ADD", "bench-rss", job.pods[0]!);
  const rssDelKb = rssKb(job, "DEL", "bench-rss", job.pods[0]!);
  const err = firstError ?? parAdd.samples.find((s) => !s.ok)?.out;
  return {
    seqAdd: stats(seqAdd.samples, seqAdd.wallMs),
    seqDel: stats(seqDel.samples, seqDel.wallMs),
    parAdd: stats(parAdd.samples, parAdd.wallMs),
    parDel: stats(parDel.samples, parDel.wallMs),
    rssAddKb,
    rssDelKb,
    ...(err ? { firstError: err.trim().slice(0, 300) } : {}),
  };
}

async function floor(n: number): Promise<{ median: number; rssKb: number }> {
  const job: WorkerJob = { binary: join(BIN, "noop"), cniPath: "", conf: {}, pods: Array(n).fill(""), parallel: 1 };
  const { samples } = await phase(job, "VERSION", 1);
  return { median: stats(samples, 1).median, rssKb: rssKb(job, "VERSION", "", "") };
}

// ---------------------------------------------------------------- orchestration (root namespace)

const run = (argv: string[], input?: string) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { input, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
};

async function main() {
  if (process.argv[2] === "--worker") {
    const job = JSON.parse(process.argv[3]!) as WorkerJob | { floor: number };
    const out = "floor" in job ? await floor(job.floor) : await worker(job);
    process.stdout.write(JSON.stringify(out));
    return;
  }
  const opts = parseOptions(process.argv.slice(2));
  for (const f of ["twill", "noop"]) if (!existsSync(join(BIN, f))) throw new Error(`dist/bin/${f} is missing: run ./scripts/build`);
  const prefix = `twbench${process.pid}`;
  const namespaces: string[] = [];
  const dirs: string[] = [];
  const addNs = (name: string) => {
    run(["ip", "netns", "add", name]);
    namespaces.push(name);
    run(["ip", "-n", name, "link", "set", "lo", "up"]);
    return `/var/run/netns/${name}`;
  };
  const cleanup = () => {
    for (const ns of namespaces.reverse()) spawnSync("ip", ["netns", "del", ns]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  try {
    const pods = Array.from({ length: opts.pods }, (_, i) => addNs(`${prefix}-p${i}`));
    const inNode = (node: string, job: object) =>
      JSON.parse(run(["ip", "netns", "exec", node, process.execPath, SELF, "--worker", JSON.stringify(job)]));

    const floorNode = addNs(`${prefix}-floor`).split("/").pop()!;
    const fl = inNode(floorNode, { floor: 100 }) as { median: number; rssKb: number };

    const results: { masq: boolean; label: string; s: RunStats }[] = [];
    for (const masq of opts.masq) {
      for (const p of plugins(opts)) {
        const node = `${prefix}-n${results.length}`;
        addNs(node);
        const dataDir = mkdtempSync(join(tmpdir(), `${prefix}-`));
        dirs.push(dataDir);
        const job: WorkerJob = { binary: p.binary, cniPath: p.cniPath, conf: p.conf(masq, dataDir), pods, parallel: opts.parallel };
        results.push({ masq, label: p.label, s: inNode(node, job) as RunStats });
      }
    }
    report(opts, fl, results);
  } finally {
    cleanup();
  }
}

function report(opts: Options, fl: { median: number; rssKb: number }, results: { masq: boolean; label: string; s: RunStats }[]) {
  const f = (x: number) => x.toFixed(1);
  console.log(`CNI benchmark: ${opts.pods} pods, sequential and ${opts.parallel} at a time; times in ms (median / p95)`);
  console.log(`start floor (dist/bin/noop): ${f(fl.median)} ms, peak RSS ${fl.rssKb} KB\n`);
  for (const masq of opts.masq) {
    const [t, r] = results.filter((x) => x.masq === masq);
    if (!t || !r) continue;
    console.log(`ipMasq ${masq}`);
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
