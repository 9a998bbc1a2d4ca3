import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { vtepName } from "../shared/kernel/vxlan.js";
import { readSubnetFile } from "../shared/subnet-file.js";
import { join } from "node:path";
import { pidFromFile } from "./testbed/cleanup.js";
import { reachability, type PairResult } from "./testbed/matrix.js";
import { removeByPrefix, Testbed, WIREGUARD_PORT, type IpFamily } from "./testbed/testbed.js";
import { underlayCounters, type UnderlayCounts } from "./testbed/underlay-counters.js";
import { WG_DEVICE } from "../agent/backend/wireguard/wireguard-go.js";
import { wireguardFiles, wireguardUapi } from "./testbed/wireguard-node.js";
import { KernelWireguardClient, kernelWireguardClient } from "../agent/backend/wireguard/kernel-client.js";

/**
 * `./scripts/demo`: a cluster of network namespaces on this machine, the real twilld on every
 * node and two pods per node attached by the real twill plugin; prints the nodes and a
 * pod-to-pod reachability matrix per address family (`--ip-family 4|6|dual`), then removes
 * everything (`--keep` leaves it running, `./scripts/demo down` removes a kept one). The
 * machine's own network is never changed.
 */

const STATE_DIR = "/run/twill-demo";
const STATE_FILE = `${STATE_DIR}/state.json`;
const BACKENDS = ["vxlan", "host-gw", "auto", "bgp", "wireguard"] as const;
const FAMILIES: Record<string, IpFamily> = { "4": 4, "6": 6, dual: "dual" };

const tty = process.stdout.isTTY;
const paint = (code: string) => (s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const green = paint("32");
const red = paint("31");
const dim = paint("2");
const bold = paint("1");

interface KeptState {
  prefix: string;
  dir: string;
  pids: number[];
  /** The bgp backend's daemons (each node's BIRD and the router's FRR), the wireguard backend's wireguard-go. */
  daemons?: number[];
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      nodes: { type: "string", default: "3" },
      backend: { type: "string", default: "vxlan" },
      remote: { type: "string", default: "" },
      "ip-family": { type: "string", default: "4" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: ./scripts/demo [--nodes N] [--backend vxlan|host-gw|auto|bgp|wireguard] [--ip-family 4|6|dual] [--remote 3,4] [--keep]\n" +
        "       ./scripts/demo down      remove a cluster left by --keep\n" +
        "  --ip-family  4: IPv4 underlay and pods (default); 6: IPv6-only underlay, nodes and pods;\n" +
        "               dual: dual-stack underlay (IPv4 primary) and dual-stack pods\n" +
        "  --remote     nodes put on a second L3 segment behind a router (host-gw cannot reach them)\n" +
        "  --backend bgp: two racks (segments) joined by a BGP router (FRR); every node runs BIRD and\n" +
        "               peers with its rack's router leg; by default the second half of the nodes is remote\n" +
        "  --backend wireguard: pod traffic between nodes encrypted (the kernel's WireGuard, or wireguard-go\n" +
        "               where the kernel has none); the switch's counters show what crossed the underlay\n",
    );
    return 0;
  }
  if (positionals[0] === "down") return down();
  if (positionals.length && positionals[0] !== "up") throw new Error(`unknown command ${positionals[0]} (up or down)`);
  if (process.getuid?.() !== 0) throw new Error("the demo needs root: it builds network namespaces");
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > 50) throw new Error(`--nodes ${values.nodes}: give 2 to 50`);
  const backend = values.backend as (typeof BACKENDS)[number];
  if (!BACKENDS.includes(backend)) throw new Error(`--backend ${values.backend}: give ${BACKENDS.join(", ")}`);
  const ipFamily = Object.hasOwn(FAMILIES, values["ip-family"]) ? FAMILIES[values["ip-family"]] : undefined;
  if (ipFamily === undefined) throw new Error(`--ip-family ${values["ip-family"]}: give 4, 6 or dual`);
  // bgp: two racks unless told otherwise, so pods reach each other across the router.
  const remote = values.remote
    ? values.remote.split(",").map(Number)
    : backend === "bgp"
      ? Array.from({ length: Math.floor(nodes / 2) }, (_, i) => nodes - Math.floor(nodes / 2) + 1 + i)
      : [];
  if (existsSync(STATE_FILE)) throw new Error(`a kept demo is still running; remove it first: ./scripts/demo down`);

  const started = Date.now();
  const familyText = ipFamily === "dual" ? "dual-stack" : `IPv${ipFamily}`;
  process.stdout.write(bold(`twill demo: ${nodes} nodes, backend ${backend}, ${familyText}${remote.length ? `, nodes ${remote.join(",")} behind a router` : ""}\n`));
  const step = (msg: string) => process.stdout.write(`  ${dim("▸")} ${msg}\n`);
  const tb = await Testbed.create({ nodes, backend, ipFamily, remoteNodes: remote, agent: "twilld", plugin: "twill", progress: step });
  let ok = false;
  try {
    await tb.startAgents();
    for (const n of tb.nodes) for (let i = 0; i < 2; i++) await tb.addPod(n);
    if (backend === "bgp") step(`BGP converged: every node routes every other node's subnets after ${((await tb.routesConverged()) / 1000).toFixed(1)} s more`);
    const underlay = backend === "wireguard" ? await underlayCounters(tb, WIREGUARD_PORT) : null;
    process.stdout.write(`  ${green("✓")} cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s\n\n`);
    await printNodes(tb);
    ok = true;
    for (const family of ipFamily === "dual" ? ([4, 6] as const) : [ipFamily]) {
      step(`probing ${tb.pods.length * (tb.pods.length - 1)} pod pairs over IPv${family}: ping and TCP echo`);
      const results = await reachability(tb.pods, family);
      printMatrix(tb, results, family);
      ok &&= results.every((r) => r.ping.ok && r.tcp.ok);
    }
    printPeerErrors(tb);
    if (tb.router) ok = (await printBgp(tb)) && ok;
    if (underlay) ok = (await printWireguard(tb, await underlay())) && ok;
    if (values.keep) {
      keep(tb);
      return ok ? 0 : 1;
    }
  } catch (err) {
    await tb.destroy();
    throw err;
  }
  process.stdout.write(dim("cleaning up: agents, pods, nodes, switch ...") + "\n");
  await tb.destroy();
  process.stdout.write(`${green("✓")} removed every namespace, process and temp dir\n`);
  return ok ? 0 : 1;
}

async function printNodes(tb: Testbed): Promise<void> {
  const type = tb.network.backend.type;
  const rows: string[][] = [["NODE", "UNDERLAY", "SEGMENT", "SUBNETS", type === "bgp" ? "AS" : type === "wireguard" ? "WIREGUARD PUBLIC KEY" : "VTEP MAC", "PODS"]];
  for (const n of tb.nodes) {
    const pods = tb.pods.filter((p) => p.node === n).map((p) => `${p.name} ${p.ips.join(" ")}`);
    const backendColumn = type === "bgp"
      ? (n.args?.[n.args.indexOf("--bgp-as") + 1] ?? String(tb.network.backend.bgp?.as ?? "-"))
      : type === "wireguard"
        ? String(tb.twilld?.logged(n, "WireGuard backend")[0]?.publicKey ?? "-")
        : ((await tb.ip(n).link(vtepName(tb.network.backend.vni)))?.address ?? "-");
    rows.push([n.name, [n.ip, n.ip6].filter(Boolean).join(" "), n.segment, n.subnets.join(" "), backendColumn, pods.join(", ")]);
  }
  process.stdout.write(table(rows, [0, 1, 2, 3, 4, 5]) + "\n");
}

function printMatrix(tb: Testbed, results: PairResult[], family: 4 | 6): void {
  process.stdout.write(`\n${bold(`Reachability over IPv${family}`)} ${dim("(ms: ping round trip / TCP connect + echo)")}\n`);
  const names = tb.pods.map((p) => p.name);
  const rows: string[][] = [["from \\ to", ...names]];
  const cells: string[][] = [];
  for (const from of tb.pods) {
    const row = [from.name];
    const colored = [from.name];
    for (const to of tb.pods) {
      if (to === from) {
        row.push("·");
        colored.push(dim("·"));
        continue;
      }
      const r = results.find((x) => x.from === from && x.to === to)!;
      const good = r.ping.ok && r.tcp.ok;
      const text = good
        ? `${r.ping.ms!.toFixed(2)}/${r.tcp.ms!.toFixed(2)}`
        : `✗ ${r.ping.ok ? "" : "ping"}${!r.ping.ok && !r.tcp.ok ? "+" : ""}${r.tcp.ok ? "" : "tcp"}`;
      row.push(text);
      colored.push(good ? green(text) : red(text));
    }
    rows.push(row);
    cells.push(colored);
  }
  process.stdout.write(table(rows, [0], cells) + "\n");
  const good = results.filter((r) => r.ping.ok && r.tcp.ok).length;
  const line = `${good}/${results.length} pod pairs reachable over IPv${family} (ping and TCP)`;
  process.stdout.write(`\n${good === results.length ? green("✓ " + line) : red("✗ " + line)}\n`);
  const crossNode = results.filter((r) => r.from.node !== r.to.node && r.ping.ok);
  if (crossNode.length) {
    const avg = crossNode.reduce((s, r) => s + r.ping.ms!, 0) / crossNode.length;
    process.stdout.write(dim(`  across nodes: average ping ${avg.toFixed(3)} ms over ${tb.network.backend.type}\n`));
  }
}

/** What the agents said they cannot reach (host-gw to a node on another segment, say). */
function printPeerErrors(tb: Testbed): void {
  const lines = tb.nodes.flatMap((n) => {
    const reasons = new Set((tb.twilld?.logged(n, "Peer unreachable") ?? []).map((l) => String(l.reason)));
    return [...reasons].map((r) => `  ${n.name}: ${r}`);
  });
  if (lines.length) process.stdout.write(`\n${bold("The agents report")}\n${red(lines.join("\n"))}\n`);
}

/**
 * The bgp backend's proof: the router's sessions and the route it holds per node subnet (in
 * its kernel, by zebra), no VXLAN device on any node, and the pods' MTU the underlay's.
 */
async function printBgp(tb: Testbed): Promise<boolean> {
  const router = tb.router!;
  const sessions = await router.sessions();
  process.stdout.write(`\n${bold("The router (FRR, another BGP implementation than the nodes' BIRD)")}\n`);
  process.stdout.write(
    table(
      [["PEER", "FAMILY", "AS", "STATE", "PREFIXES RECEIVED"], ...sessions.map((s) => [s.peer, `IPv${s.family}`, String(s.remoteAs), s.state, String(s.pfxRcd)])],
      [0, 1, 3],
    ) + "\n",
  );
  let ok = true;
  const families = [...new Set(tb.nodes.flatMap((n) => n.subnets.map((s) => (s.includes(":") ? 6 : 4))))] as (4 | 6)[];
  for (const family of families) {
    const routes = await router.routes(family);
    for (const n of tb.nodes) {
      for (const subnet of n.subnets.filter((s) => s.includes(":") === (family === 6))) {
        const r = routes.find((x) => x.prefix === subnet && x.installed);
        const via = r?.nexthops.map((h) => h.ip).filter(Boolean).join(", ");
        ok &&= r !== undefined;
        process.stdout.write(`  ${r ? green("✓") : red("✗")} router kernel: ${subnet} ${r ? `via ${via}` : "missing"} ${dim(`(${n.name})`)}\n`);
      }
    }
  }
  let vxlan = 0;
  for (const n of tb.nodes) vxlan += (await tb.ip(n).links()).filter((l) => l.linkinfo?.info_kind === "vxlan").length;
  ok &&= vxlan === 0;
  process.stdout.write(`  ${vxlan === 0 ? green("✓") : red("✗")} VXLAN devices on the nodes: ${vxlan}; pods' MTU ${readSubnetFile(tb.nodes[0]!.subnetFile).mtu} (the underlay's)\n`);
  return ok;
}

/**
 * The wireguard backend's proof: what the underlay's switch counted between the nodes while
 * every pod pair talked (only UDP to the WireGuard port, no pod address in clear), and each
 * node's device and mode.
 */
async function printWireguard(tb: Testbed, seen: UnderlayCounts): Promise<boolean> {
  process.stdout.write(`\n${bold("On the underlay")} ${dim("(the switch's counters, every frame between the nodes while the pods talked)")}\n`);
  const ok = seen.tunnel > 0 && seen.other === 0 && seen.podsInClear === 0;
  process.stdout.write(`  ${seen.tunnel > 0 ? green("✓") : red("✗")} ${seen.tunnel} packets of UDP to port ${WIREGUARD_PORT} (WireGuard)\n`);
  process.stdout.write(`  ${seen.other === 0 ? green("✓") : red("✗")} ${seen.other} other IP packets between nodes\n`);
  process.stdout.write(`  ${seen.podsInClear === 0 ? green("✓") : red("✗")} ${seen.podsInClear} packets with a pod address in clear\n`);
  for (const n of tb.nodes) {
    const device = await tb.ip(n).link(WG_DEVICE);
    const mode = (tb.twilld?.logged(n, "WireGuard backend")[0]?.mode as string | undefined) ?? "?";
    const control = mode === "kernel" ? kernelWireguardClient(WG_DEVICE, `/run/netns/${n.ns}`) : wireguardUapi(n);
    const peers = (await control.get()).peers;
    if (control instanceof KernelWireguardClient) control.close();
    const shaken = peers.filter((p) => p.lastHandshakeSec > 0).length;
    process.stdout.write(`  ${device ? green("✓") : red("✗")} ${n.name}: device ${WG_DEVICE} (${mode}, MTU ${device?.mtu ?? "-"}), ${peers.length} peers, ${shaken} with a handshake\n`);
  }
  process.stdout.write(dim(`  pods' MTU ${readSubnetFile(tb.nodes[0]!.subnetFile).mtu}: the underlay's less WireGuard's 60 (IPv4) or 80 (IPv6)\n`));
  return ok;
}

/** Aligned columns; `colored` (optional) replaces body cells after widths are measured on plain text. */
function table(rows: string[][], left: number[], colored?: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r, ri) =>
      r
        .map((cell, i) => {
          const pad = " ".repeat(widths[i]! - cell.length);
          const shown = ri === 0 ? bold(cell) : (colored?.[ri - 1]?.[i] ?? cell);
          return left.includes(i) ? shown + pad : pad + shown;
        })
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function keep(tb: Testbed): void {
  tb.detach();
  const daemons = tb.nodes.flatMap((n) => [pidFromFile(join(n.dir, "bird", "bird.pid")), pidFromFile(wireguardFiles(n).pid, isWireguardGo)]).filter((p) => p !== null);
  const state: KeptState = { prefix: tb.prefix, dir: tb.dir, pids: tb.twilld?.pids() ?? [], daemons: [...daemons, ...(tb.router?.pids ?? [])] };
  mkdirSync(STATE_DIR, { recursive: true });
  writeFileSync(STATE_FILE, JSON.stringify(state, null, 2) + "\n");
  const pod = tb.pods[0]!;
  const other = tb.pods[tb.pods.length - 1]!;
  process.stdout.write(
    `\n${bold("kept running")} (agents: twilld, PIDs ${state.pids.join(" ")}; logs in ${tb.dir}/node-*/)\n` +
      `  try:   ip netns exec ${pod.ns} ping ${other.ips[0]}\n` +
      `         ip netns exec ${tb.nodes[0]!.ns} ip route show proto 150\n` +
      `  stop:  ./scripts/demo down\n`,
  );
}

/** wireguard-go's command line as twilld starts it: it names no file, only its device. */
const isWireguardGo = (argv: readonly string[]): boolean => argv.join(" ") === `wireguard-go -f ${WG_DEVICE}`;

async function down(): Promise<number> {
  if (!existsSync(STATE_FILE)) {
    process.stdout.write("no kept demo to remove\n");
    return 0;
  }
  const state = JSON.parse(readFileSync(STATE_FILE, "utf8")) as KeptState;
  for (const pid of state.pids) {
    // Only a process that is still our agent: a PID may have been reused since.
    const cmd = readCmdline(pid);
    if (cmd.includes("twilld") && cmd.includes(state.dir)) process.kill(pid, "SIGTERM");
  }
  for (const pid of state.daemons ?? []) {
    // BIRD and FRR were started with files in the demo's directory; wireguard-go names only its device.
    const cmd = readCmdline(pid);
    if (cmd.includes(state.dir) || isWireguardGo(cmd.trim().split(" "))) process.kill(pid, "SIGKILL");
  }
  const removed = await removeByPrefix(state.prefix);
  rmSync(state.dir, { recursive: true, force: true });
  rmSync(STATE_FILE, { force: true });
  rmSync(STATE_DIR, { recursive: true, force: true });
  process.stdout.write(`${green("✓")} removed ${removed.length} namespaces, ${state.pids.length} agents and ${state.dir}\n`);
  return 0;
}

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
