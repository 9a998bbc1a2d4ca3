import { ApiException, CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { apiClient } from "../datastore/kubernetes-api.js";
import { describeApiError } from "../datastore/kubernetes-informer.js";
import { livePod, type LivePod, type RawPod } from "./leaks.js";
import { hostAddresses, nodeIdentityProblem, type RawNode } from "./node-identity.js";
import type { PodSource } from "./pod-source.js";

/** Longest wait for the pod list; past it the sweep releases nothing. */
export const POD_LIST_TIMEOUT_MS = 10_000;

export interface KubernetesPodsOptions {
  timeoutMs?: number;
  /** This host's addresses, which the Node must list one of (default: its interfaces'). */
  ownAddresses?: () => string[];
}

/**
 * The pods running on this node, from the API (the kubernetes datastore's PodSource). First
 * the Node of that name, which must be this host (node-identity.ts), on every view: a Node
 * deleted or renamed later stops the releases. Then one list call with a fieldSelector per
 * sweep (a node runs at most a few hundred pods), read from etcd rather than the apiserver's
 * cache so a pod created a moment ago is in it. A slow or failing API is "unavailable", never
 * an empty list: an empty list would make every address look leaked.
 */
export function kubernetesPods(kc: KubeConfig, nodeName: string, o: KubernetesPodsOptions = {}): PodSource {
  const core = apiClient(kc, CoreV1Api, o.timeoutMs ?? POD_LIST_TIMEOUT_MS);
  const ownAddresses = o.ownAddresses ?? hostAddresses;
  return {
    async view() {
      let node: RawNode | null;
      try {
        node = (await core.readNode({ name: nodeName })) as RawNode;
      } catch (err) {
        if (!(err instanceof ApiException && err.code === 404)) return { kind: "unavailable", reason: `read Node "${nodeName}": ${describeApiError(err)}` };
        node = null;
      }
      const problem = nodeIdentityProblem(nodeName, node, ownAddresses());
      if (problem) return { kind: "unverified", reason: problem };
      try {
        const list = await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${nodeName}` });
        return { kind: "listed", pods: list.items.map((p) => livePod(p as RawPod)).filter((p): p is LivePod => p !== null) };
      } catch (err) {
        return { kind: "unavailable", reason: `list pods of node "${nodeName}": ${describeApiError(err)}` };
      }
    },
  };
}
