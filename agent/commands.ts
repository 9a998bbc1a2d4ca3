import { datapathReportPath } from "./datapath-report.js";
import { once } from "node:events";
import type { Server } from "node:http";
import { IpRoute } from "../shared/kernel/iproute.js";
import type { Level, Logger } from "../shared/log.js";
import { Agent } from "./agent.js";
import { createBackend } from "./backend/index.js";
import { readNetworkConfig } from "./config.js";
import { createStore, type DatastoreKind } from "./datastore/index.js";
import { startHttpServer } from "./http.js";
import { checkNodeName } from "./leases.js";
import { createMetrics } from "./metrics.js";
import { startNetworkPolicy } from "./policy/index.js";
import { policyReportPath } from "./policy/report.js";
import { gatherStatus, renderStatus } from "./status.js";

/** What `twilld run` and `twilld status` are given, flags and TWILL_* variables resolved. */
export interface CommonOptions {
  nodeName: string;
  stateDir: string;
  datastore: DatastoreKind;
  storeDir: string;
  etcdEndpoints: string[];
  etcdPrefix: string;
  kubeconfig?: string;
  kubeNamespace: string;
  subnetFile: string;
  leaseTTLMs: number;
  logLevel: Level;
}

export interface RunOptions extends CommonOptions {
  netConf: string;
  iface?: string;
  publicIP?: string;
  metricsAddr: string;
  resyncMs: number;
  /** Enforce NetworkPolicy (kubernetes datastore only). */
  networkPolicy: boolean;
  /** The pod bridge, whose same-node traffic policy must see. */
  bridge: string;
  /** Log dropped packets at most this often per pod and direction; 0: never. */
  policyLogDropsPerSecond: number;
}

/** Longest pause between renewals, whatever the TTL: renewals also republish changed data. */
const MAX_RENEW_MS = 60_000;

const storeOptions = (o: CommonOptions, logger: Logger) => ({
  kind: o.datastore,
  leaseTTLMs: o.leaseTTLMs,
  logger,
  local: { dir: o.storeDir },
  etcd: { endpoints: o.etcdEndpoints, prefix: o.etcdPrefix },
  kubernetes: { ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}), namespace: o.kubeNamespace },
});

/** `twilld run`: the agent until SIGTERM/SIGINT. Config errors throw before anything is written. */
export async function runAgent(o: RunOptions, logger: Logger): Promise<void> {
  const nodeName = checkNodeName(o.nodeName);
  const network = readNetworkConfig(o.netConf);
  const log = logger.with({ node: nodeName });
  const metrics = createMetrics();
  const store = createStore({ ...storeOptions(o, log), network });
  const ip = new IpRoute(null);
  const agent = new Agent({
    nodeName,
    network,
    store,
    ip,
    backend: () => createBackend(network, { ip, logger: log }),
    underlay: { ...(o.iface ? { iface: o.iface } : {}), ...(o.publicIP ? { publicIP: o.publicIP } : {}) },
    subnetFile: o.subnetFile,
    datapathReportFile: datapathReportPath(o.stateDir),
    resyncMs: o.resyncMs,
    renewMs: Math.max(1_000, Math.min(Math.floor(o.leaseTTLMs / 3), MAX_RENEW_MS)),
    logger: log,
    metrics,
  });
  const policy = startNetworkPolicy({
    enabled: o.networkPolicy,
    datastore: o.datastore,
    ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
    nodeName,
    stateDir: o.stateDir,
    bridge: o.bridge,
    logDropsPerSecond: o.policyLogDropsPerSecond,
    resyncMs: o.resyncMs,
    ip,
    registry: metrics.registry,
    logger: log,
  });
  let server: Server | null = null;
  if (o.metricsAddr) {
    server = await startHttpServer(o.metricsAddr, metrics.registry, () => agent.readiness());
    log.info("Serving health and metrics", { address: o.metricsAddr });
  }
  const signal = Promise.race([once(process, "SIGTERM"), once(process, "SIGINT")]);
  log.info("Starting", { datastore: o.datastore, clusterCIDRs: network.clusterCIDRs, backend: network.backend.type });
  try {
    await Promise.race([agent.start(), signal]);
    await signal;
    log.info("Stopping; the datapath and the subnet file stay in place");
  } finally {
    await Promise.all([agent.stop(), policy.stop()]);
    server?.close();
  }
}

/** `twilld status`: this node's lease and subnet file, and the peers, from the datastore. */
export async function printStatus(o: CommonOptions & { output: "table" | "json" }, logger: Logger, write: (s: string) => void): Promise<boolean> {
  const store = createStore(storeOptions(o, logger));
  try {
    const report = await gatherStatus(store, o.nodeName, o.subnetFile, datapathReportPath(o.stateDir), policyReportPath(o.stateDir));
    write(o.output === "json" ? JSON.stringify(report, null, 2) + "\n" : renderStatus(report, Date.now()));
    return report.lease !== null && report.datastoreError === undefined;
  } finally {
    await store.close();
  }
}
