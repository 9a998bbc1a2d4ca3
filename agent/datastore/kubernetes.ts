import { setTimeout as sleep } from "node:timers/promises";
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  ServerConfiguration,
  V1MicroTime,
  createConfiguration,
  setHeaderOptions,
  type V1Lease,
  type V1Node,
} from "@kubernetes/client-node";
import { nullLogger, type Logger } from "../../shared/log.js";
import { overlaps, parseCidr } from "../../shared/net/cidr.js";
import { DatastoreError, LeaseLostError, errorMessage } from "../errors.js";
import { leaseSetFilter } from "../leases.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore, UnreadableRecord } from "../types.js";
import { claimSubnets, requirePools } from "./claim.js";
import { ResilientInformer, describeApiError, listInPages, listPage } from "./kubernetes-informer.js";
import { UnreadableRecords } from "./unreadable.js";
import {
  LEASE_SELECTOR,
  LEASE_SUBNET_ANNOTATION,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  NETWORK_UNAVAILABLE,
  NETWORK_UP_REASON,
  annotationChanges,
  cachedLeaseView,
  cachedNodeView,
  claimDecision,
  clearedAnnotations,
  leaseName,
  leaseView,
  legacyPlan,
  nextExpiry,
  nodeAnnotations,
  nodeFingerprint,
  nodeView,
  publishedLeases,
  subnetSource,
  takenByOthers,
  unreadableObjects,
  withLegacy,
  type LeaseView,
  type NodeView,
} from "./kubernetes-objects.js";

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
 *   takes over. The agent renews it (renewTime). A Lease is owned by its Node, so the garbage
 *   collector frees the subnet when the Node is deleted for good (flannel#954).
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
  now?: () => number;
  /** Deadline of one API call (default 30 s). */
  requestTimeoutMs?: number;
}

/**
 * Longest wait for one API call. The client sets no deadline, so an apiserver that stops
 * answering without closing the connection would stall renewals until the lease lapsed.
 */
const REQUEST_TIMEOUT_MS = 30_000;

/** API clients like KubeConfig.makeApiClient's, with a deadline on every request. */
export function apiClient<T>(kc: KubeConfig, api: new (config: ReturnType<typeof createConfiguration>) => T, timeoutMs: number): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new DatastoreError("use the kubeconfig", "it has no current cluster");
  return new api(
    createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: kc },
      promiseMiddleware: [
        {
          pre: async (ctx) => {
            ctx.setSignal(AbortSignal.timeout(timeoutMs));
            return ctx;
          },
          post: async (res) => res,
        },
      ],
    }),
  );
}

/** Loads a kubeconfig file, or else KUBECONFIG / ~/.kube/config / the in-cluster service account. */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const strategicMergePatch = setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch);
/** Lost races on one Lease (its resourceVersion changed under us) before giving the subnet up. */
const CLAIM_ATTEMPTS = 4;

/** The HTTP status of an API error; undefined for a network failure or a timeout. */
const statusCode = (err: unknown): number | undefined => (err instanceof ApiException ? err.code : undefined);

export class KubernetesStore implements SubnetStore {
  private readonly core: CoreV1Api;
  private readonly coordination: CoordinationV1Api;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly ttlSeconds: number;
  private readonly stops = new Set<() => void>();
  private readonly damaged: UnreadableRecords;
  private readonly lastGood = new Map<string, NodeLease>();
  private readonly timeoutMs: number;
  private saidLegacyUnreadable = false;

  constructor(private readonly opts: KubernetesStoreOptions) {
    this.timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.core = apiClient(opts.kubeConfig, CoreV1Api, this.timeoutMs);
    this.coordination = apiClient(opts.kubeConfig, CoordinationV1Api, this.timeoutMs);
    this.logger = opts.logger ?? nullLogger;
    this.now = opts.now ?? Date.now;
    this.ttlSeconds = Math.max(1, Math.ceil(opts.leaseTTLMs / 1000));
    this.damaged = new UnreadableRecords(this.logger);
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
    const [leases, legacy] = await Promise.all([this.listLeases(), this.listLegacyLeases()]);
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
      await Promise.allSettled(own.map((l) => this.dropLease(l.subnet!, name)));
    } else {
      const acquireTimes = new Map<string, number>();
      const plan = legacyPlan(name, legacy, leases);
      const moving = new Map(plan.copy.map((l) => [l.subnet!, l]));
      subnets = await claimSubnets(pools, name, req.preferredSubnets ?? [], {
        // Its old Leases are its own too, tried before any free subnet; no other node takes them (plan.taken).
        own: [...own.map((l) => l.subnet!), ...moving.keys()],
        taken: [...takenByOthers(name, nodes, leases, this.now()), ...plan.taken],
        claim: async (subnet) => {
          // A hinted subnet is claimed without a look at `taken`: in twill's namespace the
          // create's 409 guards it, but an old Lease is elsewhere and must be checked here.
          const wanted = parseCidr(subnet);
          if (plan.taken.some((c) => overlaps(c, wanted))) return false;
          const old = moving.get(subnet);
          const held = await this.claimLease(subnet, node, old);
          if (held) acquireTimes.set(subnet, held.acquireTime ?? this.now());
          if (held && old) {
            this.logger.info("Moved a subnet Lease to twill's namespace", { subnet, from: `${this.opts.legacyNamespace}/${old.name}`, to: this.opts.namespace });
          }
          return held !== null;
        },
        drop: (subnet) => this.dropLease(subnet, name),
      });
      acquiredAt = Math.min(...subnets.map((s) => acquireTimes.get(s) ?? this.now()));
    }

    await this.publish(node, nodeAnnotations(req.publicIP, req.backend, source.kind === "lease" ? subnets : null));
    await this.markNetworkAvailable(node);
    this.logger.info("Acquired lease", { node: name, subnets, source: source.kind });
    const lease: NodeLease = { nodeName: name, subnets, publicIP: req.publicIP, backend: req.backend };
    if (acquiredAt !== undefined) lease.acquiredAt = acquiredAt;
    if (source.kind === "lease") lease.expiresAt = this.now() + this.ttlSeconds * 1000;
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
      for (const subnet of lease.subnets) await this.renewLease(subnet, node);
    }
    await this.publish(node, nodeAnnotations(lease.publicIP, lease.backend, fromPodCIDRs ? null : lease.subnets));
    const { expiresAt: _previous, ...rest } = lease;
    return fromPodCIDRs ? rest : { ...rest, expiresAt: this.now() + this.ttlSeconds * 1000 };
  }

  async list(): Promise<NodeLease[]> {
    const [nodes, leases, legacy] = await Promise.all([
      this.call("list nodes", () => listInPages((limit, _continue) => this.core.listNode({ limit, _continue }))),
      this.listLeases(),
      this.listLegacyLeases(),
    ]);
    return this.peerSet(nodes.items.map(nodeView), leases, legacy, this.now());
  }

  /**
   * Two self-restarting list+watch caches (Nodes, subnet Leases), and a third of the legacy
   * namespace's twill Leases while it holds any. Nothing is emitted until all have listed, so a
   * half-synced view never removes a peer; a Lease lapsing changes the set without an API
   * event, so a timer recomputes it then.
   */
  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void {
    const { kubeConfig, namespace } = this.opts;
    let stopped = false;
    let pending: NodeJS.Immediate | undefined;
    let expiryTimer: NodeJS.Timeout | undefined;
    const changed = leaseSetFilter();
    const clock = this.now;
    const peerSet = this.peerSet.bind(this);
    const schedule = () => {
      if (!stopped && pending === undefined) pending = setImmediate(emit);
    };
    const nodes = new ResilientInformer<V1Node>({
      kubeConfig,
      path: "/api/v1/nodes",
      list: () => listInPages<V1Node>((limit, token) => listPage(kubeConfig, "/api/v1/nodes", { limit, continue: token }, this.timeoutMs)),
      fingerprint: (n) => nodeFingerprint(cachedNodeView(n)),
      onChange: schedule,
      onError,
      logger: this.logger,
    });
    const leases = this.leaseInformer(namespace, schedule, onError);
    // Undefined until the legacy namespace was read once; null when it holds no twill Lease.
    const { legacyNamespace } = this.opts;
    let legacy: ResilientInformer<V1Lease> | null | undefined = legacyNamespace === undefined || legacyNamespace === namespace ? null : undefined;
    if (legacy === undefined) {
      void this.legacyLeasesLeft(onError, () => stopped).then((left) => {
        if (stopped) return;
        // Nobody may create Leases there any more: none now means none ever.
        legacy = left ? this.leaseInformer(legacyNamespace!, schedule, onError) : null;
        legacy?.start();
        schedule();
      });
    }
    function emit(this: void) {
      pending = undefined;
      if (stopped || !nodes.synced || !leases.synced || legacy === undefined || (legacy && !legacy.synced)) return;
      const now = clock();
      const leaseViews = leases.list().map(cachedLeaseView);
      const legacyViews = legacy ? legacy.list().map(cachedLeaseView) : [];
      if (legacy && legacyViews.length === 0) {
        // The operator deleted the old Leases (none can be created again): the read Role may go too.
        legacy.stop();
        legacy = null;
      }
      const set = peerSet(nodes.list().map(cachedNodeView), leaseViews, legacyViews, now);
      clearTimeout(expiryTimer);
      const next = nextExpiry([...leaseViews, ...legacyViews], now);
      if (next !== undefined) expiryTimer = setTimeout(schedule, Math.max(0, next - now) + 1);
      if (changed(set)) onChange(set);
    }
    nodes.start();
    leases.start();
    const stop = () => {
      stopped = true;
      if (pending !== undefined) clearImmediate(pending);
      clearTimeout(expiryTimer);
      nodes.stop();
      leases.stop();
      legacy?.stop();
      this.stops.delete(stop);
    };
    this.stops.add(stop);
    return stop;
  }

  private leaseInformer(namespace: string, onChange: () => void, onError: (err: Error) => void): ResilientInformer<V1Lease> {
    const { kubeConfig } = this.opts;
    const path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
    return new ResilientInformer<V1Lease>({
      kubeConfig,
      path,
      list: () => listInPages<V1Lease>((limit, token) => listPage(kubeConfig, path, { labelSelector: LEASE_SELECTOR, limit, continue: token }, this.timeoutMs)),
      labelSelector: LEASE_SELECTOR,
      onChange,
      onError,
      logger: this.logger,
    });
  }

  /** Whether the legacy namespace holds twill Leases; asked again, with backoff, until it answers. */
  private async legacyLeasesLeft(onError: (err: Error) => void, stopped: () => boolean): Promise<boolean> {
    for (let delay = 250; !stopped(); delay = Math.min(delay * 2, 5_000)) {
      try {
        return (await this.listLegacyLeases()).some((l) => l.managed);
      } catch (err) {
        onError(err instanceof Error ? err : new Error(errorMessage(err)));
        await sleep(delay);
      }
    }
    return false;
  }

  /** Deletes the node's subnet Leases and takes its annotations off the Node (when it still exists). */
  async release(nodeName: string): Promise<void> {
    const leases = await this.listLeases();
    for (const l of leases) {
      if (l.managed && l.holder === nodeName && l.subnet) await this.dropLease(l.subnet, nodeName);
    }
    try {
      await this.core.patchNode({ name: nodeName, body: { metadata: { annotations: clearedAnnotations() } } }, mergePatch);
    } catch (err) {
      if (statusCode(err) !== 404) throw new DatastoreError(`clear annotations of node "${nodeName}"`, describeApiError(err));
    }
    this.logger.info("Released lease", { node: nodeName });
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop();
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

  private async leasesIn(namespace: string): Promise<LeaseView[]> {
    const list = await listInPages((limit, _continue) => this.coordination.listNamespacedLease({ namespace, labelSelector: LEASE_SELECTOR, limit, _continue }));
    return list.items.map(leaseView);
  }

  private listLeases(): Promise<LeaseView[]> {
    const { namespace } = this.opts;
    return this.call(`list Leases in namespace "${namespace}"`, () => this.leasesIn(namespace));
  }

  /**
   * The twill Leases an older twilld left in the legacy namespace; none when there is no such
   * namespace or it may not be read (403: its read Role was removed after the upgrade, as the
   * manifest allows; said once, and the old Leases are not honoured while it lasts).
   */
  private async listLegacyLeases(): Promise<LeaseView[]> {
    const { legacyNamespace: namespace } = this.opts;
    if (namespace === undefined || namespace === this.opts.namespace) return [];
    try {
      return await this.leasesIn(namespace);
    } catch (err) {
      const code = statusCode(err);
      if (code !== 403 && code !== 404) throw new DatastoreError(`list Leases in namespace "${namespace}"`, describeApiError(err));
      if (!this.saidLegacyUnreadable) {
        this.logger.warn("Leases of an older twilld cannot be read; their subnets are not carried over", { namespace, error: describeApiError(err) });
      }
      this.saidLegacyUnreadable = true;
      return [];
    }
  }

  private leaseBody(subnet: string, node: NodeView, acquireTime: number, transitions: number, resourceVersion?: string): V1Lease {
    const now = this.now();
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        name: leaseName(subnet),
        namespace: this.opts.namespace,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
        annotations: { [LEASE_SUBNET_ANNOTATION]: subnet },
        // No blockOwnerDeletion: that would need update on nodes/finalizers.
        ...(node.uid ? { ownerReferences: [{ apiVersion: "v1", kind: "Node", name: node.name, uid: node.uid }] } : {}),
        ...(resourceVersion ? { resourceVersion } : {}),
      },
      spec: {
        holderIdentity: node.name,
        leaseDurationSeconds: this.ttlSeconds,
        acquireTime: new V1MicroTime(acquireTime),
        renewTime: new V1MicroTime(now),
        leaseTransitions: transitions,
      },
    };
  }

  /**
   * Creates, renews or takes over the subnet's Lease; null when another node holds it. `moved`:
   * the node's Lease of this subnet in the legacy namespace, whose claim time a new one keeps.
   */
  private async claimLease(subnet: string, node: NodeView, moved?: LeaseView): Promise<LeaseView | null> {
    const { namespace } = this.opts;
    const name = leaseName(subnet);
    const op = `claim subnet ${subnet} (Lease ${namespace}/${name})`;
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const now = this.now();
      try {
        const body = this.leaseBody(subnet, node, moved?.acquireTime ?? now, moved?.transitions ?? 0);
        return leaseView(await this.coordination.createNamespacedLease({ namespace, body }));
      } catch (err) {
        if (statusCode(err) !== 409) throw new DatastoreError(op, describeApiError(err));
      }
      let current: LeaseView;
      try {
        current = leaseView(await this.coordination.readNamespacedLease({ name, namespace }));
      } catch (err) {
        if (statusCode(err) === 404) continue; // deleted in between: create again
        throw new DatastoreError(op, describeApiError(err));
      }
      const decision = claimDecision(current, node.name, now);
      if (decision === "taken") return null;
      const body =
        decision === "ours"
          ? this.leaseBody(subnet, node, current.acquireTime ?? now, current.transitions, current.resourceVersion)
          : this.leaseBody(subnet, node, now, current.transitions + 1, current.resourceVersion);
      try {
        const replaced = leaseView(await this.coordination.replaceNamespacedLease({ name, namespace, body }));
        if (decision === "take-over") this.logger.info("Took over a lapsed subnet Lease", { subnet, from: current.holder, node: node.name });
        return replaced;
      } catch (err) {
        const code = statusCode(err);
        if (code !== 409 && code !== 404) throw new DatastoreError(op, describeApiError(err));
      }
    }
    return null;
  }

  private async renewLease(subnet: string, node: NodeView): Promise<void> {
    const { namespace } = this.opts;
    const name = leaseName(subnet);
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      let current: LeaseView;
      try {
        current = leaseView(await this.coordination.readNamespacedLease({ name, namespace }));
      } catch (err) {
        if (statusCode(err) === 404) throw new LeaseLostError(node.name, `Lease ${namespace}/${name} of subnet ${subnet} is gone`);
        throw new DatastoreError(`renew Lease ${namespace}/${name}`, describeApiError(err));
      }
      if (!current.managed || current.holder !== node.name) {
        throw new LeaseLostError(node.name, `Lease ${namespace}/${name} of subnet ${subnet} is held by "${current.holder ?? ""}"`);
      }
      try {
        const body = this.leaseBody(subnet, node, current.acquireTime ?? this.now(), current.transitions, current.resourceVersion);
        await this.coordination.replaceNamespacedLease({ name, namespace, body });
        return;
      } catch (err) {
        if (statusCode(err) !== 409) throw new DatastoreError(`renew Lease ${namespace}/${name}`, describeApiError(err));
      }
    }
    throw new DatastoreError(`renew Lease ${namespace}/${name}`, `it kept changing under us (${CLAIM_ATTEMPTS} attempts)`);
  }

  /** Deletes the subnet's Lease if it still names the node (guarded by its resourceVersion). */
  private async dropLease(subnet: string, nodeName: string): Promise<void> {
    const { namespace } = this.opts;
    const name = leaseName(subnet);
    try {
      const current = leaseView(await this.coordination.readNamespacedLease({ name, namespace }));
      if (!current.managed || current.holder !== nodeName) return;
      await this.coordination.deleteNamespacedLease({
        name,
        namespace,
        body: { preconditions: current.resourceVersion ? { resourceVersion: current.resourceVersion } : {} },
      });
    } catch (err) {
      const code = statusCode(err);
      if (code === 404 || code === 409) return;
      throw new DatastoreError(`delete Lease ${namespace}/${name}`, describeApiError(err));
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
    const now = new Date(Math.floor(this.now() / 1000) * 1000);
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
