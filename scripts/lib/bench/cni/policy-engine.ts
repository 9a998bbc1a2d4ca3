// twilld's NetworkPolicy enforcement for `scripts/bench cni --policies`, as its own process in
// the bench's node namespace (started there with `ip netns exec`): the engine and the IPAM
// store's reservations watch wired as twilld wires them (enforceNetworkPolicy), fed a synthetic
// cluster instead of the Kubernetes watch. The bench's pods are in it as the API has them before
// kubelet reports their addresses: on this node, without ips. Their addresses reach the engine
// from the store, as on a real node, and the ready file the plugin waits on is written beside the
// conf's subnet file.
//
// Runs until SIGTERM; then writes what its nft processes took to the job's summary file.
import { writeFileSync } from "node:fs";
import { Registry } from "prom-client";
import { enforceNetworkPolicy } from "../../../../agent/policy/index.js";
import { createPolicyMetrics } from "../../../../agent/policy/metrics.js";
import type { PolicySnapshot } from "../../../../agent/policy/types.js";
import { nodeKernel } from "../../../../shared/kernel/netlink/node.js";
import type { NodeKernel } from "../../../../shared/kernel/node-kernel.js";
import { fileLogger } from "../../../../shared/log.js";
import { NODE, syntheticCluster } from "../policy/synthetic-cluster.js";
import type { BenchPod, EngineJob, EngineSummary } from "./policy-wait.js";

const job = JSON.parse(process.argv[2]!) as EngineJob;

function snapshotOf(job: EngineJob): PolicySnapshot {
  const cluster = syntheticCluster(job.cluster);
  const pod = (p: BenchPod) => ({ ...p, nodeName: NODE, ips: [], ports: [{ name: "http", port: 8080, protocol: "TCP" as const }] });
  const known = new Set(cluster.namespaces.map((n) => n.name));
  const extra = [...new Set(job.pods.map((p) => p.namespace))].filter((n) => !known.has(n));
  return {
    ...cluster,
    pods: [...cluster.pods, ...job.pods.map(pod)],
    namespaces: [...cluster.namespaces, ...extra.map((name) => ({ name, labels: { "kubernetes.io/metadata.name": name } }))],
  };
}

const kernel = nodeKernel();
const nftMs: number[] = [];
// The nft processes timed on their way to the kernel: the one part of an apply that is a process start.
const ip: Pick<NodeKernel, "nft" | "nftCounters" | "bridgeNetfilter"> = {
  nft: async (args, op, input) => {
    const t0 = performance.now();
    try {
      return await kernel.nft(args, op, input);
    } finally {
      if (args.includes("-f")) nftMs.push(performance.now() - t0);
    }
  },
  nftCounters: (table) => kernel.nftCounters(table),
  bridgeNetfilter: (name) => kernel.bridgeNetfilter(name),
};

const snapshot = snapshotOf(job);
const running = enforceNetworkPolicy(
  {
    nodeName: NODE,
    stateDir: job.stateDir,
    ipamStore: job.ipamStore,
    subnetFile: job.subnetFile,
    bridge: job.bridge,
    // twilld's default --resync: a failed apply is retried on it, as on a node.
    resyncMs: 10_000,
    ip,
    logger: fileLogger(job.logFile),
    metrics: createPolicyMetrics(new Registry()),
  },
  (onSnapshot) => {
    onSnapshot(snapshot, Date.now());
    return () => {};
  },
);

process.on("SIGTERM", () => {
  void running.stop().then(() => {
    kernel.close();
    const summary: EngineSummary = { nftMs };
    writeFileSync(job.summaryFile, JSON.stringify(summary));
    process.exit(0);
  });
});
