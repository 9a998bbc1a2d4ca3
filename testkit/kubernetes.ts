import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
} from "@kubernetes/client-node";
// client-node's own dependency. Its loadAllYaml turns documents into typed objects, which
// drops fields the client does not know: a misspelt field in the manifest would vanish unseen.
import { loadAll } from "js-yaml";
import type { Clock } from "../agent/clock.js";
import { LEASE_SELECTOR } from "../agent/datastore/kubernetes-lease-view.js";
import { KubernetesStore } from "../agent/datastore/kubernetes.js";
import type { AcquireRequest, NetworkConfig } from "../agent/types.js";
import { createLogger, type Logger } from "../shared/log.js";

/**
 * Test helpers for the kubernetes datastore against a real apiserver: kubeconfigs for a
 * token, the deploy manifest's objects, and admin actions that play the kubelet's part
 * (registering Nodes) or an operator's (deleting Nodes and Leases).
 */

export const MANIFEST = new URL("../deploy/twill.yaml", import.meta.url);

/** The manifest's documents exactly as written. */
export function manifestObjects(): KubernetesObject[] {
  return loadAll(readFileSync(MANIFEST, "utf8")).filter((o): o is KubernetesObject => o !== null && typeof o === "object");
}

export function kubeConfigFor(server: string, caFile: string, token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "test", server, caFile }],
    users: [{ name: "test", token }],
    contexts: [{ name: "test", cluster: "test", user: "test" }],
    currentContext: "test",
  });
  return kc;
}

/** The namespace of the subnet Leases the manifest gives twilld (TWILL_KUBE_NAMESPACE of the DaemonSet). */
export function manifestLeaseNamespace(): string {
  const ds = manifestObjects().find((o) => o.kind === "DaemonSet") as unknown as {
    spec: { template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } };
  };
  const value = ds.spec.template.spec.containers[0]?.env?.find((e) => e.name === "TWILL_KUBE_NAMESPACE")?.value;
  if (!value) throw new Error("deploy/twill.yaml: the DaemonSet sets no TWILL_KUBE_NAMESPACE");
  return value;
}

const RBAC_KINDS = new Set(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]);

/** Creates the manifest's namespace, ServiceAccount and RBAC objects for real (the agent's permissions). */
export async function applyManifestRbac(admin: KubeConfig): Promise<string[]> {
  const api = KubernetesObjectApi.makeApiClient(admin);
  const applied: string[] = [];
  for (const obj of manifestObjects()) {
    if (!RBAC_KINDS.has(obj.kind ?? "")) continue;
    await api.create(obj);
    applied.push(`${obj.kind}/${obj.metadata?.name}`);
  }
  return applied;
}

/**
 * The cluster admin of a test control plane, once the manifest's RBAC is applied: where every
 * test that runs the agent's token against a real apiserver starts.
 */
export async function adminWithManifestRbac(cp: { server: string; caFile: string; adminToken: string }): Promise<Admin> {
  const kc = kubeConfigFor(cp.server, cp.caFile, cp.adminToken);
  await applyManifestRbac(kc);
  return new Admin(kc);
}

const code = (err: unknown): number | undefined => (err as { code?: number } | null)?.code;

export class Admin {
  readonly core: CoreV1Api;
  readonly coordination: CoordinationV1Api;
  constructor(kc: KubeConfig, readonly namespace = manifestLeaseNamespace()) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.coordination = kc.makeApiClient(CoordinationV1Api);
  }

  /** Registers a Node as a kubelet would; an existing one is fine. */
  async ensureNode(name: string): Promise<void> {
    try {
      await this.core.createNode({ body: { metadata: { name } } });
    } catch (err) {
      if (code(err) !== 409) throw err;
    }
  }

  async deleteNode(name: string): Promise<void> {
    try {
      await this.core.deleteNode({ name });
    } catch (err) {
      if (code(err) !== 404) throw err;
    }
  }

  async twillLeases() {
    return (await this.coordination.listNamespacedLease({ namespace: this.namespace, labelSelector: LEASE_SELECTOR })).items;
  }

  async deleteLease(name: string): Promise<void> {
    try {
      await this.coordination.deleteNamespacedLease({ name, namespace: this.namespace });
    } catch (err) {
      if (code(err) !== 404) throw err;
    }
  }

  /** A fresh cluster for the next test: no Nodes, no subnet Leases. */
  async wipe(): Promise<void> {
    const nodes = (await this.core.listNode()).items;
    await Promise.all(nodes.map((n) => this.deleteNode(n.metadata!.name!)));
    const leases = await this.twillLeases();
    await Promise.all(leases.map((l) => this.deleteLease(l.metadata!.name!)));
    for (;;) {
      const left = (await this.core.listNode()).items.length + (await this.twillLeases()).length;
      if (left === 0) return;
      await sleep(100);
    }
  }
}

/**
 * A store as the agent runs it: the agent token, whose only permissions are the RBAC rules of
 * deploy/twill.yaml, and the manifest's Lease namespace. Before it acquires, its Node is
 * registered (the kubelet's job in a cluster).
 */
export function agentStore(
  kc: KubeConfig,
  admin: Admin,
  network: NetworkConfig,
  leaseTTLMs: number,
  o: { logger?: Logger; clock?: Clock } = {},
): KubernetesStore {
  const store = new KubernetesStore({
    kubeConfig: kc,
    namespace: manifestLeaseNamespace(),
    legacyNamespace: "kube-system",
    network,
    leaseTTLMs,
    logger: o.logger ?? createLogger(() => {}),
    ...(o.clock ? { clock: o.clock } : {}),
  });
  const acquire = store.acquire.bind(store);
  store.acquire = async (req: AcquireRequest) => {
    await admin.ensureNode(req.nodeName);
    return acquire(req);
  };
  return store;
}
