import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { apiClient } from "../datastore/kubernetes.js";
import { describeApiError } from "../datastore/kubernetes-informer.js";
import type { DatastoreKind } from "../datastore/index.js";
import { livePod, type LivePod, type PodsView, type RawPod } from "./leaks.js";

/**
 * The pods running on this node, as the leak decision needs them. One list call with a
 * fieldSelector per sweep (a node runs at most a few hundred pods), read from etcd rather than
 * the apiserver's cache so a pod created a moment ago is in it. A slow or failing API is
 * "unavailable", never an empty list: an empty list would make every address look leaked.
 */
export interface PodSource {
  view(): Promise<PodsView>;
}

/** Longest wait for the pod list; past it the sweep releases nothing. */
export const POD_LIST_TIMEOUT_MS = 10_000;

export function kubernetesPods(kc: KubeConfig, nodeName: string, timeoutMs = POD_LIST_TIMEOUT_MS): PodSource {
  const core = apiClient(kc, CoreV1Api, timeoutMs);
  return {
    async view() {
      try {
        const list = await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${nodeName}` });
        return { kind: "listed", pods: list.items.map((p) => livePod(p as RawPod)).filter((p): p is LivePod => p !== null) };
      } catch (err) {
        return { kind: "unavailable", reason: `list pods of node "${nodeName}": ${describeApiError(err)}` };
      }
    },
  };
}

/** etcd and local datastores: no pods to ask. */
export function noPods(kind: DatastoreKind): PodSource {
  const reason = `the ${kind} datastore has no pods: only reservations from before the last boot are released`;
  return { view: async () => ({ kind: "none", reason }) };
}
