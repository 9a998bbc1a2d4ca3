import { Agent } from "../../agent/agent.js";
import { createBackend } from "../../agent/backend/index.js";
import { errorMessage } from "../../agent/errors.js";
import { createMetrics } from "../../agent/metrics.js";
import type { Backend, NetworkConfig, NodeLease, ReconcileReport } from "../../agent/types.js";
import type { NodeKernel } from "../../shared/kernel/node-kernel.js";
import type { Logger } from "../../shared/log.js";
import { MemoryDatastore } from "../../testkit/memory-store.js";
import { kernelIn } from "../../testkit/netns.js";
import { podIpamStore } from "../../testkit/pods.js";
import { until } from "../../testkit/until.js";

/**
 * The real agent loop (agent/agent.ts) run inside the test process, one per node namespace,
 * all on one in-memory datastore. Each node's backend is the real one, wrapped to keep its
 * last reconcile report, so a test can read what the datapath said about every peer; a test
 * can stop one node's agent while the others keep running.
 */

export interface InprocNode {
  name: string;
  ns: string;
  /** The node's public IP on its eth0. */
  ip: string;
  /** The node's state dir: its IPAM store lies below. */
  dir: string;
  subnetFile: string;
}

interface Running {
  agent: Agent;
  kernel: NodeKernel;
  /** The last reconcile's report, or its error, and the peers it was given. */
  report: ReconcileReport | null;
  error: string | null;
  peers: string[] | null;
  inFlight: number;
}

/** Leases outlive any test; the agents renew them anyway. */
const LEASE_TTL_MS = 3_600_000;
const RENEW_MS = 60_000;

export class InprocAgents {
  private readonly db = new MemoryDatastore();
  private readonly running = new Map<string, Running>();

  constructor(
    private readonly network: NetworkConfig,
    private readonly logger: Logger,
    private readonly resyncMs: number,
  ) {}

  isRunning = (name: string): boolean => this.running.has(name);

  /** Starts a node's agent; returns once it holds its lease and wrote its subnet file. */
  async start(node: InprocNode): Promise<string[]> {
    if (this.running.has(node.name)) throw new Error(`agent of ${node.name} is already running`);
    const kernel = kernelIn(node.ns);
    const logger = this.logger.with({ node: node.name });
    const run: Running = { agent: null!, kernel, report: null, error: null, peers: null, inFlight: 0 };
    run.agent = new Agent({
      nodeName: node.name,
      network: this.network,
      store: this.db.open(this.network, LEASE_TTL_MS),
      kernel,
      backend: () => recording(createBackend(this.network, { kernel, logger }), run),
      underlay: { iface: "eth0", publicIP: node.ip },
      subnetFile: node.subnetFile,
      ipamStore: podIpamStore(node),
      resyncMs: this.resyncMs,
      renewMs: RENEW_MS,
      logger,
      metrics: createMetrics(false),
    });
    this.running.set(node.name, run);
    await run.agent.start();
    const lease = (await this.db.open(this.network).list()).find((l) => l.nodeName === node.name);
    if (!lease) throw new Error(`agent of ${node.name} started without a lease`);
    return lease.subnets;
  }

  /** Stops a node's agent; its lease and its kernel state stay, as when twilld is stopped. */
  async stop(name: string): Promise<void> {
    const run = this.running.get(name);
    if (!run) return;
    this.running.delete(name);
    await run.agent.stop();
    run.kernel.close();
  }

  /** The node leaves the cluster: agent stopped and its lease released; the others are told. */
  async leave(name: string): Promise<void> {
    await this.stop(name);
    await this.db.open(this.network).release(name);
  }

  /** The last reconcile of a node's agent: its report, or the error it failed with. */
  report(name: string): { report: ReconcileReport | null; error: string | null } {
    const r = this.running.get(name);
    return { report: r?.report ?? null, error: r?.error ?? null };
  }

  /** Waits until every running agent's datapath reflects the current lease set. */
  async settled(): Promise<void> {
    await until("every agent reconciled with the current peers", async () => {
      const live = (await this.db.open(this.network).list()).map((l) => l.nodeName);
      return [...this.running].every(
        ([name, r]) => r.inFlight === 0 && r.peers?.join() === live.filter((n) => n !== name).sort().join(),
      );
    });
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((n) => this.stop(n)));
  }
}

/** The backend, keeping each reconcile's outcome and peer set in `run`. */
function recording(backend: Backend, run: Running): Backend {
  const track = async (peers: NodeLease[], reconcile: () => Promise<ReconcileReport>): Promise<ReconcileReport> => {
    run.inFlight++;
    try {
      run.report = await reconcile();
      run.error = null;
      return run.report;
    } catch (err) {
      run.error = errorMessage(err);
      throw err;
    } finally {
      run.peers = peers.map((p) => p.nodeName).sort();
      run.inFlight--;
    }
  };
  return {
    type: backend.type,
    overhead: (family) => backend.overhead(family),
    prepare: (local) => backend.prepare(local),
    reconcile: (local, peers) => track(peers, () => backend.reconcile(local, peers)),
    reconcilePeers: (local, peers, changed) => track(peers, () => backend.reconcilePeers(local, peers, changed)),
  };
}
