import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import type { NetworkConfig } from "../../agent/types.js";
import { readSubnetFile } from "../../shared/subnet-file.js";
import type { Resources } from "./cleanup.js";
import { fileTail, httpGet, waitUntilReady } from "../../testkit/daemon.js";
import { inNetns } from "../../testkit/netns.js";
import { DIST_BIN, podIpamStore } from "../../testkit/pods.js";

/**
 * The real node agent: `dist/bin/twilld run` inside each node namespace, all sharing one
 * `local` datastore directory, each with its own subnet file and its health endpoint on the
 * node namespace's loopback. Started detached, so `demo --keep` can leave them running.
 */

export interface TwilldNode {
  name: string;
  ns: string;
  dir: string;
  subnetFile: string;
  /** More flags for this node's twilld (the bgp backend's --bgp-as, --bgp-routers). */
  args?: string[];
}

const METRICS_ADDR = "127.0.0.1:9402";
const READY_MS = 60_000;
const STOP_MS = 10_000;

interface Running {
  child: ChildProcess;
  exited: Promise<unknown[]>;
  pid: number;
  exit: string | null;
  logFile: string;
}

export class TwilldCluster {
  private readonly running = new Map<string, Running>();
  readonly storeDir: string;
  readonly netConf: string;
  private readonly bgp: boolean;
  private readonly wireguard: boolean;

  constructor(
    network: NetworkConfig,
    dir: string,
    private readonly res: Resources,
    private readonly resyncMs: number,
  ) {
    this.storeDir = join(dir, "store");
    this.netConf = join(dir, "net-conf.json");
    this.bgp = network.backend.type === "bgp";
    this.wireguard = network.backend.type === "wireguard";
    writeFileSync(this.netConf, JSON.stringify(netConfFile(network), null, 2) + "\n");
  }

  isRunning = (name: string): boolean => this.running.has(name);

  /** Starts twilld on a node and waits until it is ready (lease held, subnet file written). */
  async start(node: TwilldNode): Promise<string[]> {
    const binary = join(DIST_BIN, "twilld");
    if (!existsSync(binary)) throw new Error(`${binary} is not built (run ./scripts/build)`);
    const logFile = join(node.dir, "twilld.log");
    const fd = openSync(logFile, "a");
    let child: ChildProcess;
    try {
      child = spawnDetached(["ip", "netns", "exec", node.ns, binary, "run",
        "--node-name", node.name, "--datastore", "local", "--store-dir", this.storeDir,
        "--state-dir", node.dir, "--subnet-file", node.subnetFile, "--net-conf", this.netConf, "--iface", "eth0",
        "--metrics-addr", METRICS_ADDR, "--resync", `${this.resyncMs}ms`, "--log-level", "info",
        // The node's own IPAM store (where its pods' addresses are), never the machine's.
        "--ipam-store", podIpamStore(node), ...(node.args ?? [])], fd);
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) throw new Error(`failed to start twilld on ${node.name}`);
    const run: Running = { child, pid: child.pid, exit: null, logFile, exited: once(child, "exit") };
    void run.exited.then(([code, signal]) => {
      run.exit = signal ? `killed by ${String(signal)}` : `exited with code ${String(code)}`;
    });
    this.running.set(node.name, run);
    this.res.pids.add(run.pid);
    // A bgp node's twilld starts BIRD, which outlives it on purpose: the teardown stops it.
    if (this.bgp) this.res.pidFiles.add(join(node.dir, "bird", "bird.pid"));
    // wireguard-go too, named by no PID file on its command line: every process of the node's namespace goes.
    if (this.wireguard) this.res.daemonNamespaces.add(node.ns);
    await waitUntilReady(
      { name: `twilld on ${node.name}`, exited: () => run.exit ?? undefined, logTail: (lines) => fileTail(logFile, lines) },
      "ready",
      async () => (await httpGet(`http://${METRICS_ADDR}/readyz`, node.ns)).status === 200,
      READY_MS,
    );
    return readSubnetFile(node.subnetFile).nodeSubnets;
  }

  /** Stops the agent (SIGTERM); its lease, subnet file and datapath stay, as on a node restart. */
  async stop(name: string): Promise<void> {
    const run = this.running.get(name);
    if (!run) return;
    this.running.delete(name);
    if (!run.exit) run.child.kill("SIGTERM");
    // A graceful stop takes milliseconds; one that hangs must not hang the teardown.
    const killer = setTimeout(() => run.child.kill("SIGKILL"), STOP_MS);
    await run.exited;
    clearTimeout(killer);
    this.res.pids.delete(run.pid);
  }

  /** Kills the agent with SIGKILL, as a crash would; nothing is cleaned up. */
  async kill(name: string): Promise<void> {
    const run = this.running.get(name);
    if (!run) return;
    this.running.delete(name);
    if (!run.exit) run.child.kill("SIGKILL");
    await run.exited;
    this.res.pids.delete(run.pid);
  }

  /** The node leaves: agent stopped, its lease released in the shared datastore. */
  async leave(node: TwilldNode): Promise<void> {
    await this.stop(node.name);
    // As an operator does it: `twilld leave` (it also shuts a bgp node's BIRD down).
    const r = await inNetns(node.ns, [join(DIST_BIN, "twilld"), "leave", "--node-name", node.name, "--datastore", "local",
      "--store-dir", this.storeDir, "--state-dir", node.dir]);
    if (r.exitCode !== 0) throw new Error(`twilld leave on ${node.name} failed: ${String(r.stderr)}`);
  }

  /** `twilld status` on the node, as an operator runs it there. */
  async status(node: TwilldNode, output: "table" | "json" = "table"): Promise<string> {
    const r = await inNetns(node.ns, [join(DIST_BIN, "twilld"), "status", "--node-name", node.name, "--datastore", "local",
      "--store-dir", this.storeDir, "--state-dir", node.dir, "--subnet-file", node.subnetFile, "--output", output]);
    return String(r.stdout);
  }

  /** Lines the agent logged with `msg` (JSON lines), for checks on what it reported. */
  logged(node: TwilldNode, msg: string): Record<string, unknown>[] {
    const file = join(node.dir, "twilld.log");
    if (!existsSync(file)) return [];
    return readFileSync(file, "utf8").split("\n").filter((l) => l.includes(`"msg":"${msg}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((n) => this.stop(n)));
  }

  /** Forget the processes without stopping them (`demo --keep`). */
  pids(): number[] {
    return [...this.running.values()].map((r) => r.pid);
  }
}

/** The cluster network config file twilld reads (flannel's net-conf.json keys). */
export function netConfFile(n: NetworkConfig): Record<string, unknown> {
  const v4 = n.clusterCIDRs.find((c) => !c.includes(":"));
  const v6 = n.clusterCIDRs.find((c) => c.includes(":"));
  return {
    ...(v4 ? { Network: v4, SubnetLen: n.subnetLen[4] ?? 24 } : { EnableIPv4: false }),
    ...(v6 ? { EnableIPv6: true, IPv6Network: v6, IPv6SubnetLen: n.subnetLen[6] ?? 64 } : {}),
    Backend: backendConf(n.backend),
    IPMasq: n.ipMasq,
  };
}

function backendConf(b: NetworkConfig["backend"]): Record<string, unknown> {
  if (b.bgp) return { Type: "bgp", Mode: b.bgp.mode, AS: b.bgp.as, ...(b.bgp.routers.length ? { Routers: b.bgp.routers.map((r) => ({ Address: r.address, AS: r.as })) } : {}) };
  if (b.wireguard) {
    const w = b.wireguard;
    return { Type: "wireguard", ListenPort: w.listenPort, PersistentKeepaliveInterval: w.persistentKeepalive, Mode: w.mode, ...(w.allowUnencryptedFrom.length ? { AllowUnencryptedFrom: w.allowUnencryptedFrom } : {}) };
  }
  return { Type: b.type, VNI: b.vni, Port: b.port };
}

// Detached: a kept demo's agents outlive the process that started them.
const spawnDetached = (argv: string[], fd: number): ChildProcess => {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", fd, fd], detached: true });
  child.unref();
  return child;
};
