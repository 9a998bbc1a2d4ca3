import type { Registry } from "prom-client";
import type { NodeKernel } from "../../shared/kernel/node-kernel.js";
import type { Logger } from "../../shared/log.js";
import type { DatastoreKind } from "../datastore/index.js";
import { loadKubeConfig } from "../datastore/kubernetes-api.js";
import { policyReadyPath } from "../../shared/policy-ready.js";
import type { ReservationView } from "../ipam/store-view.js";
import type { DenyMode } from "./compile.js";
import { PolicyEngine } from "./engine.js";
import { watchReservations } from "./ipam-store-watch.js";
import { watchPolicyObjects } from "./kubernetes-watch.js";
import { createPolicyMetrics } from "./metrics.js";
import { withReservedAddresses } from "./new-pods.js";
import { policyReportPath, writePolicyReport } from "./report.js";
import type { PolicySnapshot } from "./types.js";

/**
 * NetworkPolicy enforcement beside the agent's subnet and datapath work, sharing nothing with
 * it but the node's namespace, the logger and the metrics registry. Only the kubernetes
 * datastore has an API to read policies from; with the others the agent says so, once.
 */

export interface NetworkPolicyOptions {
  enabled: boolean;
  datastore: DatastoreKind;
  kubeconfig?: string;
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
  registry: Registry;
  logger: Logger;
}

export interface RunningPolicy {
  stop(): Promise<void>;
}

export function startNetworkPolicy(o: NetworkPolicyOptions): RunningPolicy {
  const metrics = createPolicyMetrics(o.registry);
  const reportFile = policyReportPath(o.stateDir);
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
    writePolicyReport(reportFile, { enabled: false, reason, policies: [], drops: [] });
    return { stop: async () => {} };
  }
  const logger = o.logger.with({ component: "policy" });
  const engine = new PolicyEngine({
    nodeName: o.nodeName,
    ip: o.ip,
    bridge: o.bridge,
    ...(o.logDropsPerSecond ? { logDropsPerSecond: o.logDropsPerSecond } : {}),
    ...(o.deny ? { deny: o.deny } : {}),
    resyncMs: o.resyncMs,
    reportFile,
    readyFile: policyReadyPath(o.subnetFile),
    logger,
    metrics,
  });
  engine.start();
  // The API's view, joined with the IPAM store's for this node's new pods.
  let api: PolicySnapshot | null = null;
  let reserved: ReservationView[] = [];
  const update = (at: number) => {
    if (api) engine.update(withReservedAddresses(api, o.nodeName, reserved), at);
  };
  const stopReservations = watchReservations(o.ipamStore, (r) => {
    reserved = r;
    update(Date.now());
  }, logger);
  const stopWatch = watchPolicyObjects({
    kubeConfig: loadKubeConfig(o.kubeconfig),
    logger,
    onSnapshot: (s, at) => {
      api = s;
      update(at);
    },
    onError: (err) => logger.warn("NetworkPolicy watch failed; resuming", { error: err.message }),
  });
  return {
    stop: async () => {
      stopWatch();
      stopReservations();
      await engine.stop();
    },
  };
}
