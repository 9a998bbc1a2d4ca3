import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../../shared/log.js";
import type { Clock } from "../clock.js";
import { DatastoreError, LeaseLostError, errorMessage } from "../errors.js";
import { apiClient, statusCode } from "./kubernetes-api.js";
import { ResilientInformer, describeApiError, listInPages, listPage } from "./kubernetes-informer.js";
import {
  LEASE_SELECTOR, LEASE_SUBNET_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, claimDecision, leaseName, leaseView, type LeaseView,
} from "./kubernetes-lease-view.js";
import type { NodeView } from "./kubernetes-node-view.js";

/**
 * The subnet Leases of the `kubernetes` datastore through the API: listed (twill's namespace and
 * the legacy one), created, renewed, taken over and deleted, every write but a create guarded
 * by the resourceVersion it was decided on, so of two nodes racing for one Lease one wins and
 * the other learns it. A Lease is owned by its Node, so the garbage collector frees the subnet
 * when the Node is deleted for good (flannel#954).
 */

/** Lost races on one Lease (its resourceVersion changed under us) before giving the subnet up. */
const CLAIM_ATTEMPTS = 4;

export interface SubnetLeasesOptions {
  kubeConfig: KubeConfig;
  /** Where the subnet Leases live. */
  namespace: string;
  /** Where an older twilld kept them; none when it is `namespace` itself. */
  legacyNamespace?: string;
  ttlSeconds: number;
  timeoutMs: number;
  clock: Clock;
  logger: Logger;
}

export class SubnetLeases {
  private readonly api: CoordinationV1Api;
  private saidLegacyUnreadable = false;

  constructor(private readonly o: SubnetLeasesOptions) {
    this.api = apiClient(o.kubeConfig, CoordinationV1Api, o.timeoutMs);
  }

  /** Whether a legacy namespace is to be read at all. */
  get hasLegacy(): boolean {
    return this.o.legacyNamespace !== undefined && this.o.legacyNamespace !== this.o.namespace;
  }

  async list(): Promise<LeaseView[]> {
    const { namespace } = this.o;
    try {
      return await this.listIn(namespace);
    } catch (err) {
      throw new DatastoreError(`list Leases in namespace "${namespace}"`, describeApiError(err));
    }
  }

  /**
   * The twill Leases an older twilld left in the legacy namespace; none when there is no such
   * namespace or it may not be read (403: its read Role was removed after the upgrade, as the
   * manifest allows; said once, and the old Leases are not honoured while it lasts).
   */
  async listLegacy(): Promise<LeaseView[]> {
    const { legacyNamespace: namespace } = this.o;
    if (namespace === undefined || !this.hasLegacy) return [];
    try {
      return await this.listIn(namespace);
    } catch (err) {
      const code = statusCode(err);
      if (code !== 403 && code !== 404) throw new DatastoreError(`list Leases in namespace "${namespace}"`, describeApiError(err));
      if (!this.saidLegacyUnreadable) {
        this.o.logger.warn("Leases of an older twilld cannot be read; their subnets are not carried over", { namespace, error: describeApiError(err) });
      }
      this.saidLegacyUnreadable = true;
      return [];
    }
  }

  /** Whether the legacy namespace holds twill Leases; asked again, with backoff, until it answers. */
  async legacyLeft(onError: (err: Error) => void, stopped: () => boolean): Promise<boolean> {
    for (let delay = 250; !stopped(); delay = Math.min(delay * 2, 5_000)) {
      try {
        return (await this.listLegacy()).some((l) => l.managed);
      } catch (err) {
        onError(err instanceof Error ? err : new Error(errorMessage(err)));
        await sleep(delay);
      }
    }
    return false;
  }

  /** A self-restarting list+watch cache of the twill Leases in `namespace`. */
  informer(namespace: string, onChange: () => void, onError: (err: Error) => void): ResilientInformer<V1Lease> {
    const { kubeConfig, timeoutMs, logger } = this.o;
    const path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
    return new ResilientInformer<V1Lease>({
      kubeConfig,
      path,
      list: () => listInPages<V1Lease>((limit, token) => listPage(kubeConfig, path, { labelSelector: LEASE_SELECTOR, limit, continue: token }, timeoutMs)),
      labelSelector: LEASE_SELECTOR,
      onChange,
      onError,
      logger,
    });
  }

  /**
   * Creates, renews or takes over the subnet's Lease; null when another node holds it. `moved`:
   * the node's Lease of this subnet in the legacy namespace, whose claim time a new one keeps.
   */
  async claim(subnet: string, node: NodeView, moved?: LeaseView): Promise<LeaseView | null> {
    const { namespace } = this.o;
    const name = leaseName(subnet);
    const op = `claim subnet ${subnet} (Lease ${namespace}/${name})`;
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const now = this.o.clock.now();
      try {
        const body = this.body(subnet, node, moved?.acquireTime ?? now, moved?.transitions ?? 0);
        return leaseView(await this.api.createNamespacedLease({ namespace, body }));
      } catch (err) {
        if (statusCode(err) !== 409) throw new DatastoreError(op, describeApiError(err));
      }
      let current: LeaseView;
      try {
        current = leaseView(await this.api.readNamespacedLease({ name, namespace }));
      } catch (err) {
        if (statusCode(err) === 404) continue; // deleted in between: create again
        throw new DatastoreError(op, describeApiError(err));
      }
      const decision = claimDecision(current, node.name, now);
      if (decision === "taken") return null;
      const body =
        decision === "ours"
          ? this.body(subnet, node, current.acquireTime ?? now, current.transitions, current.resourceVersion)
          : this.body(subnet, node, now, current.transitions + 1, current.resourceVersion);
      try {
        const replaced = leaseView(await this.api.replaceNamespacedLease({ name, namespace, body }));
        if (decision === "take-over") this.o.logger.info("Took over a lapsed subnet Lease", { subnet, from: current.holder, node: node.name });
        return replaced;
      } catch (err) {
        const code = statusCode(err);
        if (code !== 409 && code !== 404) throw new DatastoreError(op, describeApiError(err));
      }
    }
    return null;
  }

  async renew(subnet: string, node: NodeView): Promise<void> {
    const { namespace } = this.o;
    const name = leaseName(subnet);
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      let current: LeaseView;
      try {
        current = leaseView(await this.api.readNamespacedLease({ name, namespace }));
      } catch (err) {
        if (statusCode(err) === 404) throw new LeaseLostError(node.name, `Lease ${namespace}/${name} of subnet ${subnet} is gone`);
        throw new DatastoreError(`renew Lease ${namespace}/${name}`, describeApiError(err));
      }
      if (!current.managed || current.holder !== node.name) {
        throw new LeaseLostError(node.name, `Lease ${namespace}/${name} of subnet ${subnet} is held by "${current.holder ?? ""}"`);
      }
      try {
        const body = this.body(subnet, node, current.acquireTime ?? this.o.clock.now(), current.transitions, current.resourceVersion);
        await this.api.replaceNamespacedLease({ name, namespace, body });
        return;
      } catch (err) {
        if (statusCode(err) !== 409) throw new DatastoreError(`renew Lease ${namespace}/${name}`, describeApiError(err));
      }
    }
    throw new DatastoreError(`renew Lease ${namespace}/${name}`, `it kept changing under us (${CLAIM_ATTEMPTS} attempts)`);
  }

  /** Deletes the subnet's Lease if it still names the node (guarded by its resourceVersion). */
  async drop(subnet: string, nodeName: string): Promise<void> {
    const { namespace } = this.o;
    const name = leaseName(subnet);
    try {
      const current = leaseView(await this.api.readNamespacedLease({ name, namespace }));
      if (!current.managed || current.holder !== nodeName) return;
      await this.api.deleteNamespacedLease({
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

  private async listIn(namespace: string): Promise<LeaseView[]> {
    const list = await listInPages((limit, _continue) => this.api.listNamespacedLease({ namespace, labelSelector: LEASE_SELECTOR, limit, _continue }));
    return list.items.map(leaseView);
  }

  private body(subnet: string, node: NodeView, acquireTime: number, transitions: number, resourceVersion?: string): V1Lease {
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        name: leaseName(subnet),
        namespace: this.o.namespace,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
        annotations: { [LEASE_SUBNET_ANNOTATION]: subnet },
        // No blockOwnerDeletion: that would need update on nodes/finalizers.
        ...(node.uid ? { ownerReferences: [{ apiVersion: "v1", kind: "Node", name: node.name, uid: node.uid }] } : {}),
        ...(resourceVersion ? { resourceVersion } : {}),
      },
      spec: {
        holderIdentity: node.name,
        leaseDurationSeconds: this.o.ttlSeconds,
        acquireTime: new V1MicroTime(acquireTime),
        renewTime: new V1MicroTime(this.o.clock.now()),
        leaseTransitions: transitions,
      },
    };
  }
}
