import type { Registry } from "prom-client";
import type { NodeKernel } from "../../shared/kernel/node-kernel.js";
import type { Logger } from "../../shared/log.js";
import type { DatastoreKind } from "../datastore/index.js";
import { policyReadyPath } from "../../shared/policy-ready.js";
import type { ReservationView } from "../ipam/store-view.js";
import type { DenyMode } from "./compile.js";
import { PolicyEngine } from "./engine.js";
import { watchReservations } from "./ipam-store-watch.js";
import { createPolicyMetrics, type PolicyMetrics } from "./metrics.js";
import { reservedAddressesKey, withReservedAddresses } from "./new-pods.js";
import { policyReportPath, writePolicyReport } from "./report.js";
import type { PodInfo, PolicySnapshot } from "./types.js";
import type { FlowView } from "../flows/collector.js";

/**
 * NetworkPolicy enforcement beside the agent's subnet and datapath work, sharing nothing with
 * it but the node's namespace, the logger and the metrics registry. Only the kubernetes
 * datastore has an API to read policies from; with the others the agent says so, once.
 */

/** Enforcement on this node's kernel, whatever feeds it the cluster's objects. */
export interface PolicyEnforcementOptions {
  nodeName: string;
  stateDir: string;
  /** twill-ipam's store of this node (new pods' addresses before the API has them). */
  ipamStore: string;
  /** The plugin's subnet file: the ready file the plugin waits on sits beside it. */
  subnetFile: string;
  bridge: string;
  logDropsPerSecond?: number;
  deny?: DenyMode;
  resyncMs: number;
  ip: Pick<NodeKernel, "nft" | "nftCounters" | "bridgeNetfilter">;
  logger: Logger;
  metrics: PolicyMetrics;
}

export interface NetworkPolicyOptions extends Omit<PolicyEnforcementOptions, "metrics"> {
  enabled: boolean;
  datastore: DatastoreKind;
  kubeconfig?: string;
  registry: Registry;
}

/**
 * Whole snapshots of the cluster's policies, pods and namespaces, each with when its change
 * was seen, until the returned stop is called: the Kubernetes watch in twilld, a synthetic
 * cluster in `scripts/bench cni --policies`.
 */
export type PolicySource = (onSnapshot: (snapshot: PolicySnapshot, at: number) => void) => () => void;

export interface RunningPolicy {
  /**
   * What flows are told by. With policy enforced: the API's pods and the table in force. Without
   * (another datastore, or turned off): this node's pods as the IPAM store names them, and no
   * policy.
   */
  flowView(): FlowView;
  stop(): Promise<void>;
}

/** Enforcement fed by the Kubernetes watch, whose modules are imported only when it runs (datastore/index.ts). */
export async function startNetworkPolicy(o: NetworkPolicyOptions): Promise<RunningPolicy> {
  const metrics = createPolicyMetrics(o.registry);
  const reason = !o.enabled
    ? "turned off (--network-policy=false)"
    : o.datastore !== "kubernetes"
      ? `the ${o.datastore} datastore has no API to read NetworkPolicies from; use --datastore kubernetes`
      : null;
  if (reason) {
    metrics.enabled.set(0);
    // Turned off by the operator: said, not warned about.
    if (o.enabled) o.logger.warn("NetworkPolicy is not enforced", { reason });
    else o.logger.info("NetworkPolicy is not enforced", { reason });
    writePolicyReport(policyReportPath(o.stateDir), { enabled: false, reason, policies: [], drops: [] });
    let view: FlowView = { snapshot: null, enforced: null };
    const stopReservations = watchReservations(o.ipamStore, (r) => {
      view = { snapshot: reservedPods(r, o.nodeName), enforced: null };
    }, o.logger);
    return { flowView: () => view, stop: async () => stopReservations() };
  }
  const logger = o.logger.with({ component: "policy" });
  const [{ loadKubeConfig }, { watchPolicyObjects }] = await Promise.all([import("../datastore/kubernetes-api.js"), import("./kubernetes-watch.js")]);
  const kubeConfig = loadKubeConfig(o.kubeconfig);
  return enforceNetworkPolicy({ ...o, logger, metrics }, (onSnapshot) =>
    watchPolicyObjects({
      kubeConfig,
      logger,
      onSnapshot,
      onError: (err) => logger.warn("NetworkPolicy watch failed; resuming", { error: err.message }),
    }),
  );
}

/** The policy engine on `source`'s snapshots, joined with the IPAM store's for this node's new pods. */
export function enforceNetworkPolicy(o: PolicyEnforcementOptions, source: PolicySource): RunningPolicy {
  const engine = new PolicyEngine({
    nodeName: o.nodeName,
    ip: o.ip,
    bridge: o.bridge,
    ...(o.logDropsPerSecond ? { logDropsPerSecond: o.logDropsPerSecond } : {}),
    ...(o.deny ? { deny: o.deny } : {}),
    resyncMs: o.resyncMs,
    reportFile: policyReportPath(o.stateDir),
    readyFile: policyReadyPath(o.subnetFile),
    logger: o.logger,
    metrics: o.metrics,
  });
  engine.start();
  let api: PolicySnapshot | null = null;
  let reserved: ReservationView[] = [];
  let reservedKey = reservedAddressesKey(reserved);
  const update = (at: number) => {
    if (api) engine.update(withReservedAddresses(api, o.nodeName, reserved), at);
  };
  const stopReservations = watchReservations(o.ipamStore, (r) => {
    // A store change the join does not read (an address whose index entry naming its pod is not
    // written yet) would be a round that changes nothing, and the ADD waiting on the next one
    // would wait for it too.
    const key = reservedAddressesKey(r);
    if (key === reservedKey) return;
    reserved = r;
    reservedKey = key;
    update(Date.now());
  }, o.logger);
  const stopSource = source((s, at) => {
    api = s;
    update(at);
  });
  return {
    flowView: () => engine.flowView(),
    stop: async () => {
      stopSource();
      stopReservations();
      await engine.stop();
    },
  };
}

/** This node's pods as the IPAM store names them, with no policies: who is who, for flows. Pure. */
export function reservedPods(reservations: readonly ReservationView[], nodeName: string): PolicySnapshot {
  const pods = new Map<string, PodInfo>();
  for (const r of reservations) {
    if (!r.pod) continue;
    const key = `${r.pod.namespace}/${r.pod.name}`;
    const p = pods.get(key) ?? { namespace: r.pod.namespace, name: r.pod.name, nodeName, labels: {}, ips: [], ports: [] };
    p.ips.push(r.ip);
    pods.set(key, p);
  }
  return { policies: [], pods: [...pods.values()], namespaces: [] };
}
