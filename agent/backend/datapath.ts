import type { DatapathWatch, NodeKernel, RefusedChange } from "../../shared/kernel/node-kernel.js";
import { connectedPrefixes } from "../../shared/kernel/routes.js";
import { KernelError } from "../../shared/kernel/types.js";
import type { Logger } from "../../shared/log.js";
import { errorMessage } from "../errors.js";
import type { Backend, BackendConfig, BackendData, LocalNode, NetworkConfig, NodeLease, ReconcileReport } from "../types.js";
import { staleAddresses } from "../stale-subnet.js";
import {
  PeerPaths, emptyProgrammed, planPeerUpdate, planProgrammedChange, programmedErrors, programmedFrom, programmedState, type Programmed,
} from "./incremental.js";
import { underlayAddresses, type BackendKind, type DeviceContext, type NodeView } from "./kind.js";
import { planDatapath, type Change, type DatapathState } from "./plan.js";

const EADDRNOTAVAIL = 99;

/** A full reconcile reads the kernel at least every this many rounds, whatever the monitor says. */
const READ_EVERY = 30;

export interface BackendDeps {
  /** The node namespace's kernel. */
  kernel: NodeKernel;
  logger: Logger;
  /** The clock, for lease expiry; Date.now by default. */
  now?: () => number;
}

/**
 * The datapath every backend shares: read what twill owns in the kernel, plan against the peer
 * set with the backend's per-peer decision, apply every change on its own, so one the kernel
 * refuses fails its peer alone. What a backend decides is in its own file (host-gw.ts,
 * vxlan.ts, auto.ts); masquerade is not a peer concern and has its own reconciler
 * (agent/masquerade.ts).
 */
export class Datapath implements Backend {
  readonly type: BackendConfig["type"];
  private local: LocalNode | null = null;
  private lastErrors = "";
  /** The node as of the last full reconcile that succeeded; peer events plan against it. */
  private view: NodeView | null = null;
  private programmed: Programmed = emptyProgrammed();
  private readonly paths: PeerPaths;
  private readonly now: () => number;
  private readonly kernelChanges: DatapathWatch;
  /** Full reconciles in a row that trusted the monitor instead of reading the kernel. */
  private readsSkipped = 0;
  /** The VTEP the last round found or made: its deletion is watched for. */
  private vtepDev: string | null = null;

  constructor(
    private readonly network: NetworkConfig,
    private readonly kind: BackendKind,
    private readonly deps: BackendDeps,
  ) {
    this.type = kind.type;
    this.paths = new PeerPaths(kind.reach);
    this.now = deps.now ?? Date.now;
    this.kernelChanges = deps.kernel.watchDatapath();
  }

  close(): void {
    this.kernelChanges.close();
  }

  underlayChanged(mtu: number): void {
    if (this.local) this.local = { ...this.local, underlayMTU: mtu };
    // The view remembers the old MTU: the next reconcile plans from the kernel again.
    this.view = null;
  }

  overhead(underlayFamily: 4 | 6): number {
    return this.kind.overhead(underlayFamily);
  }

  async prepare(local: LocalNode): Promise<BackendData> {
    this.local = local;
    const [link] = await this.deps.kernel.addrs(local.underlayDev);
    const data: BackendData = {
      type: this.type, underlayMTU: local.underlayMTU, underlayIPs: underlayAddresses(local.publicIP, link?.addresses ?? []),
    };
    return { ...data, ...(await this.kind.prepare(this.context(local))) };
  }

  async reconcile(lease: NodeLease, peers: NodeLease[]): Promise<ReconcileReport> {
    const local = this.local;
    if (!local) throw new Error(`${this.type} backend: reconcile before prepare`);
    const kernel = this.deps.kernel;
    const moved = await this.kernelChanges.sinceLast(this.vtepDev, [local.underlayDev]);
    const device = await this.kind.ensureDevice(this.context(local), lease.subnets);
    let changes = device.changes;
    const vtep = device.vtep;
    this.vtepDev = vtep?.dev ?? null;
    // Before routes: a gateway address of a subnet the node lost shadows the route to its new owner.
    changes += await this.removeStaleAddresses(lease, [vtep?.dev, local.underlayDev]);
    const view: NodeView = { local, lease, vtep, underlayPrefixes: await connectedPrefixes(kernel, local.underlayDev) };
    // The kernel holds what was programmed when the last round succeeded and the monitor saw
    // nothing since; it is read anyway every READ_EVERY rounds.
    const trusted = !moved.entries && changes === 0 && this.view !== null && this.readsSkipped < READ_EVERY - 1;
    this.readsSkipped = trusted ? this.readsSkipped + 1 : 0;
    // Cleared first: if anything below fails, the next peer event takes the full path again.
    this.view = null;
    const programmed = programmedFrom(peers, view, this.paths, this.now());
    const plan = trusted
      ? planProgrammedChange(this.programmed, programmed)
      : planDatapath(programmedState(programmed), await this.readOwned(vtep?.dev ?? null));
    const failures = await this.apply(plan, programmed);
    changes += plan.length;
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

  /**
   * Applies a plan, every change on its own: a change the kernel refuses keeps no other out,
   * and is the error of the peer whose entry it is (its entries are planned afresh next
   * round). Returns the failures no peer owns.
   */
  private async apply(plan: Change[], programmed: Programmed): Promise<string[]> {
    const failures: string[] = [];
    let refused: RefusedChange[] = [];
    if (plan.length > 0) {
      try {
        refused = await this.deps.kernel.applyDatapath(plan);
      } catch (err) {
        failures.push(errorMessage(err));
      }
    }
    if (refused.length) failures.push(...this.blamePeers(refused, programmed));
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

  /**
   * Refused changes become errors of the peers whose entries they are; those peers' entries
   * are dropped from the programmed view, so the next round plans them again. Returns the
   * refused changes no current peer owns (a stale entry's deletion).
   */
  private blamePeers(refused: RefusedChange[], programmed: Programmed): string[] {
    const owner = new Map<unknown, string>();
    for (const [peer, state] of programmed.entries) {
      for (const e of [...state.routes, ...state.neighbors, ...state.fdb]) owner.set(e, peer);
    }
    const unowned: string[] = [];
    for (const { change, error } of refused) {
      const peer = owner.get(change.entry);
      if (peer === undefined) {
        unowned.push(error.message);
        continue;
      }
      programmed.entries.delete(peer);
      const errors = programmed.errors.get(peer) ?? [];
      programmed.errors.set(peer, [...errors, { peer, message: `the kernel refused to ${error.op}: ${error.reason}` }]);
    }
    // Forget what the kernel may hold: the next full reconcile reads it.
    if (refused.length > unowned.length) this.readsSkipped = READ_EVERY;
    return unowned;
  }

  /** Takes addresses of subnets this node no longer holds off its interfaces (the bridge's old gateway). */
  private async removeStaleAddresses(lease: NodeLease, skip: (string | undefined)[]): Promise<number> {
    const stale = staleAddresses(await this.deps.kernel.addrs(), this.network.clusterCIDRs, lease.subnets, skip);
    if (stale.length === 0) return 0;
    for (const a of stale) {
      try {
        await this.deps.kernel.deleteAddress(a.dev, a.address, `remove address ${a.address} of a subnet this node no longer holds from "${a.dev}"`);
      } catch (err) {
        // Gone meanwhile (with its device, or by another hand): nothing to remove.
        if (!(err instanceof KernelError && (err.notFound || err.errno === EADDRNOTAVAIL))) throw err;
      }
      this.deps.logger.warn("Removed the address of a subnet this node no longer holds", { dev: a.dev, address: a.address, subnets: lease.subnets });
    }
    return stale.length;
  }

  private async readOwned(vtepDev: string | null): Promise<DatapathState> {
    const kernel = this.deps.kernel;
    const [routes, neighbors, fdb] = await Promise.all([
      kernel.ownedRoutes(),
      vtepDev ? kernel.permanentNeighbors(vtepDev) : [],
      vtepDev ? kernel.fdb(vtepDev) : [],
    ]);
    return { routes, neighbors, fdb };
  }

  private context(local: LocalNode): DeviceContext {
    return { kernel: this.deps.kernel, logger: this.deps.logger, network: this.network, local };
  }
}
