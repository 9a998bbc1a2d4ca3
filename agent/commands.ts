import { datapathReportPath } from "./datapath-report.js";
import { once } from "node:events";
import type { Server } from "node:http";
import { dirname } from "node:path";
import { removeOldTemporaries } from "../shared/fs.js";
import { nodeKernel } from "../shared/kernel/netlink/node.js";
import type { Level, Logger } from "../shared/log.js";
import { Agent } from "./agent.js";
import { createBackend } from "./backend/index.js";
import { readNetworkConfig } from "./config.js";
import { ConfigError, errorMessage } from "./errors.js";
import { createStore, type DatastoreKind } from "./datastore/index.js";
import type { EtcdTlsFiles } from "./datastore/etcd-client.js";
import {
  checkReservations, listReservations, releaseAddress, releaseLeaked, renderCheck, renderRelease, renderReservations,
  type IpamCliOptions, type Output,
} from "./ipam/cli.js";
import { noPods, type PodSource } from "./ipam/pod-source.js";
import { LeakRecovery } from "./ipam/recovery.js";
import { leakReportPath } from "./ipam/report.js";
import { vethProbe } from "./ipam/sandbox.js";
import { gatherNodes, renderNodes } from "./nodes.js";
import { startHttpServer } from "./http.js";
import { checkNodeName } from "./leases.js";
import { createMetrics } from "./metrics.js";
import type { DenyMode } from "./policy/compile.js";
import { startFlows } from "./flows/index.js";
import { startNetworkPolicy } from "./policy/index.js";
import { policyReportPath } from "./policy/report.js";
import { gatherStatus, renderStatus } from "./status.js";
import { bgpReportPath } from "./backend/bgp/bgp-report.js";
import { wireguardReportPath } from "./backend/wireguard/wireguard-report.js";
import { WG_DEVICE } from "./backend/wireguard/wireguard-go.js";
import type { BgpRouterConfig } from "./types.js";
import { readBgpNodeSettings } from "./bgp-node.js";
import { shutdownBird } from "./backend/bgp/bird-supervisor.js";
import { renderUninstall, uninstallNode } from "./uninstall.js";

/** What every twilld command is given, flags and TWILL_* variables resolved. */
export interface CommonOptions {
  nodeName: string;
  stateDir: string;
  datastore: DatastoreKind;
  storeDir: string;
  etcdEndpoints: string[];
  etcdPrefix: string;
  /** For https:// etcd endpoints: --etcd-cafile, --etcd-certfile, --etcd-keyfile. */
  etcdTls?: EtcdTlsFiles;
  kubeconfig?: string;
  kubeNamespace: string;
  subnetFile: string;
  leaseTTLMs: number;
  logLevel: Level;
  /**
   * twill-ipam's store of the CNI network: <dataDir>/<network name>. The one IPAM path: pods left
   * on a subnet the node lost are looked for in it and in the other stores of its data dir.
   */
  ipamStore: string;
  /** How long a reservation must look leaked before it is released. */
  leakGraceMs: number;
  /** bgp backend: BIRD's files, kept across twilld restarts. */
  bgpDir: string;
  /** wireguard backend: wireguard-go's socket directory, bound over /run/wireguard (nodes sharing a filesystem); null: wireguard-go's own. */
  wireguardDir: string | null;
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
  /** Hand dropped packets to the flows' nflog group at most this often per pod and direction; 0: never. */
  policyLogDropsPerSecond: number;
  policyDeny: DenyMode;
  /** Append flows to this file as JSON lines ("": no file). */
  flowLog: string;
  /** Count flows and drops per namespace and policy on /metrics. */
  flowMetrics: boolean;
  flowsPerSecond: number;
  /** How often the leak recovery sweeps the IPAM store; 0 turns it off. */
  leakIntervalMs: number;
  /** bgp backend: this node's AS and routers, over the network config's (and its Node's). */
  bgpAs?: number;
  bgpRouters?: BgpRouterConfig[];
  /** wireguard backend: the private key's file. */
  wireguardKey: string;
}

/** Longest pause between renewals, whatever the TTL: renewals also republish changed data. */
const MAX_RENEW_MS = 60_000;

const storeOptions = (o: CommonOptions, logger: Logger) => ({
  kind: o.datastore,
  leaseTTLMs: o.leaseTTLMs,
  logger,
  local: { dir: o.storeDir },
  etcd: { endpoints: o.etcdEndpoints, prefix: o.etcdPrefix, ...(o.etcdTls ? { tls: o.etcdTls } : {}) },
  kubernetes: { ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}), namespace: o.kubeNamespace },
});

/** `twilld run`: the agent until SIGTERM/SIGINT. Config errors throw before anything is written. */
export async function runAgent(o: RunOptions, logger: Logger): Promise<void> {
  const nodeName = checkNodeName(o.nodeName);
  const network = readNetworkConfig(o.netConf);
  const log = logger.with({ node: nodeName });
  const metrics = createMetrics();
  const store = await createStore({ ...storeOptions(o, log), network });
  const kernel = nodeKernel();
  const bgp = network.backend.type === "bgp"
    ? await readBgpNodeSettings(
      { ...(o.bgpAs !== undefined ? { as: o.bgpAs } : {}), ...(o.bgpRouters ? { routers: o.bgpRouters } : {}) },
      o.datastore === "kubernetes" ? await kubernetesBgpSettings(o.kubeconfig, nodeName) : null,
    )
    : {};
  const agent = new Agent({
    nodeName,
    network,
    store,
    kernel,
    backend: () =>
      createBackend(network, {
        kernel,
        logger: log,
        registry: metrics.registry,
        bgp: { dir: o.bgpDir, reportFile: bgpReportPath(o.stateDir), ...bgp },
        wireguard: { keyFile: o.wireguardKey, dir: o.wireguardDir, reportFile: wireguardReportPath(o.stateDir) },
      }),
    underlay: { ...(o.iface ? { iface: o.iface } : {}), ...(o.publicIP ? { publicIP: o.publicIP } : {}) },
    subnetFile: o.subnetFile,
    ipamStore: o.ipamStore,
    datapathReportFile: datapathReportPath(o.stateDir),
    resyncMs: o.resyncMs,
    renewMs: Math.max(1_000, Math.min(Math.floor(o.leaseTTLMs / 3), MAX_RENEW_MS)),
    logger: log,
    metrics,
  });
  const policy = await startNetworkPolicy({
    enabled: o.networkPolicy,
    datastore: o.datastore,
    ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
    nodeName,
    stateDir: o.stateDir,
    ipamStore: o.ipamStore,
    subnetFile: o.subnetFile,
    bridge: o.bridge,
    logDropsPerSecond: o.policyLogDropsPerSecond,
    deny: o.policyDeny,
    resyncMs: o.resyncMs,
    ip: kernel,
    registry: metrics.registry,
    logger: log,
  });
  const flows = await startFlows({
    nodeName,
    stateDir: o.stateDir,
    flowLog: o.flowLog,
    flowMetrics: o.flowMetrics,
    flowsPerSecond: o.flowsPerSecond,
    view: () => policy.flowView(),
    registry: metrics.registry,
    logger: log,
  });
  const recovery = o.leakIntervalMs > 0
    ? new LeakRecovery({
      storeDir: o.ipamStore,
      pods: await podSource(o, nodeName),
      graceMs: o.leakGraceMs,
      intervalMs: o.leakIntervalMs,
      logger: log,
      metrics,
      reportFile: leakReportPath(o.stateDir),
      sandbox: () => vethProbe(),
    })
    : null;
  log.info(recovery ? "Recovering leaked addresses" : "Leak recovery is off", {
    store: o.ipamStore,
    graceMs: o.leakGraceMs,
    ...(o.datastore === "kubernetes" ? {} : { only: "reservations from before the last boot: the datastore has no pods" }),
  });
  let server: Server | null = null;
  if (o.metricsAddr) {
    server = await startHttpServer(o.metricsAddr, metrics.registry, () => agent.readiness());
    log.info("Serving health and metrics", { address: o.metricsAddr });
  }
  const signal = Promise.race([once(process, "SIGTERM"), once(process, "SIGINT")]);
  log.info("Starting", { datastore: o.datastore, clusterCIDRs: network.clusterCIDRs, backend: network.backend.type });
  removeAbandonedTemporaries([dirname(o.subnetFile), o.stateDir], log);
  // Not after the lease: each sweep checks on its own that the node name is this node's
  // (ipam/node-identity.ts), and says why it refuses where no lease can be had (no such Node).
  recovery?.start();
  try {
    await Promise.race([agent.start(), signal]);
    await signal;
    log.info("Stopping; the datapath and the subnet file stay in place");
  } finally {
    await recovery?.stop();
    await Promise.all([agent.stop(), policy.stop(), flows.stop()]);
    kernel.close();
    server?.close();
  }
}

/** `twilld status`: this node's lease and subnet file, and the peers, from the datastore. */
export async function printStatus(o: CommonOptions & { output: "table" | "json" }, logger: Logger, write: (s: string) => void): Promise<boolean> {
  const store = await createStore(storeOptions(o, logger));
  try {
    const report = await gatherStatus(store, o.nodeName, o.subnetFile, {
      datapath: datapathReportPath(o.stateDir),
      policy: policyReportPath(o.stateDir),
      ipamStore: o.ipamStore,
      leaks: leakReportPath(o.stateDir),
      bgp: bgpReportPath(o.stateDir),
      wireguard: wireguardReportPath(o.stateDir),
    });
    write(o.output === "json" ? JSON.stringify(report, null, 2) + "\n" : renderStatus(report, Date.now()));
    return report.lease !== null && report.datastoreError === undefined;
  } finally {
    await store.close();
  }
}

/**
 * `twilld leave`: gives this node's subnets back for good (the node is being removed), so its
 * peers drop their routes to it and another node may take the subnets at once instead of after
 * the lease TTL. `twilld run` must be stopped first, or its next renewal acquires again.
 */
export async function leaveCluster(o: CommonOptions, logger: Logger): Promise<void> {
  const nodeName = checkNodeName(o.nodeName);
  const store = await createStore(storeOptions(o, logger));
  try {
    await store.release(nodeName);
    logger.info("Released this node's subnets", { node: nodeName, datastore: o.datastore });
  } finally {
    await store.close();
  }
  // A bgp node's BIRD outlives twilld on purpose; leaving for good ends it, so its peers and
  // routers withdraw its subnets now rather than after the graceful restart time.
  const bird = await shutdownBird(o.bgpDir);
  if (bird.stopped) logger.info("Shut BIRD down: its peers withdraw this node's subnets", { dir: o.bgpDir });
  else if (bird.error) logger.warn("Shutting BIRD down failed", { dir: o.bgpDir, error: bird.error });
  // A wireguard node's device outlives twilld too; deleting it ends wireguard-go with it.
  const kernel = nodeKernel();
  try {
    if (await kernel.link(WG_DEVICE)) {
      await kernel.deleteLink(WG_DEVICE, "the WireGuard device");
      logger.info("Deleted the WireGuard device (wireguard-go exits with it)", { device: WG_DEVICE });
    }
  } catch (err) {
    logger.warn("Deleting the WireGuard device failed", { device: WG_DEVICE, error: errorMessage(err) });
  } finally {
    kernel.close();
  }
}

/**
 * `twilld uninstall`: twill taken off this node (agent/uninstall.ts). True when it ran (or
 * would run, with --dry-run) and every step succeeded.
 */
export async function runUninstall(
  o: CommonOptions & { cniBinDir: string; cniConfDir: string; logDir: string; bridge: string; dryRun: boolean; force: boolean; wireguardKey: string },
  logger: Logger,
  write: (s: string) => void,
): Promise<boolean> {
  const kernel = nodeKernel();
  try {
    const paths = { cniBinDir: o.cniBinDir, cniConfDir: o.cniConfDir, subnetFile: o.subnetFile, stateDir: o.stateDir, ipamStore: o.ipamStore, bgpDir: o.bgpDir, logDir: o.logDir, wireguardKey: o.wireguardKey };
    const result = await uninstallNode(kernel, paths, { bridge: o.bridge, dryRun: o.dryRun, force: o.force, logger });
    write(renderUninstall(result, o));
    return result.failed.length === 0 && (o.force || result.plan.refusals.length === 0);
  } finally {
    kernel.close();
  }
}

/** What writers killed between create and rename left in the agent's directories (the IPAM store's: each leak sweep). */
function removeAbandonedTemporaries(dirs: string[], log: Logger): void {
  for (const dir of dirs) {
    try {
      const files = removeOldTemporaries(dir);
      if (files.length > 0) log.info("Removed temporaries of killed writers", { dir, files });
    } catch (err) {
      log.warn("Removing temporaries of killed writers failed", { dir, error: (err as Error).message });
    }
  }
}

/** Where the leak decision learns which pods run on this node. */
async function podSource(o: CommonOptions, nodeName: string): Promise<PodSource> {
  if (o.datastore !== "kubernetes") return noPods(o.datastore);
  const [{ kubernetesPods }, { loadKubeConfig }] = await Promise.all([import("./ipam/pods.js"), import("./datastore/kubernetes-api.js")]);
  return kubernetesPods(loadKubeConfig(o.kubeconfig), nodeName);
}

/** A Node's BGP settings read through the API (bgp-node-api.ts, imported only for the kubernetes datastore). */
async function kubernetesBgpSettings(kubeconfig: string | undefined, nodeName: string) {
  const [api, { loadKubeConfig }] = await Promise.all([import("./bgp-node-api.js"), import("./datastore/kubernetes-api.js")]);
  return api.kubernetesBgpSettings(loadKubeConfig(kubeconfig), nodeName);
}

const ipamCli = async (o: CommonOptions): Promise<IpamCliOptions> => ({ storeDir: o.ipamStore, pods: await podSource(o, o.nodeName), graceMs: o.leakGraceMs, sandbox: vethProbe() });

/** `twilld ipam list`. */
export function printReservations(o: CommonOptions & { output: Output }, write: (s: string) => void): void {
  const rs = listReservations({ storeDir: o.ipamStore, sandbox: vethProbe() });
  write(o.output === "json" ? JSON.stringify(rs, null, 2) + "\n" : renderReservations(rs, Date.now()));
}

/** `twilld ipam check`: what the leak recovery would release, releasing nothing. */
export async function printCheck(o: CommonOptions & { output: Output }, write: (s: string) => void): Promise<void> {
  const report = await checkReservations(await ipamCli(o));
  write(o.output === "json" ? JSON.stringify(report, null, 2) + "\n" : renderCheck(report, Date.now()));
}

/** `twilld ipam release ADDRESS|--leaked`; false when an address was refused. */
export async function runRelease(
  o: CommonOptions & { output: Output; address?: string; leaked: boolean; force: boolean },
  write: (s: string) => void,
): Promise<boolean> {
  if ((o.address === undefined) === !o.leaked) throw new ConfigError("twilld ipam release: give an ADDRESS or --leaked (not both)");
  const cli = await ipamCli(o);
  const outcome = o.leaked ? await releaseLeaked(cli) : await releaseAddress(cli, o.address!, o.force);
  write(o.output === "json" ? JSON.stringify(outcome, null, 2) + "\n" : renderRelease(outcome));
  return outcome.refused.length === 0;
}

/** `twilld nodes`. */
export async function printNodes(o: CommonOptions & { output: Output }, logger: Logger, write: (s: string) => void): Promise<boolean> {
  const store = await createStore(storeOptions(o, logger));
  try {
    const report = await gatherNodes(store, o.nodeName, datapathReportPath(o.stateDir));
    write(o.output === "json" ? JSON.stringify(report, null, 2) + "\n" : renderNodes(report, Date.now()));
    return report.datastoreError === undefined;
  } finally {
    await store.close();
  }
}
