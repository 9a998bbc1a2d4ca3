import type { Logger } from "../../shared/log.js";
import type { NetworkConfig, SubnetStore } from "../types.js";
import { EtcdStore } from "./etcd.js";
import type { EtcdTlsFiles } from "./etcd-client.js";
import { LEGACY_LEASE_NAMESPACE } from "./kubernetes-lease-view.js";
import { LocalStore } from "./local.js";

/** Where node subnets are claimed; one case per datastore. */
export type DatastoreKind = "local" | "etcd" | "kubernetes";
export const DATASTORE_KINDS: readonly DatastoreKind[] = ["local", "etcd", "kubernetes"];

export interface DatastoreOptions {
  kind: DatastoreKind;
  /** Needed to acquire; `twilld status` only reads and may leave it out. */
  network?: NetworkConfig;
  leaseTTLMs: number;
  logger: Logger;
  local: { dir: string; rescanMs?: number };
  etcd: { endpoints: string[]; prefix: string; tls?: EtcdTlsFiles };
  /**
   * Default: KUBECONFIG, ~/.kube/config or the in-cluster service account; Leases in kube-system.
   * In any other namespace (deploy/twill.yaml: twill-system), the Leases an older twilld left in
   * kube-system are carried over.
   */
  kubernetes?: { kubeconfig?: string; namespace?: string };
}

/**
 * The datastore. The kubernetes one is imported only when chosen: @kubernetes/client-node is
 * most of the agent's code, and evaluating it would cost a node on another datastore memory
 * and start-up for nothing (plugins/bundle.test.ts keeps it out of twilld's static imports).
 */
export async function createStore(opts: DatastoreOptions): Promise<SubnetStore> {
  const common = { leaseTTLMs: opts.leaseTTLMs, logger: opts.logger, ...(opts.network ? { network: opts.network } : {}) };
  switch (opts.kind) {
    case "local":
      return new LocalStore({ ...common, ...opts.local });
    case "etcd":
      return new EtcdStore({ ...common, ...opts.etcd });
    case "kubernetes": {
      const [{ KubernetesStore }, { loadKubeConfig }] = await Promise.all([import("./kubernetes.js"), import("./kubernetes-api.js")]);
      return new KubernetesStore({
        ...common,
        kubeConfig: loadKubeConfig(opts.kubernetes?.kubeconfig),
        namespace: opts.kubernetes?.namespace ?? LEGACY_LEASE_NAMESPACE,
        legacyNamespace: LEGACY_LEASE_NAMESPACE,
      });
    }
  }
}
