// ./scripts/bench backends: the backends side by side on the testbed (conformance/testbed),
// the real twilld on every node namespace, pods attached by the real plugin.
//
// throughput: iperf3 (TCP, one stream) from a pod on node-1 to a pod on node-2, beside iperf3
// between the two node namespaces' underlay addresses on the same path, for vxlan, host-gw and
// bgp (mesh) with both nodes on one segment, and vxlan and bgp (routers: through the FRR
// router) with the nodes on two racks. Each configuration is a testbed of its own, destroyed
// before the next: never two at once. Also the MTU each backend gives pods (the subnet file's).
// join: bgp in routers mode and vxlan on the same topology: node-1..3 (racks a, a, b) running,
// node-4 (rack b) joins and leaves, N times. A join is timed from its lease's acquiredAt (the
// agent's own stamp, just before the record is written) to the last of node-1..3 having a twill
// route (proto 150) to each of its subnets; a leave from the call of the testbed's leave()
// (twilld stopped, then the lease released) to the last of them having dropped it. Both ends by
// the kernel's route events, timestamped by `ip -ts monitor route` in each node namespace.
// wireguard (userspace here: wireguard-go) is in the throughput table; its key rotation is
// timed on its own: 20 pings a second from a pod on node-1 to a pod on node-2 while node-2's key
// is replaced (twilld stopped, key file deleted, twilld started), N rounds: pings lost, the
// longest gap, and how long until every peer has the new key and not the old one.
// Options: --seconds N (iperf3, 5), --rounds N (joins, leaves, rotations: 5),
// --only throughput|join|rotation.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { LocalStore } from "../../../agent/datastore/local.js";
import type { BackendConfig } from "../../../agent/types.js";
import { pidFromFile } from "../../../conformance/testbed/cleanup.js";
import { podAddress } from "../../../conformance/testbed/matrix.js";
import { Testbed, type TestNode } from "../../../conformance/testbed/testbed.js";
import { readSubnetFile } from "../../../shared/subnet-file.js";
import { pingStream } from "../../../conformance/testbed/traffic.js";
import { devicePublicKey, wireguardKeyFile, wireguardUapi } from "../../../conformance/testbed/wireguard-node.js";
import { listOwnedRoutes } from "../../../testkit/iproute.js";
import { inNetns } from "../../../testkit/netns.js";
import { until } from "../../../testkit/until.js";

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1]! : fallback);
const seconds = Number(opt("seconds", "5"));
const rounds = Number(opt("rounds", "5"));
const only = opt("only", "all");
if (!(seconds >= 1 && seconds <= 120)) throw new Error(`--seconds ${seconds}: want 1..120`);
if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 100)) throw new Error(`--rounds ${rounds}: want 1..100`);
if (!["all", "throughput", "join", "rotation"].includes(only)) throw new Error(`--only ${only}: want throughput, join or rotation`);

/** What the issue asks of bgp: a joining node routable, a leaving one withdrawn, within this. */
const BGP_TARGET_MS = 2_000;
const IPERF_PORT = "5201";
const CONVERGE_MS = 60_000;

/** Processes this bench starts itself (iperf3 servers, route monitors): killed also on an interrupted run. */
const mine = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of mine) c.kill("SIGKILL");
});
const stopChild = async (c: ChildProcess) => {
  if (c.exitCode === null && c.signalCode === null) {
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    await exited;
  }
  mine.delete(c);
};

const step = (msg: string) => process.stderr.write(`  ${msg}\n`);
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

interface Configuration {
  label: string;
  backend: BackendConfig["type"];
  bgpMode?: "mesh" | "routers";
  /** node-2 on rack b, behind the router. */
  racks: boolean;
}

const THROUGHPUT: Configuration[] = [
  { label: "vxlan", backend: "vxlan", racks: false },
  { label: "host-gw", backend: "host-gw", racks: false },
  { label: "bgp, mesh", backend: "bgp", bgpMode: "mesh", racks: false },
  { label: "wireguard (auto: wireguard-go where the kernel has no WireGuard)", backend: "wireguard", racks: false },
  { label: "vxlan, across racks", backend: "vxlan", racks: true },
  { label: "bgp, routers, across racks", backend: "bgp", bgpMode: "routers", racks: true },
];

interface IperfResult {
  gbps: number;
  retransmits: number;
  /** CPU of the sending and the receiving iperf3, % of one core. */
  cpuSender: number;
  cpuReceiver: number;
}

/** One iperf3 run: the server (one test, then it exits) in `serverNs`, the client in `clientNs`. */
async function iperf(serverNs: string, clientNs: string, address: string): Promise<IperfResult> {
  // `ip netns exec` execs iperf3: the child's PID is the server's.
  const server = spawn("ip", ["netns", "exec", serverNs, "iperf3", "-s", "-1", "-p", IPERF_PORT], { stdio: ["ignore", "ignore", "pipe"] });
  mine.add(server);
  try {
    await until(`iperf3 listening in "${serverNs}"`, async () => String((await inNetns(serverNs, ["ss", "-Hltn", `sport = :${IPERF_PORT}`])).stdout).trim() !== "", 10_000);
    const r = await inNetns(clientNs, ["iperf3", "-c", address, "-p", IPERF_PORT, "-t", String(seconds), "-P", "1", "-J"]);
    let doc: { error?: string; end?: { sum_sent?: { retransmits?: number }; sum_received?: { bits_per_second?: number }; cpu_utilization_percent?: { host_total?: number; remote_total?: number } } };
    try {
      doc = JSON.parse(String(r.stdout)) as typeof doc;
    } catch {
      throw new Error(`iperf3 from "${clientNs}" to ${address} gave no JSON (exit ${r.exitCode}): ${String(r.stderr || r.stdout).slice(0, 300)}`);
    }
    const bps = doc.end?.sum_received?.bits_per_second;
    if (doc.error || bps === undefined) throw new Error(`iperf3 from "${clientNs}" to ${address}: ${doc.error ?? "no sum_received in its JSON"}`);
    return {
      gbps: bps / 1e9,
      retransmits: doc.end?.sum_sent?.retransmits ?? 0,
      cpuSender: doc.end?.cpu_utilization_percent?.host_total ?? NaN,
      cpuReceiver: doc.end?.cpu_utilization_percent?.remote_total ?? NaN,
    };
  } finally {
    await stopChild(server);
  }
}

interface ThroughputRow {
  c: Configuration;
  mtu: number;
  node: IperfResult;
  pod: IperfResult;
}

async function throughput(c: Configuration): Promise<ThroughputRow> {
  step(`${c.label}: testbed`);
  const tb = await Testbed.create({ agent: "twilld", backend: c.backend, ...(c.bgpMode ? { bgpMode: c.bgpMode } : {}), nodes: 2, remoteNodes: c.racks ? [2] : [] });
  try {
    const [n1, n2] = tb.nodes as [TestNode, TestNode];
    await tb.startAgents();
    await tb.routesConverged(tb.nodes, CONVERGE_MS);
    const a = await tb.addPod(n1, { echo: false });
    const b = await tb.addPod(n2, { echo: false });
    const mtu = readSubnetFile(n1.subnetFile).mtu;
    step(`${c.label}: iperf3 node-1 -> node-2 (${n2.ip}), ${seconds} s`);
    const node = await iperf(n2.ns, n1.ns, n2.ip);
    step(`${c.label}: iperf3 ${a.name} -> ${b.name} (${podAddress(b)}), ${seconds} s`);
    const pod = await iperf(b.ns, a.ns, podAddress(b));
    return { c, mtu, node, pod };
  } finally {
    await tb.destroy();
  }
}

/**
 * `ip -ts monitor route` in node namespaces: for each twill route (proto 150), whether it is
 * there and since when, by the timestamps ip prints as it reads each kernel event (so a busy
 * event loop here delays nothing that is measured).
 */
class RouteEvents {
  private readonly state = new Map<string, { present: boolean; at: number }>();
  private readonly children: ChildProcess[] = [];

  constructor(namespaces: readonly string[]) {
    for (const ns of namespaces) {
      const child = spawn("ip", ["-ts", "-n", ns, "monitor", "route"], { stdio: ["ignore", "pipe", "inherit"] });
      mine.add(child);
      this.children.push(child);
      createInterface({ input: child.stdout! }).on("line", (line) => this.take(ns, line));
    }
  }

  private take(ns: string, line: string): void {
    const m = /^\[([\d-]+T[\d:]+\.\d{3})\d*\] (Deleted )?(\S+) .*\bproto 150\b/.exec(line);
    if (!m) return;
    // ip prints local time, as a date-time without an offset is read.
    const at = new Date(m[1]!).getTime();
    const present = m[2] === undefined;
    const key = `${ns} ${m[3]}`;
    if (this.state.get(key)?.present !== present) this.state.set(key, { present, at });
  }

  /** When `dst` last came (`present`) or went in `ns`; throws when no such event was seen. */
  since(ns: string, dst: string, present: boolean): number {
    const s = this.state.get(`${ns} ${dst}`);
    if (!s || s.present !== present) throw new Error(`no route event: ${dst} ${present ? "added" : "deleted"} in "${ns}"`);
    return s.at;
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.map(stopChild));
  }
}

interface JoinRound {
  /** Lease's acquiredAt to the last peer's route. */
  fromLease: number;
  /** startAgents() called (twilld started) to the last peer's route. */
  fromStart: number;
  /** leave() called to the last peer's route gone. */
  withdraw: number;
  /** How long leave() itself took (twilld stopped, lease released). */
  leaveCall: number;
  /** bgp: the router still held a route to the node's subnet once every node had dropped it. */
  routerHeld?: boolean;
}

async function acquiredAt(tb: Testbed, node: TestNode): Promise<number> {
  const store = new LocalStore({ dir: tb.twilld!.storeDir, leaseTTLMs: 3_600_000 });
  try {
    const lease = (await store.list()).find((l) => l.nodeName === node.name);
    if (lease?.acquiredAt === undefined) throw new Error(`${node.name} has no lease with acquiredAt in ${tb.twilld!.storeDir}`);
    return lease.acquiredAt;
  } finally {
    await store.close();
  }
}

/** Until every one of `observers` routes (or, `present` false, no longer routes) each of `subnets`. */
async function routedBy(tb: Testbed, observers: readonly TestNode[], subnets: readonly string[], present: boolean): Promise<void> {
  await until(`${subnets.join(", ")} ${present ? "routed" : "withdrawn"} by ${observers.map((n) => n.name).join(", ")}`, async () => {
    for (const n of observers) {
      const have = new Set((await listOwnedRoutes(tb.ip(n))).map((r) => r.dst));
      if (subnets.some((s) => have.has(s) !== present)) return false;
    }
    return true;
  }, 30_000);
}

/**
 * A node that leaves leaves its BIRD running (twilld keeps BIRD across its own restarts), still
 * announcing to the router. Stop it and forget that it announced, so that the next join is a
 * fresh node's: otherwise its twilld adopts that BIRD, or starts the next with `-R`.
 */
async function stopBird(node: TestNode): Promise<void> {
  const dir = join(node.dir, "bird");
  const pid = pidFromFile(join(dir, "bird.pid"));
  if (pid !== null) {
    process.kill(pid, "SIGTERM");
    await until(`${node.name}'s BIRD (${pid}) exited`, () => pidFromFile(join(dir, "bird.pid")) === null, 15_000);
  }
  rmSync(join(dir, "announced"), { force: true });
}

interface JoinResult {
  label: string;
  rounds: JoinRound[];
  /** Warnings of "Refused a route BIRD learned" logged by the nodes that stayed. */
  refusals: number;
}

async function joinsAndLeaves(label: string, backend: "bgp" | "vxlan"): Promise<JoinResult> {
  step(`${label}: testbed (node-1, node-2 on rack a, node-3 on rack b running; node-4 on rack b joins)`);
  const bgp = backend === "bgp";
  const tb = await Testbed.create({ agent: "twilld", backend, ...(bgp ? { bgpMode: "routers" as const } : {}), nodes: 4, remoteNodes: [3, 4] });
  let events: RouteEvents | null = null;
  try {
    const [n1, n2, n3, n4] = tb.nodes as [TestNode, TestNode, TestNode, TestNode];
    const stay = [n1, n2, n3];
    await tb.startAgents(stay);
    await tb.routesConverged(stay, CONVERGE_MS);
    events = new RouteEvents(stay.map((n) => n.ns));
    await sleep(500);
    const out: JoinRound[] = [];
    for (let r = 1; r <= rounds; r++) {
      const started = Date.now();
      await tb.startAgents([n4]);
      const leased = await acquiredAt(tb, n4);
      await routedBy(tb, stay, n4.subnets, true);
      const routed = Math.max(...stay.flatMap((n) => n4.subnets.map((s) => events!.since(n.ns, s, true))));

      const leaving = Date.now();
      await tb.leave(n4);
      const left = Date.now();
      await routedBy(tb, stay, n4.subnets, false);
      const gone = Math.max(...stay.flatMap((n) => n4.subnets.map((s) => events!.since(n.ns, s, false))));
      const round: JoinRound = { fromLease: routed - leased, fromStart: routed - started, withdraw: gone - leaving, leaveCall: left - leaving };
      if (bgp) {
        round.routerHeld = (await tb.router!.routes(4)).some((rt) => n4.subnets.includes(rt.prefix));
        await stopBird(n4);
      }
      out.push(round);
      step(`${label}: round ${r}: routed ${round.fromLease} ms after the lease, withdrawn ${round.withdraw} ms after leave()`);
    }
    const refusals = bgp ? stay.reduce((k, n) => k + tb.twilld!.logged(n, "Refused a route BIRD learned").length, 0) : 0;
    return { label, rounds: out, refusals };
  } finally {
    await events?.stop();
    await tb.destroy();
  }
}

interface RotationRound {
  sent: number;
  lost: number;
  longestGapMs: number;
  /** The slowest answer (packets WireGuard queued during a handshake arrive late, not lost). */
  maxRttMs: number;
  /** From twilld's stop until every peer has the new key and not the old one. */
  peersMs: number;
}

async function keyRotations(): Promise<RotationRound[]> {
  step("wireguard key rotation: testbed of 3 nodes, a pod on node-1 pinging a pod on node-2");
  const tb = await Testbed.create({ agent: "twilld", backend: "wireguard", nodes: 3 });
  try {
    const [n1, n2, n3] = tb.nodes as [TestNode, TestNode, TestNode];
    await tb.startAgents();
    await tb.routesConverged(tb.nodes, CONVERGE_MS);
    const a = await tb.addPod(n1, { echo: false });
    const b = await tb.addPod(n2, { echo: false });
    const out: RotationRound[] = [];
    for (let r = 1; r <= rounds; r++) {
      const oldKey = await devicePublicKey(n2);
      const flow = pingStream(a.ns, podAddress(b), 300);
      await sleep(2_000);
      const started = Date.now();
      await tb.stopAgent(n2);
      rmSync(wireguardKeyFile(n2));
      await tb.startAgents([n2]);
      const newKey = await until("node-2's device has its new key", async () => {
        const k = await devicePublicKey(n2);
        return k !== null && k !== oldKey ? k : false;
      }, 20_000);
      await until("every peer has node-2's new key and not the old one", async () => {
        for (const n of [n1, n3]) {
          const keys = (await wireguardUapi(n).get()).peers.map((p) => p.publicKey);
          if (!keys.includes(newKey) || (oldKey !== null && keys.includes(oldKey))) return false;
        }
        return true;
      }, 30_000);
      const peersMs = Date.now() - started;
      const seen = await flow;
      out.push({ sent: seen.sent, lost: seen.sent - seen.received, longestGapMs: seen.longestGapMs, maxRttMs: Math.round(seen.maxRttMs ?? NaN), peersMs });
      step(`wireguard key rotation: round ${r}: ${seen.sent - seen.received} of ${seen.sent} pings lost, longest gap ${seen.longestGapMs} ms, slowest answer ${seen.maxRttMs} ms, every peer had the new key after ${peersMs} ms`);
    }
    return out;
  } finally {
    await tb.destroy();
  }
}

function printRotations(out: readonly RotationRound[]): void {
  console.log(`\n### wireguard: a node's key replaced while a pod on another node pings one of its pods (20 a second), ${rounds} rounds\n`);
  console.log("| min / median / max | figure |");
  console.log("|---|---|");
  console.log(`| pings lost (of ${out[0]?.sent ?? 0}) | ${spread(out.map((x) => x.lost))} |`);
  console.log(`| longest run of lost pings, ms | ${spread(out.map((x) => x.longestGapMs))} |`);
  console.log(`| slowest answer, ms | ${spread(out.map((x) => x.maxRttMs))} |`);
  console.log(`| twilld stopped -> every peer has the new key, not the old, ms | ${spread(out.map((x) => x.peersMs))} |`);
}

const spread = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `${s[0]} / ${Math.round(mid)} / ${s[s.length - 1]}`;
};
const gb = (x: number) => x.toFixed(2);
const cpu = (r: IperfResult) => `${r.cpuSender.toFixed(0)} / ${r.cpuReceiver.toFixed(0)} %`;

function printThroughput(rows: readonly ThroughputRow[]): void {
  console.log(`\n### Throughput, pod to pod across nodes (iperf3, TCP, 1 stream, ${seconds} s)\n`);
  console.log("| backend | pod MTU | node to node, Gbit/s | pod to pod, Gbit/s | pod / node | retransmits node / pod | iperf3 CPU, pod run: sender / receiver |");
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.c.label} | ${r.mtu} | ${gb(r.node.gbps)} | ${gb(r.pod.gbps)} | ${(r.pod.gbps / r.node.gbps).toFixed(2)}× | ${r.node.retransmits} / ${r.pod.retransmits} | ${cpu(r.pod)} |`);
  }
}

function printJoins(results: readonly JoinResult[]): void {
  console.log(`\n### A node joining and leaving: node-4 (rack b) beside node-1, node-2 (rack a) and node-3 (rack b), ${rounds} rounds\n`);
  console.log(`| min / median / max, ms | ${results.map((r) => r.label).join(" | ")} |`);
  console.log(`|---|${results.map(() => "---|").join("")}`);
  const line = (what: string, pick: (x: JoinRound) => number) => console.log(`| ${what} | ${results.map((r) => spread(r.rounds.map(pick))).join(" | ")} |`);
  line("lease (acquiredAt) -> routed by every other node", (x) => x.fromLease);
  line("twilld started -> routed by every other node", (x) => x.fromStart);
  line("leave() called -> dropped by every other node", (x) => x.withdraw);
  line("of which leave() itself (twilld stopped, lease released)", (x) => x.leaveCall);
  const bgp = results.find((r) => r.rounds.some((x) => x.routerHeld !== undefined));
  if (!bgp) return;
  const within = (pick: (x: JoinRound) => number) => bgp.rounds.filter((x) => pick(x) <= BGP_TARGET_MS).length;
  const met = (k: number) => `${k === bgp.rounds.length ? "met" : "NOT met"} (${k} of ${bgp.rounds.length} rounds)`;
  console.log(`\n${bgp.label}: joins routable within ${BGP_TARGET_MS / 1000} s of the lease: ${met(within((x) => x.fromLease))}; leaves withdrawn within ${BGP_TARGET_MS / 1000} s of leave(): ${met(within((x) => x.withdraw))}.`);
  const held = bgp.rounds.filter((x) => x.routerHeld).length;
  console.log(`After each leave, with the node's BIRD still running: the router still held a route to its subnet in ${held} of ${bgp.rounds.length} rounds; the nodes that stayed logged "Refused a route BIRD learned" ${bgp.refusals} times.`);
}

try {
  console.log(`twill backends on the testbed (twilld in node namespaces, local datastore); load average at the start ${load()}`);
  if (only === "all" || only === "throughput") {
    const rows: ThroughputRow[] = [];
    for (const c of THROUGHPUT) rows.push(await throughput(c));
    printThroughput(rows);
  }
  if (only === "all" || only === "rotation") printRotations(await keyRotations());
  if (only === "all" || only === "join") {
    const results = [await joinsAndLeaves("bgp, routers", "bgp"), await joinsAndLeaves("vxlan", "vxlan")];
    printJoins(results);
  }
  console.log(`\nload average at the end ${load()}`);
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
}
