import { createBackend } from "../../agent/backend/index.js";
import type { Backend, NetworkConfig, NodeLease, ReconcileReport } from "../../agent/types.js";
import { writeSubnetFile } from "../../shared/subnet-file.js";
import { familyOfText } from "../../shared/net/cidr.js";
import type { Logger } from "../../shared/log.js";
import { ipIn } from "../../testkit/netns.js";

/**
 * The agent loop run inside the test process, one instance per node, around the real
 * backends: the datastore is a map every instance sees, the loop reconciles at start, on every
 * change of the lease set and on a timer, as twilld does. It lets the testbed drive the
 * datapath before (or without) the twilld executable, and lets a test stop one node's agent
 * while the others keep running.
 */

export interface InprocNode {
  name: string;
  ns: string;
  publicIP: string;
  underlayDev: string;
  subnets: string[];
  subnetFile: string;
}

interface RunningAgent {
  node: InprocNode;
  backend: Backend;
  lease: NodeLease;
  timer: NodeJS.Timeout;
  /** Reconciles run one at a time per node. */
  chain: Promise<unknown>;
  lastReport: ReconcileReport | null;
  lastError: string | null;
}

export class InprocCluster {
  /** The datastore: every live lease by node name. */
  readonly leases = new Map<string, NodeLease>();
  private readonly agents = new Map<string, RunningAgent>();

  constructor(
    private readonly network: NetworkConfig,
    private readonly logger: Logger,
    private readonly resyncMs = 10_000,
  ) {}

  isRunning = (name: string): boolean => this.agents.has(name);

  /** Starts a node's agent: prepare, claim (or keep) its lease, write the subnet file, reconcile. */
  async start(node: InprocNode): Promise<NodeLease> {
    if (this.agents.has(node.name)) throw new Error(`agent of ${node.name} is already running`);
    const ip = ipIn(node.ns);
    const logger = this.logger.with({ node: node.name });
    const backend = createBackend(this.network, { ip, logger });
    const link = await ip.link(node.underlayDev);
    if (!link) throw new Error(`node ${node.name} has no underlay device ${node.underlayDev}`);
    const data = await backend.prepare({
      nodeName: node.name, publicIP: node.publicIP, underlayDev: node.underlayDev, underlayMTU: link.mtu,
    });
    const lease: NodeLease = { nodeName: node.name, subnets: node.subnets, publicIP: node.publicIP, backend: data };
    const family = familyOfText(node.publicIP);
    writeSubnetFile(node.subnetFile, {
      clusterCIDRs: this.network.clusterCIDRs,
      nodeSubnets: node.subnets,
      mtu: link.mtu - backend.overhead(family),
      backend: this.network.backend.type,
      ipMasq: this.network.ipMasq,
      nodeName: node.name,
    });
    const agent: RunningAgent = {
      node, backend, lease, chain: Promise.resolve(), lastReport: null, lastError: null,
      timer: setInterval(() => void this.reconcile(node.name), this.resyncMs),
    };
    agent.timer.unref();
    this.agents.set(node.name, agent);
    this.leases.set(node.name, lease);
    await this.reconcileAll();
    return lease;
  }

  /** Stops a node's agent; its lease and its kernel state stay, as when twilld is stopped. */
  stop(name: string): void {
    const agent = this.agents.get(name);
    if (!agent) return;
    clearInterval(agent.timer);
    this.agents.delete(name);
  }

  /** The node leaves the cluster: agent stopped and its lease released; the others are told. */
  async leave(name: string, { notify = true } = {}): Promise<void> {
    this.stop(name);
    this.leases.delete(name);
    if (notify) await this.reconcileAll();
  }

  /** A change of the lease set: every running agent reconciles, as on a watch event. */
  async reconcileAll(): Promise<void> {
    await Promise.all([...this.agents.keys()].map((n) => this.reconcile(n)));
  }

  /** One node's reconcile round, serialized with its others; errors are kept, not thrown. */
  reconcile(name: string): Promise<ReconcileReport | null> {
    const agent = this.agents.get(name);
    if (!agent) return Promise.resolve(null);
    const round = agent.chain.then(async () => {
      try {
        agent.lastReport = await agent.backend.reconcile(agent.lease, [...this.leases.values()]);
        agent.lastError = null;
        return agent.lastReport;
      } catch (err) {
        agent.lastError = (err as Error).message;
        this.logger.error("Reconcile failed", { node: name, err });
        return null;
      }
    });
    agent.chain = round;
    return round;
  }

  report(name: string): { report: ReconcileReport | null; error: string | null } {
    const a = this.agents.get(name);
    return { report: a?.lastReport ?? null, error: a?.lastError ?? null };
  }

  stopAll(): void {
    for (const name of [...this.agents.keys()]) this.stop(name);
  }
}
