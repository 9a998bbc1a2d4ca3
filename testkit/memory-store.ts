import { systemClock, type Clock } from "../agent/clock.js";
import { claimSubnets, requirePools } from "../agent/datastore/claim.js";
import { LeaseLostError } from "../agent/errors.js";
import { LeaseSetEmitter, WatchRegistry } from "../agent/datastore/watch-emitter.js";
import { checkNodeName, claimAge } from "../agent/leases.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore, UnreadableRecord } from "../agent/types.js";
import { parseCidr } from "../shared/net/cidr.js";

/**
 * A SubnetStore on plain data, for tests of what sits on top of a store (the agent loop, a
 * testbed of in-process agents). The cluster's state lives in a `MemoryDatastore`; every
 * store opened on it sees the others' claims, as agents of one cluster share a datastore.
 * Claims follow the shared claim loop (agent/datastore/claim.ts); leases lapse on the
 * injected clock, and watchers are told of every change of the live set, lapses included.
 */
export class MemoryDatastore {
  /**
   * Subnet → the node whose claim it is (live, or lapsed and not taken over). A claim is live
   * while its own expiry (a grace for the node to write its record) or its node's lease runs.
   */
  readonly claims = new Map<string, { nodeName: string; expiresAt: number }>();
  /** The node records, by node name. */
  readonly records = new Map<string, NodeLease>();
  private readonly listeners = new Set<() => void>();

  constructor(readonly clock: Clock = systemClock) {}

  open(network: NetworkConfig, leaseTTLMs = 60_000): SubnetStore {
    return new MemoryStore(this, network, leaseTTLMs);
  }

  /** The live leases: a record not lapsed, with the subnets still claimed in its name. */
  live(): NodeLease[] {
    const now = this.clock.now();
    const leases: NodeLease[] = [];
    for (const rec of this.records.values()) {
      if ((rec.expiresAt ?? 0) <= now) continue;
      const subnets = rec.subnets.filter((s) => this.claims.get(s)?.nodeName === rec.nodeName);
      if (subnets.length > 0) leases.push({ ...rec, subnets });
    }
    return leases;
  }

  /** The node holding `subnet` now, if any. */
  holder(subnet: string): string | undefined {
    const claim = this.claims.get(subnet);
    if (!claim) return undefined;
    if (claim.expiresAt > this.clock.now()) return claim.nodeName;
    return this.live().some((l) => l.nodeName === claim.nodeName && l.subnets.includes(subnet)) ? claim.nodeName : undefined;
  }

  /** Another node (an operator, a thief) changed the state directly: tell the watchers. */
  changed(): void {
    for (const l of [...this.listeners]) l();
  }

  listen(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }
}

/** How long a fresh claim counts as live before its node's record covers it. */
const CLAIM_GRACE_MS = 1_000;

class MemoryStore implements SubnetStore {
  private readonly watches = new WatchRegistry();

  constructor(
    private readonly db: MemoryDatastore,
    private readonly network: NetworkConfig,
    private readonly ttlMs: number,
  ) {}

  async acquire(req: AcquireRequest): Promise<NodeLease> {
    const name = checkNodeName(req.nodeName);
    const pools = requirePools(this.network);
    const now = this.db.clock.now();
    const own = [...this.db.claims].filter(([, c]) => c.nodeName === name).map(([s]) => s);
    const takenByOther = (s: string) => ![undefined, name].includes(this.db.holder(s));
    const subnets = await claimSubnets(pools, name, req.preferredSubnets ?? [], {
      own,
      taken: [...this.db.claims.keys()].filter(takenByOther).map((s) => parseCidr(s)),
      claim: async (s) => {
        if (takenByOther(s)) return false;
        this.db.claims.set(s, { nodeName: name, expiresAt: this.db.clock.now() + CLAIM_GRACE_MS });
        return true;
      },
      drop: async (s) => {
        if (this.db.claims.get(s)?.nodeName === name) this.db.claims.delete(s);
      },
    });
    const { acquiredAt } = claimAge(this.db.records.get(name), subnets, now);
    const lease: NodeLease = { nodeName: name, subnets, publicIP: req.publicIP, backend: req.backend, expiresAt: now + this.ttlMs, acquiredAt };
    this.db.records.set(name, lease);
    this.db.changed();
    return { ...lease };
  }

  async renew(lease: NodeLease): Promise<NodeLease> {
    for (const s of lease.subnets) {
      const owner = this.db.claims.get(s)?.nodeName;
      if (owner !== lease.nodeName) {
        throw new LeaseLostError(lease.nodeName, owner ? `subnet ${s} is now claimed by "${owner}"` : `subnet ${s} is no longer claimed`);
      }
    }
    const renewed: NodeLease = { ...lease, expiresAt: this.db.clock.now() + this.ttlMs };
    this.db.records.set(lease.nodeName, renewed);
    this.db.changed();
    return { ...renewed };
  }

  async list(): Promise<NodeLease[]> {
    return this.db.live();
  }

  /** Reports the live set after every change (and when a lease lapses), asynchronously as a real store does. */
  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void {
    const emitter = new LeaseSetEmitter({ clock: this.db.clock, onChange, onError, read: () => this.db.live() });
    const emit = () => queueMicrotask(() => emitter.emit());
    const unlisten = this.db.listen(emit);
    emit();
    return this.watches.add(() => {
      emitter.stop();
      unlisten();
    });
  }

  unreadable(): UnreadableRecord[] {
    return [];
  }

  async release(nodeName: string): Promise<void> {
    for (const [s, c] of [...this.db.claims]) if (c.nodeName === nodeName) this.db.claims.delete(s);
    this.db.records.delete(nodeName);
    this.db.changed();
  }

  async close(): Promise<void> {
    this.watches.stopAll();
  }
}
