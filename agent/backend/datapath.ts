import { KernelError, type IpRoute } from "../../shared/kernel/iproute.js";
import { deleteMasqueradeTable, readMasqueradeTable, replaceMasqueradeTable } from "../../shared/kernel/masq.js";
import { listFdb, listPermanentNeighbors } from "../../shared/kernel/neigh.js";
import { connectedPrefixes, listOwnedRoutes } from "../../shared/kernel/routes.js";
import { ensureVtep, stableVtepMac, vtepAddress, vtepName, type VxlanSpec } from "../../shared/kernel/vxlan.js";
import type { Logger } from "../../shared/log.js";
import { familyOfText } from "../../shared/net/cidr.js";
import type { Backend, BackendConfig, BackendData, LocalNode, NetworkConfig, NodeLease, ReconcileReport } from "../types.js";
import { staleAddresses } from "../stale-subnet.js";
import { PeerPaths, emptyProgrammed, planPeerUpdate, programmedErrors, programmedFrom, type Programmed } from "./incremental.js";
import { overheadOf, underlayAddresses, type NodeView, type PathFinder } from "./paths.js";
import { emptyState, planDatapath, toBatches, type Change, type DatapathState } from "./plan.js";

export interface BackendDeps {
  /** iproute2 bound to the node's namespace. */
  ip: IpRoute;
  logger: Logger;
  /** The clock, for lease expiry; Date.now by default. */
  now?: () => number;
}

export interface CarrierConfig {
  type: BackendConfig["type"];
  /** How each peer is reached. */
  find: PathFinder;
  /** Whether this node needs a VTEP (vxlan, auto); host-gw removes a leftover one. */
  vtep: boolean;
}

/**
 * The one Backend implementation: read what twill owns in the kernel, plan against the peer
 * set, apply in one `bridge -batch` (FDB) and one `ip -batch` (neighbors, routes). The
 * backend types differ only in their CarrierConfig.
 */
export class Datapath implements Backend {
  readonly type: BackendConfig["type"];
  private local: LocalNode | null = null;
  private masqListing: string | null = null;
  private lastErrors = "";
  /** The node as of the last full reconcile that succeeded; peer events plan against it. */
  private view: NodeView | null = null;
  private programmed: Programmed = emptyProgrammed();
  private readonly paths: PeerPaths;
  private readonly now: () => number;

  constructor(
    private readonly network: NetworkConfig,
    private readonly carrier: CarrierConfig,
    private readonly deps: BackendDeps,
  ) {
    this.type = carrier.type;
    this.paths = new PeerPaths(carrier.find);
    this.now = deps.now ?? Date.now;
  }

  overhead(underlayFamily: 4 | 6): number {
    return overheadOf(this.type, underlayFamily);
  }

  async prepare(local: LocalNode): Promise<BackendData> {
    this.local = local;
    const { vni, port } = this.network.backend;
    const [link] = await this.deps.ip.addrs(local.underlayDev);
    const data: BackendData = {
      type: this.type, underlayMTU: local.underlayMTU, underlayIPs: underlayAddresses(local.publicIP, link?.addr_info ?? []),
    };
    if (!this.carrier.vtep) {
      if (await this.deps.ip.deleteLink(vtepName(vni), "VTEP")) {
        this.deps.logger.info("Deleted VXLAN device left by another backend", { device: vtepName(vni) });
      }
      return data;
    }
    const spec = this.vtepSpec(local, undefined);
    const result = await ensureVtep(this.deps.ip, spec);
    if (result.recreated) {
      this.deps.logger.warn("Recreated VXLAN device with other settings", { device: spec.name, reason: result.recreated });
    }
    return { ...data, vtepMAC: spec.mac, vni, port };
  }

  async reconcile(lease: NodeLease, peers: NodeLease[]): Promise<ReconcileReport> {
    const local = this.local;
    if (!local) throw new Error(`${this.type} backend: reconcile before prepare`);
    const ip = this.deps.ip;
    let changes = 0;
    let vtep: NodeView["vtep"] = null;
    if (this.carrier.vtep) {
      const spec = this.vtepSpec(local, lease.subnets);
      // Each round, so a VTEP deleted or altered under a running agent comes back (with the
      // same MAC, so peers' entries stay right) and its routes with it.
      const result = await ensureVtep(ip, spec);
      changes += result.changes;
      if (result.created) this.deps.logger.warn("Created missing VXLAN device", { device: spec.name, ...(result.recreated ? { reason: result.recreated } : {}) });
      vtep = { dev: spec.name, vni: spec.vni, port: spec.port };
    }
    // Before routes: a gateway address of a subnet the node lost shadows the route to its new owner.
    changes += await this.removeStaleAddresses(lease, [vtep?.dev, local.underlayDev]);
    const view: NodeView = { local, lease, vtep, underlayPrefixes: await connectedPrefixes(ip, local.underlayDev) };
    // Cleared first: if anything below fails, the next peer event takes the full path again.
    this.view = null;
    const programmed = programmedFrom(peers, view, this.paths, this.now());
    const desired = emptyState();
    for (const entries of programmed.entries.values()) {
      desired.routes.push(...entries.routes);
      desired.neighbors.push(...entries.neighbors);
      desired.fdb.push(...entries.fdb);
    }
    const actual = await this.readOwned(vtep?.dev ?? null);
    const plan = planDatapath(desired, actual);
    const failures = await this.apply(plan, programmed);
    changes += plan.length;
    changes += await this.reconcileMasquerade();
    if (failures.length) throw new KernelError("program peer datapath", failures.join("; "));
    this.view = view;
    return { changes, errors: programmedErrors(programmed) };
  }

  /**
   * A peer event: only the named peers' entries are planned (against what was programmed for
   * them) and applied, without reading the kernel. Falls back to the full reconcile before the
   * first one, after a failed one, and when this node's own lease changed.
   */
  async reconcilePeers(lease: NodeLease, peers: NodeLease[], changed: readonly string[]): Promise<ReconcileReport> {
    const view = this.view;
    if (!view || view.lease.subnets.join() !== lease.subnets.join() || view.lease.publicIP !== lease.publicIP) {
      return this.reconcile(lease, peers);
    }
    const update = planPeerUpdate(peers, changed, this.programmed, view, this.paths, this.now());
    const failures = await this.apply(update.changes, update.programmed);
    if (failures.length) {
      this.view = null;
      throw new KernelError("program peer datapath", failures.join("; "));
    }
    return { changes: update.changes.length, errors: programmedErrors(update.programmed) };
  }

  /** Applies a plan in one `bridge -batch` and one `ip -batch`; returns the failures. */
  private async apply(plan: Change[], programmed: Programmed): Promise<string[]> {
    const ip = this.deps.ip;
    const batches = toBatches(plan);
    const failures: string[] = [];
    // -force: one bad entry must not keep the other peers' entries out; failures are reported.
    await ip.bridgeBatch(batches.bridge, "update VXLAN FDB", true).catch((e: unknown) => failures.push(String((e as Error).message)));
    await ip.batch(batches.ip, "update peer routes and neighbors", true).catch((e: unknown) => failures.push(String((e as Error).message)));
    this.programmed = programmed;
    if (plan.length) {
      this.deps.logger.info("Reconciled peer datapath", {
        changes: plan.length,
        added: plan.filter((c) => c.op === "replace").length,
        removed: plan.filter((c) => c.op === "del").length,
        peers: programmed.entries.size,
      });
    }
    const errors = programmedErrors(programmed).sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0));
    const errorsText = JSON.stringify(errors);
    if (errorsText !== this.lastErrors) {
      for (const e of errors) this.deps.logger.error("Peer unreachable", { peer: e.peer, reason: e.message });
      this.lastErrors = errorsText;
    }
    return failures;
  }

  /** Takes addresses of subnets this node no longer holds off its interfaces (the bridge's old gateway). */
  private async removeStaleAddresses(lease: NodeLease, skip: (string | undefined)[]): Promise<number> {
    const stale = staleAddresses(await this.deps.ip.addrs(), this.network.clusterCIDRs, lease.subnets, skip);
    if (stale.length === 0) return 0;
    await this.deps.ip.batch(
      stale.map((a) => ["addr", "del", a.address, "dev", a.dev]),
      "remove addresses of a subnet this node no longer holds",
      true,
    );
    for (const a of stale) {
      this.deps.logger.warn("Removed the address of a subnet this node no longer holds", { dev: a.dev, address: a.address, subnets: lease.subnets });
    }
    return stale.length;
  }

  private async readOwned(vtepDev: string | null): Promise<DatapathState> {
    const ip = this.deps.ip;
    const [routes, neighbors, fdb] = await Promise.all([
      listOwnedRoutes(ip),
      vtepDev ? listPermanentNeighbors(ip, vtepDev) : [],
      vtepDev ? listFdb(ip, vtepDev) : [],
    ]);
    return { routes, neighbors, fdb };
  }

  /** Keeps the masquerade table as installed; puts it back when it is missing or was edited. */
  private async reconcileMasquerade(): Promise<number> {
    const ip = this.deps.ip;
    const current = await readMasqueradeTable(ip);
    if (!this.network.ipMasq) {
      if (current === null) return 0;
      await deleteMasqueradeTable(ip);
      return 1;
    }
    if (current !== null && current === this.masqListing) return 0;
    this.masqListing = await replaceMasqueradeTable(ip, this.network.clusterCIDRs);
    this.deps.logger.info("Installed masquerade rules", { table: "inet twill", clusterCIDRs: this.network.clusterCIDRs });
    return 1;
  }

  private vtepSpec(local: LocalNode, subnets: readonly string[] | undefined): VxlanSpec {
    const { vni, port } = this.network.backend;
    const family = familyOfText(local.publicIP);
    return {
      name: vtepName(vni),
      vni,
      port,
      local: local.publicIP,
      dev: local.underlayDev,
      mac: stableVtepMac(local.nodeName, vni),
      mtu: local.underlayMTU - overheadOf("vxlan", family),
      ...(subnets ? { addresses: subnets.map(vtepAddress) } : {}),
    };
  }
}
