// ./scripts/bench agent: one real twilld in a node namespace against N peers in a datastore.
//
// Reports, in one run: start -> every peer's route in the kernel; one peer joining and one
// leaving (50 each per way of writing, from the datastore write to the kernel's route event,
// seen through `ip monitor route`); the agent's CPU over 60 s with nothing changing (from the
// first resync after start-up on) and the resyncs in that window; its RSS; and the floor: the
// same entries programmed from empty in one netlink batch in a fresh namespace.
// Builds its own namespaces and removes them. Peers are written by a writer process
// (writer/main.ts) inside the node namespace.
// Options: --peers N (5000), --backend vxlan|host-gw (vxlan), --datastore local|etcd|kubernetes
// (local; etcd: a real etcd-server, kubernetes: a real etcd + kube-apiserver, both inside the
// node namespace on its 127.0.0.1),
// --kube-subnets podCIDRs|leases (podCIDRs: Nodes with spec.podCIDRs; leases: subnet Leases),
// --write rename|in-place (rename; local only: each file renamed into place, or written in
// place with plain open/write), --order claim-first|record-first (claim-first: which of the
// subnet claim and the node record is written first); each takes a comma-separated list or
// "all", and joins and leaves are measured for every combination (the first one populates),
// --steady-seconds S (60), --events K (50 per way), --profile DIR (twilld under Bun's CPU
// profiler, BUN_OPTIONS="--cpu-prof", profile written to DIR when it stops), --log FILE (the
// agent's log).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { IpRoute } from "../../../testkit/iproute.js";
import { stableVtepMac } from "../../../shared/kernel/vxlan.js";
import { programmedFrom, programmedState } from "../../../agent/backend/incremental.js";
import { hostGwPath } from "../../../agent/backend/host-gw.js";
import type { NodeView } from "../../../agent/backend/kind.js";
import { vxlanPath } from "../../../agent/backend/vxlan.js";
import { emptyState, planDatapath } from "../../../agent/backend/plan.js";
import { addNetns, deleteNetns, ipIn, kernelIn } from "../../../testkit/netns.js";
import { startEtcdServer } from "../../../testkit/etcd.js";
import { startControlPlane } from "../../../testkit/kube/control-plane.js";
import { createInterface } from "node:readline";
import type { NodeLease } from "../../../agent/types.js";
import { DEFAULT_WAY, parseWays, wayName, type WriteWay } from "./writer/way.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const TWILLD = join(ROOT, "dist/bin/twilld");
const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1]! : fallback);
const peers = Number(opt("peers", "5000"));
const datastore = opt("datastore", "local");
const kubeSubnets = opt("kube-subnets", "podCIDRs");
const backend = opt("backend", "vxlan");
const steadySeconds = Number(opt("steady-seconds", "60"));
const events = Number(opt("events", "50"));
const profileDir = opt("profile", "");
const logFile = opt("log", "");
const ways = parseWays(opt("write", DEFAULT_WAY.write), opt("order", DEFAULT_WAY.order));
if (!["vxlan", "host-gw"].includes(backend)) throw new Error(`--backend ${backend}: want vxlan or host-gw`);
if (!["local", "etcd", "kubernetes"].includes(datastore)) throw new Error(`--datastore ${datastore}: want local, etcd or kubernetes`);
if (!["podCIDRs", "leases"].includes(kubeSubnets)) throw new Error(`--kube-subnets ${kubeSubnets}: want podCIDRs or leases`);
if (datastore !== "local" && ways.some((w) => w.write !== "rename")) throw new Error(`--write in-place: only the local datastore has files to write in place`);
if (datastore === "kubernetes" && kubeSubnets === "podCIDRs" && ways.some((w) => w.order !== "claim-first")) throw new Error(`--order: a Node with spec.podCIDRs is one object`);
if (!(peers > 0 && peers + events * ways.length < 30_000)) throw new Error(`--peers ${peers}: want 1..${30_000 - events * ways.length}`);

const prefix = `twb${process.pid.toString(36)}-`;
const gwNs = `${prefix}gw`;
const nodeNs = `${prefix}node`;
const floorNs = `${prefix}floor`;
const dir = mkdtempSync(join(tmpdir(), "twill-bench-agent-"));
const root = new IpRoute(null);
const namespaces: string[] = [];
const NETWORK = { Network: "10.128.0.0/9", SubnetLen: 24, Backend: { Type: backend } };
const NODE_IP = "172.16.0.1";

const ipOf = (i: number) => `172.16.${(i + 1) >> 8}.${(i + 1) & 255}`;
/** The VTEP MAC a real peer publishes: twilld refuses any other. */
const macOf = (i: number) => stableVtepMac(`peer-${i}`, 1);
const subnetOf = (i: number) => `10.${128 + (i >> 8)}.${i & 255}.0/24`;
function peerLease(i: number): NodeLease {
  const backendData = backend === "vxlan" ? { type: "vxlan", vtepMAC: macOf(i), vni: 1, port: 4789, underlayMTU: 1500 } : { type: "host-gw", underlayMTU: 1500 };
  return { nodeName: `peer-${i}`, subnets: [subnetOf(i)], publicIP: ipOf(i), backend: backendData, expiresAt: Date.now() + 86_400_000, acquiredAt: Date.now() };
}

/** Writes and removes peers the way each datastore's agents do; each call gives how long its writes took (ms). */
interface PeerWriter {
  add(ls: NodeLease[], way?: WriteWay): Promise<number>;
  remove(ls: NodeLease[]): Promise<number>;
  register(name: string, podCIDRs: string[]): Promise<number>;
  args: string[];
  close(): Promise<void>;
}

/**
 * The datastore and the writer process (writer/main.ts) that writes peers into it, both
 * inside the node namespace: etcd and the apiserver listen on that namespace's 127.0.0.1.
 */
async function startWriter(): Promise<PeerWriter> {
  let stopServer = async () => {};
  let writerArgs: string[];
  let args: string[];
  if (datastore === "local") {
    const store = join(dir, "store");
    writerArgs = ["local", store];
    args = ["--datastore=local", `--store-dir=${store}`];
  } else if (datastore === "etcd") {
    const etcd = await startEtcdServer({ netns: nodeNs, host: "127.0.0.1" });
    stopServer = etcd.destroy;
    writerArgs = ["etcd", etcd.endpoint];
    args = ["--datastore=etcd", `--etcd-endpoints=${etcd.endpoint}`];
  } else {
    const cp = await startControlPlane({ netns: nodeNs });
    stopServer = cp.stop;
    const kubeconfig = cp.kubeconfigFor(cp.adminToken);
    writerArgs = ["kubernetes", kubeconfig, kubeSubnets];
    args = ["--datastore=kubernetes", `--kubeconfig=${kubeconfig}`];
  }
  const bundle = join(dir, "writer.cjs");
  const built = spawnSync(join(ROOT, "node_modules/.bin/esbuild"), [join(ROOT, "scripts/lib/bench/writer/main.ts"), "--bundle", "--platform=node", "--target=node20", "--format=cjs", "--log-level=warning", `--outfile=${bundle}`], { stdio: "inherit" });
  if (built.status !== 0) throw new Error("bundling the peer writer failed");
  const child = spawn("ip", ["netns", "exec", nodeNs, "node", bundle, ...writerArgs], { stdio: ["pipe", "pipe", "inherit"] });
  const answers: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => answers.shift()?.(line));
  const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`the peer writer exited (${code})`))));
  exited.catch(() => {});
  const request = async (req: object) => {
    const answer = new Promise<string>((resolveAnswer) => answers.push(resolveAnswer));
    child.stdin!.write(`${JSON.stringify(req)}\n`);
    const reply = JSON.parse(await Promise.race([answer, exited])) as { ok?: true; ms?: number; error?: string };
    if (reply.error) throw new Error(`peer writer: ${reply.error}`);
    return reply.ms ?? 0;
  };
  return {
    add: (leases, way) => request({ op: "add", leases, way }),
    remove: (leases) => request({ op: "remove", leases }),
    register: (name, podCIDRs) => request({ op: "register", name, podCIDRs }),
    args,
    close: async () => {
      child.stdin!.end();
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
      await stopServer();
    },
  };
}

async function addNamespace(name: string) {
  namespaces.push(name);
  await addNetns(name);
}

/** A node namespace whose eth0 (172.16.0.1/16, default route) reaches a gw namespace's bridge. */
async function setUpNetwork() {
  await addNamespace(gwNs);
  await addNamespace(nodeNs);
  await ipIn(gwNs).batch(
    [["link", "add", "br0", "type", "bridge"], ["addr", "add", "172.16.255.254/16", "dev", "br0"], ["link", "set", "br0", "up"]],
    "set up the underlay bridge",
  );
  await root.exec(["link", "add", `${prefix}v0`.slice(-15), "netns", gwNs, "type", "veth", "peer", "name", "eth0", "netns", nodeNs], "create the node veth");
  await ipIn(gwNs).batch([["link", "set", `${prefix}v0`.slice(-15), "master", "br0"], ["link", "set", `${prefix}v0`.slice(-15), "up"]], "attach the node");
  await ipIn(nodeNs).batch(
    [["addr", "add", `${NODE_IP}/16`, "dev", "eth0"], ["link", "set", "eth0", "up"], ["route", "add", "default", "via", "172.16.255.254"]],
    "address the node",
  );
}

/** Follows `ip monitor route` in the node namespace: when each subnet's twill route came and went. */
function monitorRoutes(): { child: ChildProcess; added: Map<string, number>; deleted: Map<string, number>; waiters: Set<() => void> } {
  const added = new Map<string, number>();
  const deleted = new Map<string, number>();
  const waiters = new Set<() => void>();
  const child = spawn("ip", ["-n", nodeNs, "monitor", "route"], { stdio: ["ignore", "pipe", "inherit"] });
  let buf = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    const now = performance.now();
    buf += chunk.toString();
    const lines = buf.split("\n");
    buf = lines.pop()!;
    for (const line of lines) {
      if (!line.includes("proto 150")) continue;
      const del = line.startsWith("Deleted ");
      const dst = (del ? line.slice(8) : line).split(" ")[0]!;
      (del ? deleted : added).set(dst, now);
    }
    for (const w of waiters) w();
  });
  return { child, added, deleted, waiters };
}

async function waitFor(mon: ReturnType<typeof monitorRoutes>, probe: () => boolean, what: string, ms = 120_000) {
  if (probe()) return;
  await new Promise<void>((resolveWait, reject) => {
    const timer = setTimeout(() => {
      mon.waiters.delete(check);
      reject(new Error(`not ${what} within ${ms} ms`));
    }, ms);
    const check = () => {
      if (!probe()) return;
      clearTimeout(timer);
      mon.waiters.delete(check);
      resolveWait();
    };
    mon.waiters.add(check);
  });
}

/** CPU ticks of a process and of the children it ran and reaped (utime, stime, cutime, cstime). */
const ticksOf = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
};
/** Its live descendants: the agent starts no process, so any is a finding (named in the report). */
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      parentOf.set(Number(d), Number(readFileSync(`/proc/${d}/stat`, "utf8").split(") ")[1]!.split(" ")[1]));
    } catch {
      // exited while listed
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parentOf) if (pp === p) out.push(c), walk(c);
  };
  walk(pid);
  return out;
}
const commOf = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "?"; // exited
  }
};
const statusKb = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"]).stdout.toString().trim()) || 100;

function metricsPage(): string {
  return spawnSync("ip", ["netns", "exec", nodeNs, "curl", "-s", "http://127.0.0.1:9402/metrics"]).stdout.toString();
}
const metric = (page: string, name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(page)?.[1] ?? NaN);

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

/** The same entries programmed from empty in one netlink batch, in a fresh namespace: the kernel's own cost. */
async function batchFloor(leases: NodeLease[]): Promise<{ ms: number; entries: number }> {
  await addNamespace(floorNs);
  const ip = ipIn(floorNs);
  await ip.batch(
    [
      ["link", "set", "lo", "up"], ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"], ["link", "set", "eth0p", "up"], ["addr", "add", `${NODE_IP}/16`, "dev", "eth0"], ["link", "set", "eth0", "up"],
      ...(backend === "vxlan" ? [["link", "add", "twill.1", "type", "vxlan", "id", "1", "dstport", "4789", "local", NODE_IP, "dev", "eth0"], ["link", "set", "twill.1", "up"]] : []),
    ],
    "set up the floor namespace",
  );
  const view: NodeView = {
    local: { nodeName: "node-0", publicIP: NODE_IP, underlayDev: "eth0", underlayMTU: 1500 },
    lease: { nodeName: "node-0", subnets: ["10.255.255.0/24"], publicIP: NODE_IP, backend: { type: backend } },
    underlayPrefixes: ["172.16.0.0/16"],
    vtep: backend === "vxlan" ? { dev: "twill.1", vni: 1, port: 4789 } : null,
  };
  const desired = programmedState(programmedFrom(leases, view, backend === "vxlan" ? vxlanPath : hostGwPath, Date.now()));
  const plan = planDatapath(desired, emptyState());
  const kernel = kernelIn(floorNs);
  try {
    const t0 = performance.now();
    const refused = await kernel.applyDatapath(plan);
    if (refused.length) throw new Error(`floor: the kernel refused ${refused.length} entries, first: ${refused[0]!.error.message}`);
    return { ms: performance.now() - t0, entries: plan.length };
  } finally {
    kernel.close();
  }
}

let agent: ChildProcess | null = null;
let writer: PeerWriter | null = null;
const log: string[] = [];
let mon: ReturnType<typeof monitorRoutes> | null = null;
const OWN_SUBNET = "10.255.255.0/24";
try {
  await setUpNetwork();
  writer = await startWriter();
  // The agent's own Node, as its kubelet registers it (with the controller's podCIDR).
  if (datastore === "kubernetes") await writer.register("node-0", kubeSubnets === "podCIDRs" ? [OWN_SUBNET] : []);
  const leases = Array.from({ length: peers }, (_, i) => peerLease(i + 1));
  const tWrite = performance.now();
  for (let i = 0; i < leases.length; i += 500) await writer.add(leases.slice(i, i + 500), ways[0]);
  const populateMs = performance.now() - tWrite;

  const conf = join(dir, "net-conf.json");
  writeFileSync(conf, JSON.stringify(NETWORK));
  // The node's own subnet, outside every peer's: the agent tries its last subnet file's first.
  writeFileSync(join(dir, "subnet.json"), JSON.stringify({ clusterCIDRs: ["10.128.0.0/9"], nodeSubnets: [OWN_SUBNET], mtu: 1450, backend, ipMasq: false, nodeName: "node-0" }));
  mon = monitorRoutes();
  await sleep(200);
  const t0 = performance.now();
  // The compiled executable takes Bun's flags from BUN_OPTIONS.
  const profile = profileDir ? { BUN_OPTIONS: `--cpu-prof --cpu-prof-dir=${resolve(profileDir)}` } : {};
  agent = spawn("ip", ["netns", "exec", nodeNs, TWILLD, "run", "--node-name=node-0", `--net-conf=${conf}`, `--subnet-file=${join(dir, "subnet.json")}`,
    `--state-dir=${dir}`, `--ipam-store=${join(dir, "ipam", "twill")}`, "--resync=10s", "--lease-ttl=1h", "--metrics-addr=127.0.0.1:9402", "--network-policy=false", ...writer.args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...profile },
  });
  agent.stderr!.on("data", (c: Buffer) => log.push(c.toString()));
  const m = mon;
  const subnets = leases.map((l) => l.subnets[0]!);
  await waitFor(m, () => subnets.every((s) => m.added.has(s)), `every peer's route programmed`, 300_000);
  const startMs = Math.max(...subnets.map((s) => m.added.get(s)!)) - t0;
  const pid = agent.pid!;
  // The quiet window begins after the first resync that follows start-up: that one reads back
  // the entries start-up programmed (the kernel monitor saw them change), which is start-up work.
  // The start-up round is the first full one, counted as done here: its routes reach the monitor
  // before the round ends, and the histogram has no line until a round has ended.
  const fullRounds = () => metric(metricsPage(), 'twill_reconcile_duration_seconds_count{kind="full"}') || 0;
  const startRounds = Math.max(fullRounds(), 1);
  for (let waited = 0; fullRounds() <= startRounds && waited < 30_000; waited += 500) await sleep(500);
  await sleep(1_000);

  // Steady state: nothing changes; the resync timer runs the full read-and-diff.
  const before = metricsPage();
  const c0 = ticksOf(pid);
  const s0 = performance.now();
  await sleep(steadySeconds * 1000);
  const cpu = (ticksOf(pid) - c0) / CLK_TCK / ((performance.now() - s0) / 1000);
  const after = metricsPage();
  const fullCount = metric(after, 'twill_reconcile_duration_seconds_count{kind="full"}') - metric(before, 'twill_reconcile_duration_seconds_count{kind="full"}');
  const fullSum = metric(after, 'twill_reconcile_duration_seconds_sum{kind="full"}') - metric(before, 'twill_reconcile_duration_seconds_sum{kind="full"}');
  const changesInWindow = metric(after, "twill_reconcile_changes_total") - metric(before, "twill_reconcile_changes_total");
  const rss = statusKb(pid, "VmRSS") / 1024;
  const hwm = statusKb(pid, "VmHWM") / 1024;
  const kept = descendants(pid).map(commOf);

  // For each way of writing: joins, then leaves, one at a time.
  const perWay = ways.map((way, n) => ({ way, joins: [] as number[], leaves: [] as number[], writeMs: [] as number[], first: peers + 1 + n * events }));
  for (const e of perWay) {
    const extra = Array.from({ length: events }, (_, k) => peerLease(e.first + k));
    for (const l of extra) {
      const w = performance.now();
      e.writeMs.push(await writer.add([l], e.way));
      await waitFor(m, () => m.added.has(l.subnets[0]!), `${l.nodeName} programmed (${wayName(e.way)})`, 30_000);
      e.joins.push(m.added.get(l.subnets[0]!)! - w);
    }
    for (const l of extra) {
      const w = performance.now();
      e.writeMs.push(await writer.remove([l]));
      await waitFor(m, () => m.deleted.has(l.subnets[0]!), `${l.nodeName} removed`, 30_000);
      e.leaves.push(m.deleted.get(l.subnets[0]!)! - w);
    }
  }
  const page = metricsPage();
  const peerCount = metric(page, 'twill_reconcile_duration_seconds_count{kind="peers"}');
  const peerSum = metric(page, 'twill_reconcile_duration_seconds_sum{kind="peers"}');

  // What is in the kernel at the end: every peer's entries, none of the ones that left.
  const nodeIp = ipIn(nodeNs);
  const routes = (await nodeIp.routes(4, ["proto", "150"])).length;

  agent.kill("SIGTERM");
  await new Promise((r) => agent!.once("exit", r));
  agent = null;
  if (logFile) writeFileSync(logFile, log.join(""));
  const warnings = log.join("").split("\n").filter((l) => /"level":"(warn|error)"/.test(l));

  const floor = await batchFloor(leases);
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const row = (what: string, value: string, target: string) => console.log(`${what.padEnd(44)}${value.padStart(14)}   ${target}`);
  const store = datastore === "kubernetes" ? `kubernetes (${kubeSubnets})` : datastore;
  console.log(`twilld, ${peers} peers, datastore ${store}, backend ${backend}; load average at the end ${load}\n`);
  row("peers written to the datastore", `${(populateMs / 1000).toFixed(2)} s`, "");
  const met = (ok: boolean) => (ok ? "met" : "NOT met");
  row("start -> every peer's route in the kernel", `${(startMs / 1000).toFixed(2)} s`, `target <= 1.5 s and <= 3x floor: ${met(startMs <= 1500 && startMs <= 3 * floor.ms)}`);
  row("batch floor (one netlink batch)", `${(floor.ms / 1000).toFixed(2)} s`, `${floor.entries} entries`);
  row("start / floor", `${(startMs / floor.ms).toFixed(1)}x`, "");
  const ms = (xs: number[]) => `${quantile(xs, 0.5).toFixed(1)} / ${quantile(xs, 0.95).toFixed(1)} ms`;
  for (const e of perWay) {
    console.log(`peers written ${wayName(e.way)}${e === perWay[0] ? " (populated this way)" : ""}:`);
    row(`  joins: p50 / p95 (${events})`, ms(e.joins), `target p95 <= 50 ms: ${met(quantile(e.joins, 0.95) <= 50)}`);
    row(`  leaves: p50 / p95 (${events})`, ms(e.leaves), "");
    row("  of which the datastore write: p50 / p95", ms(e.writeMs), "joins and leaves are timed from the write's start");
  }
  row("peer-event reconcile, mean", `${((peerSum / peerCount) * 1000).toFixed(1)} ms`, "");
  row(`CPU, quiet (${steadySeconds} s)`, `${(cpu * 100).toFixed(2)} %`, `target <= 1 % of a core: ${met(cpu <= 0.01)}`);
  row(`resync with nothing to change, mean of ${fullCount}`, `${((fullSum / fullCount) * 1000).toFixed(0)} ms`, `${changesInWindow} changes made`);
  row("RSS / peak RSS", `${rss.toFixed(0)} / ${hwm.toFixed(0)} MB`, `target <= 120 MB: ${met(rss <= 120)}`);
  row("processes it keeps running", `${kept.length}`, kept.length ? `want 0: ${kept.join(", ")}` : "want 0");
  row("twill routes at the end", `${routes}`, `want ${peers}`);
  row("warnings and errors in the agent's log", `${warnings.length}`, "want 0");
  for (const w of warnings.slice(0, 5)) console.log(`  ${w}`);
} catch (err) {
  console.error(`${String(err)}\nlast lines of the agent's log:\n${log.join("").split("\n").slice(-15).join("\n")}`);
  process.exitCode = 1;
} finally {
  if (agent) agent.kill("SIGKILL");
  mon?.child.kill();
  await writer?.close().catch((err: unknown) => console.error(`stopping the datastore: ${String(err)}`));
  for (const ns of namespaces.reverse()) await deleteNetns(ns);
  rmSync(dir, { recursive: true, force: true });
}
