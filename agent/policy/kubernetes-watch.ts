import { CoreV1Api, NetworkingV1Api, type KubeConfig, type V1Namespace, type V1NetworkPolicy, type V1Pod } from "@kubernetes/client-node";
import type { Logger } from "../../shared/log.js";
import { ResilientInformer } from "../datastore/kubernetes-informer.js";
import { apiClient } from "../datastore/kubernetes-api.js";
import { namespaceView, podView, policyView } from "./kubernetes-views.js";
import type { PodInfo, PolicySnapshot } from "./types.js";

/**
 * List+watch caches of NetworkPolicies, Pods and Namespaces (all namespaces; peers may be
 * anywhere), handed to the engine as one snapshot once all three are complete and after every
 * change, coalesced: a relist of thousands of pods is one snapshot. Pod updates that change
 * nothing enforcement reads (status conditions, restarts) are not changes.
 */

export interface PolicyWatchOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** `eventAt`: when the oldest change in this snapshot was seen. */
  onSnapshot: (snapshot: PolicySnapshot, eventAt: number) => void;
  onError: (err: Error) => void;
  requestTimeoutMs?: number;
}

const REQUEST_TIMEOUT_MS = 30_000;

export function watchPolicyObjects(o: PolicyWatchOptions): () => void {
  const timeout = o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const [policyOf, podOf, namespaceOf] = [viewedOnce(policyView), viewedOnce(podView), viewedOnce(namespaceView)];
  const core = apiClient(o.kubeConfig, CoreV1Api, timeout);
  const networking = apiClient(o.kubeConfig, NetworkingV1Api, timeout);
  let stopped = false;
  let pending: NodeJS.Immediate | undefined;
  let since: number | undefined;
  const schedule = () => {
    since ??= Date.now();
    if (!stopped && pending === undefined) pending = setImmediate(emit);
  };
  const common = { kubeConfig: o.kubeConfig, onChange: schedule, onError: o.onError, logger: o.logger };
  const policies = new ResilientInformer<V1NetworkPolicy>({
    ...common,
    path: "/apis/networking.k8s.io/v1/networkpolicies",
    list: () => networking.listNetworkPolicyForAllNamespaces(),
    fingerprint: (p) => JSON.stringify(policyOf(p)),
  });
  const pods = new ResilientInformer<V1Pod>({
    ...common,
    path: "/api/v1/pods",
    list: () => core.listPodForAllNamespaces(),
    fingerprint: (p) => JSON.stringify(podOf(p)),
  });
  const namespaces = new ResilientInformer<V1Namespace>({
    ...common,
    path: "/api/v1/namespaces",
    list: () => core.listNamespace(),
    fingerprint: (n) => JSON.stringify(namespaceOf(n)),
  });
  function emit(this: void) {
    pending = undefined;
    if (stopped || !policies.synced || !pods.synced || !namespaces.synced) return;
    const eventAt = since ?? Date.now();
    since = undefined;
    o.onSnapshot(
      {
        policies: policies.list().map(policyOf),
        pods: pods.list().map(podOf).filter((p): p is PodInfo => p !== null),
        namespaces: namespaces.list().map(namespaceOf),
      },
      eventAt,
    );
  }
  for (const i of [policies, pods, namespaces]) i.start();
  return () => {
    stopped = true;
    clearImmediate(pending);
    for (const i of [policies, pods, namespaces]) i.stop();
  };
}

/**
 * `view`, made once per API object: the caches replace an object that changes and keep the
 * one that does not, so an unchanged pod keeps its view, and the engine tells it unchanged at a
 * glance instead of comparing thousands of pods field by field on every event.
 */
function viewedOnce<T extends object, V>(view: (obj: T) => V): (obj: T) => V {
  const made = new WeakMap<T, V>();
  return (obj) => {
    if (made.has(obj)) return made.get(obj)!;
    const v = view(obj);
    made.set(obj, v);
    return v;
  };
}
