// Records which functions of twill's compiled file a pod's CNI calls run, for scripts/build's
// second compile, which lays the bytecode out in that order (Bun's profile-guided layout,
// `bytecodeOrder`): what a call runs sits together at the front of the file, and a start faults
// in fewer pages of it.
//
//   bun scripts/lib/bytecode-order.ts EXECUTABLE OUTDIR
//
// Runs EXECUTABLE as a runtime runs the plugin, with BUN_BYTECODE_ORDER_OUT set, once per kind
// of call: as a node runs it under twilld (the subnet file, twill-ipam in-process) ADD, DEL,
// CHECK and STATUS; ADD with its own ranges (the benchmarks' and a standalone node's config);
// twill-ipam's ADD and DEL as another plugin chains it; and VERSION. Each ADD is recorded on a
// second pod of its network, after a first one made the bridge, as on a node that has pods.
// Writes one file per call into OUTDIR and prints their paths on stdout, comma-separated, the
// most common first.
//
// The calls run in network namespaces of its own (a node and four pods, unique per run), removed
// afterwards, also on failure; the machine's own namespace is never touched. Needs root and
// iproute2: without them (or where namespaces cannot be made, as in an unprivileged container)
// it exits 3 having recorded nothing, and the build lays the file out without a profile. A call
// of twill's that fails is a failure of the build (exit 1).
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { addNetns, deleteNetnsSync } from "../../testkit/netns.js";

const [executable, outdir] = process.argv.slice(2);
if (!executable || !outdir) {
  console.error("usage: bun scripts/lib/bytecode-order.ts EXECUTABLE OUTDIR");
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error("bytecode-order: not root, so no namespaces to run a pod's calls in: nothing recorded");
  process.exit(3);
}

const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const prefix = `tbo${process.pid.toString(36)}-`;
const node = `${prefix}node`;
const pods = [0, 1, 2, 3].map((i) => `${prefix}pod${i}`);
const work = mkdtempSync(join(tmpdir(), "twill-bytecode-order-"));
const made: string[] = [];

/** Nothing can be recorded on this machine: the build lays the file out without a profile. */
class CannotRecord extends Error {}

// A signal (Ctrl-C at the build) stops the calls, and the namespaces are still removed below.
let interrupted: string | null = null;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void (interrupted = signal));

/** The file as a runtime finds it: named for its type in a CNI directory (the name picks the program). */
function install(dir: string): void {
  mkdirSync(dir);
  for (const name of ["twill", "twill-ipam"]) {
    try {
      linkSync(resolve(executable!), join(dir, name));
    } catch {
      copyFileSync(resolve(executable!), join(dir, name));
    }
  }
}

interface Call {
  /** The program the file runs as (the name it is started under); twill by default. */
  program?: "twill-ipam";
  command: string;
  /** The config, or one made from the last ADD's result (CHECK's prevResult). */
  conf: object | ((added: object) => object);
  pod?: number;
  /** The file this call's functions are recorded in; none for a call that only prepares. */
  record?: string;
}

let added: object = {};

function run(cniDir: string, c: Call): void {
  if (interrupted) throw new Error(`stopped by ${interrupted}`);
  const env: Record<string, string> = {
    PATH,
    CNI_COMMAND: c.command,
    CNI_CONTAINERID: `bytecode-order-${c.pod ?? 0}`,
    CNI_NETNS: c.pod === undefined ? "" : `/run/netns/${pods[c.pod]}`,
    CNI_IFNAME: "eth0",
    CNI_PATH: cniDir,
    ...(c.record ? { BUN_BYTECODE_ORDER_OUT: c.record } : {}),
  };
  // IPAM touches no network: twill-ipam runs where the build does, as a chaining plugin would run it.
  const file = join(cniDir, c.program ?? "twill");
  const argv = c.pod === undefined || c.program ? [file] : ["ip", "netns", "exec", node, file];
  const conf = typeof c.conf === "function" ? c.conf(added) : c.conf;
  const r = spawnSync(argv[0]!, argv.slice(1), { input: JSON.stringify(conf), env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${c.command} failed (exit ${r.status}): ${r.stdout.trim()} ${r.stderr.trim()}`);
  if (c.command === "ADD") added = JSON.parse(r.stdout) as object;
  if (c.record && !(existsSync(c.record) && statSync(c.record).size > 0)) throw new Error(`${c.command}: no functions recorded in ${c.record}`);
}

/** The namespaces the calls run in; false where they cannot be made (no iproute2, no privilege to make namespaces). */
async function makeNamespaces(): Promise<boolean> {
  try {
    for (const ns of [node, ...pods]) {
      // Noted first: one made whose loopback then fails is removed too (the names are this run's).
      made.push(ns);
      await addNetns(ns);
    }
    return true;
  } catch (err) {
    console.error(`bytecode-order: cannot make network namespaces here (${err instanceof Error ? err.message : String(err)}): nothing recorded`);
    return false;
  }
}

let status = 0;
try {
  if (!(await makeNamespaces())) throw new CannotRecord();
  const cniDir = join(work, "bin");
  install(cniDir);
  mkdirSync(outdir, { recursive: true });
  const out = (name: string) => resolve(outdir, `${name}.order`);
  const subnetFile = join(work, "subnet.json");
  writeFileSync(subnetFile, JSON.stringify({ clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: ["10.244.1.0/24"], mtu: 1450, backend: "vxlan", ipMasq: false }));
  const base = { cniVersion: "1.0.0", type: "twill", isDefaultGateway: true, hairpinMode: true, ipMasq: false };
  // As deploy/twill.yaml configures it under twilld.
  const underAgent = { ...base, name: "twill", bridge: "cni0", subnetFile, logFile: join(work, "twill.log"), ipam: { type: "twill-ipam", dataDir: join(work, "ipam") } };
  const ranges = { ...base, name: "ranges", bridge: "cni1", mtu: 1450, logFile: join(work, "ranges.log"), ipam: { type: "twill-ipam", ranges: [[{ subnet: "10.245.0.0/16" }]], dataDir: join(work, "ipam") } };
  // twill-ipam on its own, as another plugin (the reference bridge, say) chains it.
  const ipamOnly = { cniVersion: "1.0.0", name: "chained", type: "bridge", ipam: { type: "twill-ipam", ranges: [[{ subnet: "10.246.0.0/16" }]], dataDir: join(work, "ipam") } };
  const calls: Call[] = [
    { command: "ADD", conf: underAgent, pod: 0 },
    { command: "ADD", conf: underAgent, pod: 1, record: out("add") },
    { command: "DEL", conf: underAgent, pod: 1, record: out("del") },
    { command: "ADD", conf: underAgent, pod: 1 },
    { command: "CHECK", conf: (prevResult) => ({ ...underAgent, prevResult }), pod: 1, record: out("check") },
    { command: "STATUS", conf: underAgent, record: out("status") },
    { command: "ADD", conf: ranges, pod: 2 },
    { command: "ADD", conf: ranges, pod: 3, record: out("add-ranges") },
    { program: "twill-ipam", command: "ADD", conf: ipamOnly, pod: 0 },
    { program: "twill-ipam", command: "ADD", conf: ipamOnly, pod: 1, record: out("ipam-add") },
    { program: "twill-ipam", command: "DEL", conf: ipamOnly, pod: 1, record: out("ipam-del") },
    { program: "twill-ipam", command: "DEL", conf: ipamOnly, pod: 0 },
    { command: "VERSION", conf: { cniVersion: "1.0.0" }, record: out("version") },
    { command: "DEL", conf: ranges, pod: 3 },
    { command: "DEL", conf: ranges, pod: 2 },
    { command: "DEL", conf: underAgent, pod: 1 },
    { command: "DEL", conf: underAgent, pod: 0 },
  ];
  for (const c of calls) {
    // A turn of the event loop, where a signal's handler runs.
    await new Promise((resolve) => setImmediate(resolve));
    run(cniDir, c);
  }
  // Most common first: a node runs ADD and DEL for every pod, STATUS and CHECK now and then.
  console.log(["add", "del", "add-ranges", "status", "check", "ipam-add", "ipam-del", "version"].map(out).join(","));
} catch (err) {
  if (err instanceof CannotRecord) {
    status = 3;
  } else {
    console.error(`bytecode-order: ${err instanceof Error ? err.message : String(err)}`);
    status = 1;
  }
} finally {
  for (const ns of made.reverse()) deleteNetnsSync(ns);
  rmSync(work, { recursive: true, force: true });
}
process.exit(status);
