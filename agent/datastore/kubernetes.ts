import { CoreV1Api, type KubeConfig, type V1Lease, type V1Node } from "@kubernetes/client-node";
import { nullLogger, type Logger } from "../../shared/log.js";
import { overlaps, parseCidr } from "../../shared/net/cidr.js";
import { systemClock, type Clock } from "../clock.js";
import { DatastoreError, LeaseLostError } from "../errors.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore, UnreadableRecord } from "../types.js";
import { claimSubnets, requirePools } from "./claim.js";
import { REQUEST_TIMEOUT_MS, apiClient, mergePatch, statusCode, strategicMergePatch } from "./kubernetes-api.js";
import { ResilientInformer, describeApiError, listInPages, listPage } from "./kubernetes-informer.js";
import { cachedLeaseView, legacyPlan, takenByOthers, withLegacy, type LeaseView } from "./kubernetes-lease-view.js";
import { SubnetLeases } from "./kubernetes-leases.js";
import {
  NETWORK_UNAVAILABLE, NETWORK_UP_REASON, annotationChanges, cachedNodeView, clearedAnnotations, nodeAnnotations, nodeFingerprint, nodeView,
  subnetSource, type NodeView,
} from "./kubernetes-node-view.js";
import { publishedLeases, unreadableObjects } from "./kubernetes-peer-set.js";
import { UnreadableRecords } from "./unreadable.js";
import { LeaseSetEmitter, WatchRegistry } from "./watch-emitter.js";

/**
 * The `kubernetes` datastore: the cluster's own API is the subnet manager.
 *
 * - A Node with spec.podCIDRs (kube-controller-manager --allocate-node-cidrs) uses them; no
 *   claim is needed and nothing expires. They are the authority: a twill.dev/subnets
 *   annotation beside them is ignored by every reader.
 * - Otherwise each subnet is claimed by creating a coordination.k8s.io/v1 Lease named after
 *   it in twill's namespace (deploy/twill.yaml: twill-system, where twill's token may write
 *   Leases and nothing else lives): creation is atomic, so a 409 means taken,
 *   unless the Lease is the node's own or lapsed, which an update guarded by resourceVersion
 *   takes over (kubernetes-leases.ts). The agent renews it (renewTime).
 * - What peers need (public IP, backend type and data, leased subnets) is published as Node
 *   annotations under twill.dev/; the NodeNetworkUnavailable condition is cleared.
 * - watch() keeps list+watch caches of Nodes and subnet Leases and hands out the full peer set,
 *   coalesced: a relist of thousands of Nodes is one callback, not one per Node (flannel#719).
 * - Upgrade: an older twilld kept its Leases in kube-system (legacyNamespace), where the new
 *   manifest grants read only. A node recreates its own old Leases in twill's namespace before
 *   claiming anything else; every other old Lease counts as taken while it exists, and the peer
 *   set honours live ones (legacyPlan, withLegacy). The old ones lapse; an operator deletes
 *   them with the label selector.
 */

export interface KubernetesStoreOptions {
  kubeConfig: KubeConfig;
  /** Where the subnet Leases live. */
  namespace: string;
  /**
   * Where an older twilld kept them (kube-system), read to carry each node's subnet over; none
   * when it is `namespace` itself. Unreadable (403, 404): nothing to carry over, said once.
   */
  legacyNamespace?: string;
  network?: NetworkConfig;
  leaseTTLMs: number;
  logger?: Logger;
  clock?: Clock;
  /** Deadline of one API call (default 30 s). */
  requestTimeoutMs?: number;
}

export class KubernetesStore implements SubnetStore {
  private readonly core: CoreV1Api;
  private readonly leases: SubnetLeases;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly ttlSeconds: number;
  private readonly watches = new WatchRegistry();
  private readonly damaged: UnreadableRecords;
  private readonly lastGood = new Map<string, NodeLease>();
  private readonly timeoutMs: number;

  constructor(private readonly opts: KubernetesStoreOptions) {
    this.timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.core = apiClient(opts.kubeConfig, CoreV1Api, this.timeoutMs);
    this.logger = opts.logger ?? nullLogger;
    this.clock = opts.clock ?? systemClock;
    this.ttlSeconds = Math.max(1, Math.ceil(opts.leaseTTLMs / 1000));
    this.damaged = new UnreadableRecords(this.logger);
    this.leases = new SubnetLeases({
      kubeConfig: opts.kubeConfig,
      namespace: opts.namespace,
      ...(opts.legacyNamespace !== undefined ? { legacyNamespace: opts.legacyNamespace } : {}),
      ttlSeconds: this.ttlSeconds,
      timeoutMs: this.timeoutMs,
      clock: this.clock,
      logger: this.logger,
    });
  }

  unreadable(): UnreadableRecord[] {
    return this.damaged.list();
  }

  /** The peer set from one view of Nodes and Leases (both namespaces'); notes what cannot be read. */
  private peerSet(nodes: NodeView[], leases: LeaseView[], legacy: LeaseView[], now: number): NodeLease[] {
    this.damaged.replace([
      ...unreadableObjects(nodes, leases, this.opts.namespace),
      ...unreadableObjects([], legacy, this.opts.legacyNamespace ?? ""),
    ]);
    return publishedLeases(nodes, withLegacy(leases, legacy), now, this.lastGood);
  }

  async acquire(req: AcquireRequest): Promise<NodeLease> {
    const pools = requirePools(this.opts.network);
    const node = await this.readNode(req.nodeName, "acquire a subnet");
    const name = node.name;
    const [leases, legacy] = await Promise.all([this.leases.list(), this.leases.listLegacy()]);
    const own = leases.filter((l) => l.managed && l.holder === name && l.subnet);

    let othersWithPodCIDRs = 0;
    let nodes: NodeView[] = [];
    if (node.podCIDRs.length === 0) {
      // resourceVersion 0: served from the apiserver's cache; a stale view only costs a lost race.
      nodes = (await this.call(`list nodes`, () => this.core.listNode({ resourceVersion: "0" }))).items.map(nodeView);
      othersWithPodCIDRs = nodes.filter((n) => n.name !== name && n.podCIDRs.length > 0).length;
    }
    const source = subnetSource(node, this.opts.network!, othersWithPodCIDRs);

    let subnets: string[];
    let acquiredAt: number | undefined;
    if (source.kind === "podCIDRs") {
      subnets = source.subnets;
      acquiredAt = node.createdAt;
      // Leases from before the controller allocated: the node no longer uses them.
      await Promise.allSettled(own.map((l) => this.leases.drop(l.subnet!, name)));
    } else {
      const acquireTimes = new Map<string, number>();
      const plan = legacyPlan(name, legacy, leases);
      const moving = new Map(plan.copy.map((l) => [l.subnet!, l]));
      subnets = await claimSubnets(pools, name, req.preferredSubnets ?? [], {
        // Its old Leases are its own too, tried before any free subnet; no other node takes them (plan.taken).
        own: [...own.map((l) => l.subnet!), ...moving.keys()],
        taken: [...takenByOthers(name, nodes, leases, this.clock.now()), ...plan.taken],
        claim: async (subnet) => {
          // A hinted subnet is claimed without a look at `taken`: in twill's namespace the
          // create's 409 guards it, but an old Lease is elsewhere and must be checked here.
          const wanted = parseCidr(subnet);
          if (plan.taken.some((c) => overlaps(c, wanted))) return false;
          const old = moving.get(subnet);
          const held = await this.leases.claim(subnet, node, old);
          if (held) acquireTimes.set(subnet, held.acquireTime ?? this.clock.now());
          if (held && old) {
            this.logger.info("Moved a subnet Lease to twill's namespace", { subnet, from: `${this.opts.legacyNamespace}/${old.name}`, to: this.opts.namespace });
          }
          return held !== null;
        },
        drop: (subnet) => this.leases.drop(subnet, name),
      });
      acquiredAt = Math.min(...subnets.map((s) => acquireTimes.get(s) ?? this.clock.now()));
    }

    await this.publish(node, nodeAnnotations(req.publicIP, req.backend, source.kind === "lease" ? subnets : null));
    await this.markNetworkAvailable(node);
    this.logger.info("Acquired lease", { node: name, subnets, source: source.kind });
    const lease: NodeLease = { nodeName: name, subnets, publicIP: req.publicIP, backend: req.backend };
    if (acquiredAt !== undefined) lease.acquiredAt = acquiredAt;
    if (source.kind === "lease") lease.expiresAt = this.clock.now() + this.ttlSeconds * 1000;
    return lease;
  }

  async renew(lease: NodeLease): Promise<NodeLease> {
    const name = lease.nodeName;
    let node: NodeView;
    try {
      node = nodeView(await this.core.readNode({ name }));
    } catch (err) {
      if (statusCode(err) === 404) throw new LeaseLostError(name, "its Node object is gone");
      throw new DatastoreError(`read node "${name}"`, describeApiError(err));
    }
    const fromPodCIDRs = node.podCIDRs.length > 0 && [...node.podCIDRs].sort().join() === [...lease.subnets].sort().join();
    if (!fromPodCIDRs && node.podCIDRs.length > 0) {
      // Peers now read the podCIDRs, whatever the node publishes: acquiring again adopts them.
      throw new LeaseLostError(name, `its Node has spec.podCIDRs ${node.podCIDRs.join(",")} now, which replace the leased ${lease.subnets.join(",")}`);
    }
    if (!fromPodCIDRs) {
      for (const subnet of lease.subnets) await this.leases.renew(subnet, node);
    }
    await this.publish(node, nodeAnnotations(lease.publicIP, lease.backend, fromPodCIDRs ? null : lease.subnets));
    const { expiresAt: _previous, ...rest } = lease;
    return fromPodCIDRs ? rest : { ...rest, expiresAt: this.clock.now() + this.ttlSeconds * 1000 };
  }

  async list(): Promise<NodeLease[]> {
    const [nodes, leases, legacy] = await Promise.all([
      this.call("list nodes", () => listInPages((limit, _continue) => this.core.listNode({ limit, _continue }))),
      this.leases.list(),
      this.leases.listLegacy(),
    ]);
    return this.peerSet(nodes.items.map(nodeView), leases, legacy, this.clock.now());
  }

  /**
   * Two self-restarting list+watch caches (Nodes, subnet Leases), and a third of the legacy
   * namespace's twill Leases while it holds any. Nothing is emitted until all have listed, so a
   * half-synced view never removes a peer; a Lease lapsing changes the set without an API
   * event, so a timer recomputes it then.
   */
  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void {
    const { kubeConfig, namespace, legacyNamespace } = this.opts;
    const emitter = new LeaseSetEmitter({
      clock: this.clock,
      onChange,
      onError,
      read: (now) => {
        if (!nodes.synced || !leases.synced || legacy === undefined || (legacy && !legacy.synced)) return undefined;
        const leaseViews = leases.list().map(cachedLeaseView);
        const legacyViews = legacy ? legacy.list().map(cachedLeaseView) : [];
        if (legacy && legacyViews.length === 0) {
          // The operator deleted the old Leases (none can be created again): the read Role may go too.
          legacy.stop();
          legacy = null;
        }
        return this.peerSet(nodes.list().map(cachedNodeView), leaseViews, legacyViews, now);
      },
    });
    const schedule = () => emitter.schedule();
    const nodes = new ResilientInformer<V1Node>({
      kubeConfig,
      path: "/api/v1/nodes",
      list: () => listInPages<V1Node>((limit, token) => listPage(kubeConfig, "/api/v1/nodes", { limit, continue: token }, this.timeoutMs)),
      fingerprint: (n) => nodeFingerprint(cachedNodeView(n)),
      onChange: schedule,
      onError,
      logger: this.logger,
    });
    const leases = this.leases.informer(namespace, schedule, onError);
    // Undefined until the legacy namespace was read once; null when it holds no twill Lease.
    let legacy: ResilientInformer<V1Lease> | null | undefined = this.leases.hasLegacy ? undefined : null;
    if (legacy === undefined) {
      void this.leases.legacyLeft(onError, () => !emitter.active).then((left) => {
        if (!emitter.active) return;
        // Nobody may create Leases there any more: none now means none ever.
        legacy = left ? this.leases.informer(legacyNamespace!, schedule, onError) : null;
        legacy?.start();
        schedule();
      });
    }
    nodes.start();
    leases.start();
    return this.watches.add(() => {
      emitter.stop();
      nodes.stop();
      leases.stop();
      legacy?.stop();
    });
  }

  /** Deletes the node's subnet Leases and takes its annotations off the Node (when it still exists). */
  async release(nodeName: string): Promise<void> {
    for (const l of await this.leases.list()) {
      if (l.managed && l.holder === nodeName && l.subnet) await this.leases.drop(l.subnet, nodeName);
    }
    try {
      await this.core.patchNode({ name: nodeName, body: { metadata: { annotations: clearedAnnotations() } } }, mergePatch);
    } catch (err) {
      if (statusCode(err) !== 404) throw new DatastoreError(`clear annotations of node "${nodeName}"`, describeApiError(err));
    }
    this.logger.info("Released lease", { node: nodeName });
  }

  async close(): Promise<void> {
    this.watches.stopAll();
  }

  private async call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new DatastoreError(op, describeApiError(err));
    }
  }

  private async readNode(name: string, why: string): Promise<NodeView> {
    try {
      return nodeView(await this.core.readNode({ name }));
    } catch (err) {
      const reason = statusCode(err) === 404 ? "no such Node: twilld runs on a node registered with the API" : describeApiError(err);
      throw new DatastoreError(`${why} for node "${name}"`, reason);
    }
  }

  /** Patches only the annotations that differ: every Node write is an event on every watcher. */
  private async publish(node: NodeView, wanted: Record<string, string | null>): Promise<void> {
    const changes = annotationChanges(node.annotations, wanted);
    if (Object.keys(changes).length === 0) return;
    await this.call(`annotate node "${node.name}"`, () =>
      this.core.patchNode({ name: node.name, body: { metadata: { annotations: changes } } }, mergePatch),
    );
  }

  /** Sets NetworkUnavailable=False (the status subresource), unless it already says so. */
  private async markNetworkAvailable(node: NodeView): Promise<void> {
    if (node.networkUnavailable?.status === "False") return;
    const now = new Date(Math.floor(this.clock.now() / 1000) * 1000);
    const condition = {
      type: NETWORK_UNAVAILABLE,
      status: "False",
      reason: NETWORK_UP_REASON,
      message: "twilld holds this node's pod subnet",
      lastTransitionTime: now,
      lastHeartbeatTime: now,
    };
    await this.call(`clear ${NETWORK_UNAVAILABLE} of node "${node.name}"`, () =>
      this.core.patchNodeStatus({ name: node.name, body: { status: { conditions: [condition] } } }, strategicMergePatch),
    );
  }
}
