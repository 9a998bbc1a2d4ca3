import { readSubnetFile, type SubnetInfo } from "../shared/subnet-file.js";
import { readDatapathReport, type DatapathReport } from "./datapath-report.js";
import { formatDuration } from "./durations.js";
import { errorMessage } from "./errors.js";
import { peersOf } from "./leases.js";
import { readLeakReport, renderLeakReport, type LeakReport } from "./ipam/report.js";
import { readPolicyReport, renderPolicyReport, type PolicyReport } from "./policy/report.js";
import { renderTable } from "./table.js";
import { readBgpReport, renderBgpReport, type BgpReport } from "./backend/bgp/bgp-report.js";
import { readWireguardReport, renderWireguardReport, type WireguardReport } from "./backend/wireguard/wireguard-report.js";
import { findStalePods, type StalePod } from "./stale-subnet.js";
import type { NodeLease, SubnetStore, UnreadableRecord } from "./types.js";

/**
 * `twilld status`: this node's lease and subnet file, and every peer as the datastore has
 * them. Gathering reads; rendering is a pure function of the report and the clock.
 */

export interface StatusReport {
  nodeName: string;
  subnetFile: { path: string; info: SubnetInfo | null; error?: string };
  lease: NodeLease | null;
  peers: NodeLease[];
  /** Set when the datastore could not be read. */
  datastoreError?: string;
  /** The running agent's last datapath reconcile; null when it has written none. */
  datapath: DatapathReport | null;
  /** What NetworkPolicy the running agent enforces; null when it wrote no report. */
  policy?: PolicyReport | null;
  /** The running agent's last leak sweep; null when it wrote none. */
  leaks?: LeakReport | null;
  /** bgp backend: BIRD and every BGP session, as of the agent's last poll; null when it wrote none. */
  bgp?: BgpReport | null;
  /** wireguard backend: the device, its mode and every peer, as of the agent's last reconcile; null when it wrote none. */
  wireguard?: WireguardReport | null;
  /** Datastore records that cannot be decoded (claims count as taken). */
  unreadable: UnreadableRecord[];
  /** Pods whose addresses lie outside the node's current subnets: they need a restart. */
  stalePods: StalePod[];
  /** Problems an operator should look at (subnet file disagrees with the lease, ...). */
  warnings: string[];
}

export interface StatusExtras {
  unreadable?: UnreadableRecord[];
  stalePods?: StalePod[];
}

/** The files the running agent writes that `twilld status` shows, beside the datastore's view; each optional. */
export interface StatusFiles {
  datapath?: string;
  policy?: string;
  /** The IPAM store, where pods left on a subnet the node lost are found. */
  ipamStore?: string;
  leaks?: string;
  bgp?: string;
  wireguard?: string;
}

export async function gatherStatus(store: SubnetStore, nodeName: string, subnetFilePath: string, files: StatusFiles = {}): Promise<StatusReport> {
  let info: SubnetInfo | null = null;
  let fileError: string | undefined;
  try {
    info = readSubnetFile(subnetFilePath);
  } catch (err) {
    fileError = errorMessage(err);
  }
  let leases: NodeLease[] = [];
  let datastoreError: string | undefined;
  try {
    leases = await store.list();
  } catch (err) {
    datastoreError = errorMessage(err);
  }
  const datapath = files.datapath ? readDatapathReport(files.datapath) : null;
  const stalePods = files.ipamStore && info ? findStalePods(files.ipamStore, info.clusterCIDRs, info.nodeSubnets) : [];
  const report = buildStatus(nodeName, { path: subnetFilePath, info, ...(fileError ? { error: fileError } : {}) }, leases, datastoreError, datapath, {
    unreadable: store.unreadable(),
    stalePods,
  });
  return {
    ...report,
    ...(files.policy ? { policy: readPolicyReport(files.policy) } : {}),
    ...(files.leaks ? { leaks: readLeakReport(files.leaks) } : {}),
    ...(files.bgp && datapath?.backend === "bgp" ? { bgp: readBgpReport(files.bgp) } : {}),
    ...(files.wireguard && datapath?.backend === "wireguard" ? { wireguard: readWireguardReport(files.wireguard) } : {}),
  };
}

export function buildStatus(
  nodeName: string,
  subnetFile: StatusReport["subnetFile"],
  leases: NodeLease[],
  datastoreError?: string,
  datapath: DatapathReport | null = null,
  extras: StatusExtras = {},
): StatusReport {
  const unreadable = extras.unreadable ?? [];
  const stalePods = extras.stalePods ?? [];
  const lease = leases.find((l) => l.nodeName === nodeName) ?? null;
  const warnings: string[] = [];
  if (!datastoreError && !lease) warnings.push(`node "${nodeName}" holds no lease in the datastore`);
  if (lease && subnetFile.info && lease.subnets.join() !== subnetFile.info.nodeSubnets.join()) {
    warnings.push(
      `subnet file lists ${subnetFile.info.nodeSubnets.join(", ")} but the lease holds ${lease.subnets.join(", ")}: twilld rewrites it on its next resync`,
    );
  }
  if (datapath?.failed) warnings.push(`the last datapath reconcile failed: ${datapath.failed}`);
  for (const r of datapath?.refused ?? []) warnings.push(`refused peer record ${r.peer}: ${r.message}; not routed`);
  for (const r of unreadable) {
    warnings.push(
      r.kind === "claim"
        ? `unreadable subnet claim ${r.key} (${r.reason}): its subnet counts as taken; fix or remove it`
        : `unreadable node record ${r.key} (${r.reason}): peers keep their last good view of that node`,
    );
  }
  for (const p of stalePods) {
    warnings.push(`pod ${p.containerId || "(unknown container)"} has ${p.ip} (network ${p.network}), outside this node's subnets: restart it`);
  }
  return {
    nodeName,
    subnetFile,
    lease,
    peers: peersOf(leases, nodeName),
    datapath,
    ...(datastoreError ? { datastoreError } : {}),
    unreadable,
    stalePods,
    warnings,
  };
}

export function renderStatus(r: StatusReport, now: number): string {
  const out: string[] = [];
  out.push(`Node:         ${r.nodeName}`);
  if (r.lease) {
    const expiry = r.lease.expiresAt === undefined ? "" : `, expires in ${formatDuration(r.lease.expiresAt - now)}`;
    out.push(`Lease:        ${r.lease.subnets.join(", ")} on ${r.lease.publicIP} (${backendText(r.lease)}${expiry})`);
  } else if (r.datastoreError) {
    // The agent keeps its subnet, routes and pods' addresses while the datastore is away.
    out.push(`Lease:        unknown while the datastore is unreachable (the subnet file below is what this node uses)`);
  } else {
    out.push(`Lease:        none`);
  }
  const f = r.subnetFile;
  out.push(
    f.info
      ? `Subnet file:  ${f.path}: ${f.info.nodeSubnets.join(", ")}, MTU ${f.info.mtu}, backend ${f.info.backend}, masquerade ${f.info.ipMasq ? "on" : "off"}`
      : `Subnet file:  ${f.path}: ${f.error ?? "missing"}`,
  );
  if (r.datastoreError) out.push(`Datastore:    unreachable: ${r.datastoreError}`);
  for (const w of r.warnings) out.push(`Warning:      ${w}`);
  if (r.policy !== undefined) out.push(...renderPolicyReport(r.policy, now));
  if (r.leaks) out.push(...renderLeakReport(r.leaks, now));
  if (r.bgp) out.push(...renderBgpReport(r.bgp, now));
  if (r.wireguard) out.push(...renderWireguardReport(r.wireguard, now));
  out.push("");
  if (r.peers.length === 0) {
    out.push(r.datastoreError ? "Peers: unknown" : "Peers: none");
    return out.join("\n") + "\n";
  }
  out.push(`Peers (${r.peers.length}):`);
  const unreachable = new Map((r.datapath?.errors ?? []).map((e) => [e.peer, e.message]));
  const refused = new Set((r.datapath?.refused ?? []).map((e) => e.peer));
  const rows = [
    ["NAME", "PUBLIC IP", "SUBNETS", "BACKEND", "DATAPATH", "AGE"],
    ...r.peers.map((p) => [
      p.nodeName,
      p.publicIP,
      p.subnets.join(","),
      backendText(p),
      !r.datapath ? "-" : refused.has(p.nodeName) ? "REFUSED" : unreachable.has(p.nodeName) ? "UNREACHABLE" : "ok",
      p.acquiredAt === undefined ? "-" : formatDuration(now - p.acquiredAt),
    ]),
  ];
  out.push(...renderTable(rows));
  for (const [peer, why] of unreachable) out.push(`Unreachable:  ${peer}: ${why}`);
  return out.join("\n") + "\n";
}

export function backendText(l: Pick<NodeLease, "backend">): string {
  const b = l.backend;
  const parts = [b.type];
  if (b.vtepMAC) parts.push(`vtep ${b.vtepMAC}`);
  if (b.vni !== undefined) parts.push(`vni ${b.vni}`);
  if (b.as !== undefined) parts.push(`as ${b.as}`);
  if (b.underlayMTU !== undefined) parts.push(`mtu ${b.underlayMTU}`);
  return parts.join(" ");
}
