// `scripts/bench cni --policies N`: the ADD's wait for NetworkPolicy, as a runtime sees it.
//
// One more twill column, set up as under twilld: node mode (no ranges and no MTU in the conf;
// both from a subnet file beside which the agent writes the policy-ready file), twill-ipam, and
// the runtime's CNI_ARGS naming the pod. twilld's policy engine runs beside it in the node
// namespace (policy-engine.ts), over the synthetic cluster of `scripts/bench policy` with N
// policies. The column's pods take turns between a namespace with policies (their ADD waits
// until the engine lists the new address) and one without (no wait), so the two ADD latencies
// differ by the wait alone. The wait is the `policy` phase of twill's log.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ClusterSize } from "../policy/synthetic-cluster.js";
import { policyReadyPath } from "../../../../shared/policy-ready.js";
import { writeSubnetFile } from "../../../../shared/subnet-file.js";
import { startDaemon, waitUntilReady } from "../../../../testkit/daemon.js";

const ENGINE = fileURLToPath(new URL("./policy-engine.ts", import.meta.url));

/** Has policies whatever N (policy 0 is in it) and selects the bench's pods (app-0). */
export const POLICY_NAMESPACE = "ns-0";
/** In the cluster, without a policy. */
export const OPEN_NAMESPACE = "bench-open";
/** The plugin gives up waiting after this (plugins/twill/policy-wait.ts). */
export const WAIT_CAP_MS = 5_000;

export interface BenchPod {
  namespace: string;
  name: string;
  uid: string;
  labels: Record<string, string>;
}

export interface EngineJob {
  cluster: ClusterSize;
  pods: BenchPod[];
  stateDir: string;
  ipamStore: string;
  subnetFile: string;
  bridge: string;
  logFile: string;
  summaryFile: string;
}

export interface EngineSummary {
  /** Each `nft -f` the engine ran (the start-up table, then one update per change). */
  nftMs: number[];
}

/** Pod i: even ones in the namespace with policies, odd ones in the open one. */
export const benchPods = (n: number): BenchPod[] =>
  Array.from({ length: n }, (_, i) => ({
    namespace: i % 2 === 0 ? POLICY_NAMESPACE : OPEN_NAMESPACE,
    name: `bench-${i}`,
    uid: `b3c1d000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`,
    labels: { app: "app-0", role: "client" },
  }));

/** CNI_ARGS as containerd passes them for a pod's sandbox (`containerId`). */
export const cniArgsOf = (p: BenchPod, containerId: string): string =>
  `IgnoreUnknown=1;K8S_POD_NAMESPACE=${p.namespace};K8S_POD_NAME=${p.name};K8S_POD_INFRA_CONTAINER_ID=${containerId};K8S_POD_UID=${p.uid}`;

/** The subnet file twilld would write for the column's node subnet. */
export function writeNodeSubnet(file: string, s: { cluster: string; node: string; mtu: number }): void {
  writeSubnetFile(file, { clusterCIDRs: [s.cluster], nodeSubnets: [s.node], mtu: s.mtu, backend: "host-gw", ipMasq: false });
}

export interface RunningEngine {
  pid: number;
  /** Stops it (SIGTERM) and returns what it measured. */
  stop(): Promise<EngineSummary | null>;
}

/**
 * Starts the engine inside `node` and returns once it has put the table in the kernel and
 * written the ready file. `runtime`: the Bun executable running the bench.
 */
export async function startPolicyEngine(node: string, runtime: string, job: EngineJob): Promise<RunningEngine> {
  // Its output and its log in one file, so a failure to start shows the engine's own words.
  const daemon = startDaemon("policy engine", "ip", ["netns", "exec", node, runtime, ENGINE, JSON.stringify(job)], job.logFile);
  const stop = async (): Promise<EngineSummary | null> => {
    await daemon.stop();
    return existsSync(job.summaryFile) ? (JSON.parse(readFileSync(job.summaryFile, "utf8")) as EngineSummary) : null;
  };
  try {
    await waitUntilReady(daemon, "enforcing", async () => existsSync(policyReadyPath(job.subnetFile)), 60_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: daemon.pid, stop };
}
