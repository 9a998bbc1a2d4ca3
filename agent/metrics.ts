import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * The agent's Prometheus metrics (flanneld has none). One registry per agent, so tests can
 * run several agents in one process.
 */
export interface AgentMetrics {
  registry: Registry;
  leaseHeld: Gauge;
  ready: Gauge;
  peers: Gauge;
  peerErrors: Gauge;
  reconciles: Counter;
  reconcileChanges: Counter;
  reconcileErrors: Counter;
  reconcileSeconds: Histogram<"kind">;
  datastoreErrors: Counter<"op">;
  watchRestarts: Counter;
  leaseRenewals: Counter;
  ipamReservations: Gauge;
  leakSuspects: Gauge;
  leaksReleased: Counter<"reason">;
  leakSweepsSkipped: Counter<"reason">;
  ipamSkippedFiles: Gauge;
  unreadableRecords: Gauge<"kind">;
  subnetFileRepairs: Counter;
  stalePods: Gauge;
}

/**
 * prom-client's per-space heap gauges, left out: on Bun, v8.getHeapSpaceStatistics() walks the
 * whole heap (about 18 ms of CPU per scrape at 5000 peers, nearly all of a scrape's cost) and
 * reports a single space. The heap's size and use (nodejs_heap_size_*_bytes) stay: they come
 * from process.memoryUsage(), which costs nothing.
 */
export const HEAP_SPACE_METRICS = [
  "nodejs_heap_space_size_total_bytes",
  "nodejs_heap_space_size_used_bytes",
  "nodejs_heap_space_size_available_bytes",
] as const;

export function createMetrics(withProcessMetrics = true): AgentMetrics {
  const registry = new Registry();
  // The event loop delay histogram samples once a second, not every 10 ms (prom-client's
  // default): at 10 ms the agent woke 100 times a second to measure itself, most of its CPU at
  // rest. The lag gauge measured at each scrape is unchanged.
  if (withProcessMetrics) {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });
    for (const name of HEAP_SPACE_METRICS) registry.removeSingleMetric(name);
  }
  const registers = [registry];
  return {
    registry,
    leaseHeld: new Gauge({ name: "twill_lease_held", help: "1 while this node holds its subnet lease", registers }),
    ready: new Gauge({ name: "twill_ready", help: "1 while the lease is held and the subnet file is written", registers }),
    peers: new Gauge({ name: "twill_peers", help: "Peer nodes in the datastore", registers }),
    peerErrors: new Gauge({ name: "twill_peer_errors", help: "Peers the backend cannot reach, as of the last reconcile", registers }),
    reconciles: new Counter({ name: "twill_reconciles_total", help: "Datapath reconcile rounds", registers }),
    reconcileChanges: new Counter({ name: "twill_reconcile_changes_total", help: "Kernel changes applied by reconciles", registers }),
    reconcileErrors: new Counter({ name: "twill_reconcile_errors_total", help: "Reconcile rounds that failed", registers }),
    // full: start-up and resync (reads the kernel); peers: a watch event (only the peers named).
    reconcileSeconds: new Histogram({
      name: "twill_reconcile_duration_seconds",
      help: "Time of a successful reconcile, by kind",
      labelNames: ["kind"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    datastoreErrors: new Counter({
      name: "twill_datastore_errors_total",
      help: "Failed datastore operations, by operation",
      labelNames: ["op"],
      registers,
    }),
    watchRestarts: new Counter({ name: "twill_watch_restarts_total", help: "Peer watches restarted after an error", registers }),
    leaseRenewals: new Counter({ name: "twill_lease_renewals_total", help: "Successful lease renewals", registers }),
    ipamReservations: new Gauge({ name: "twill_ipam_reservations", help: "Address reservations in this node's IPAM store, as of the last leak sweep", registers }),
    leakSuspects: new Gauge({ name: "twill_ipam_leak_suspects", help: "Reservations that look leaked, released once the grace period has passed", registers }),
    leaksReleased: new Counter({
      name: "twill_ipam_leaks_released_total",
      help: "Leaked addresses released, by reason (pod-not-on-node, earlier-boot)",
      labelNames: ["reason"],
      registers,
    }),
    leakSweepsSkipped: new Counter({
      name: "twill_ipam_leak_sweeps_skipped_total",
      help: "Leak sweeps that released nothing, by reason (pods-unavailable; node-unverified: the node name is not this node's)",
      labelNames: ["reason"],
      registers,
    }),
    ipamSkippedFiles: new Gauge({ name: "twill_ipam_store_skipped_files", help: "IPAM store files named like no canonical address (10.244.1.05), skipped", registers }),
    // claim: counted as taken; node: the peer's last good view is kept.
    unreadableRecords: new Gauge({ name: "twill_datastore_unreadable_records", help: "Datastore records that cannot be decoded, by kind", labelNames: ["kind"], registers }),
    subnetFileRepairs: new Counter({ name: "twill_subnet_file_repairs_total", help: "Times the subnet file was found missing or different and rewritten", registers }),
    stalePods: new Gauge({ name: "twill_stale_pods", help: "Pod addresses in a subnet this node no longer holds: those pods need a restart", registers }),
  };
}
