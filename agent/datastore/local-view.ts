import { leaseKey } from "../leases.js";
import type { NodeLease } from "../types.js";

/**
 * The local store's files as plain data: claims, node records and the live leases they make
 * (local.ts reads the files; this decides what they say). The view is patched file by file,
 * as a watch event names one, and only the leases of the nodes a patch touches are computed
 * again: a peer event at 5000 peers costs what changed, not a pass over every record.
 */

/** A subnet claim file's content. */
export interface Claim {
  nodeName: string;
  expiresAt: number;
}

/**
 * A store file that exists but does not decode. `settling`: it was written so recently that
 * its writer may still be between its open and its last write (a writer that does not rename
 * a complete file into place); it counts as unreadable for every decision, but is not damaged
 * until it stays so (SETTLE_MS).
 */
export interface Unreadable {
  error: string;
  settling: boolean;
}

export type ClaimEntry = Claim | Unreadable;
export type RecordEntry = NodeLease | Unreadable;

export const isUnreadable = (e: ClaimEntry | RecordEntry): e is Unreadable => "error" in e;

/** A damaged file: unreadable, and not a write in progress. */
export interface DamagedFile {
  kind: "claim" | "node";
  /** The subnet of a claim, the node of a record. */
  name: string;
  reason: string;
}

/**
 * How long a file that does not decode may still be a write in progress, from its last
 * modification: longer than a writer takes between open and its last write, even on a loaded
 * host. After it, the file is damaged (logged, listed by unreadable()).
 */
export const SETTLE_MS = 2_000;

/**
 * The coarsest clock tick file times are taken from: Linux stamps a change with a coarse clock
 * that moves once per scheduler tick (up to 10 ms at HZ=100), so two writes within one tick
 * can leave the same times.
 */
const FILE_TIME_TICK_MS = 50;

/** Whether a file last modified at `mtimeMs` and read at `readAtMs` may still be being written. */
export const mayBeSettling = (mtimeMs: number, readAtMs: number): boolean => mtimeMs > readAtMs - SETTLE_MS;

/**
 * Whether a file's stamp (inode, size, times), taken when it was read at `readAtMs`, tells
 * every later write apart: only if its last change (`ctimeMs`) lies more than a clock tick
 * before the read, so that a later write carries later times. A file changed within the
 * read's tick, rewritten in place at the same size, keeps its stamp; it must be read again
 * (as git re-reads a "racily clean" file). Whole-second times (a file system without
 * sub-second times) widen the tick to a second.
 */
export function stampDecisive(ctimeMs: number, readAtMs: number): boolean {
  const tick = ctimeMs % 1000 === 0 ? 1000 + FILE_TIME_TICK_MS : FILE_TIME_TICK_MS;
  return ctimeMs < readAtMs - tick;
}

export class LeaseView {
  /** Claim files by subnet. */
  private readonly claimFiles = new Map<string, ClaimEntry>();
  /** Node record files by node name (a record's file is named after its node). */
  private readonly recordFiles = new Map<string, RecordEntry>();
  /** Each node's last record that could be read: what an unreadable record falls back to. */
  private readonly good = new Map<string, NodeLease>();
  /** Subnet -> the nodes whose good record lists it: whom a change of its claim concerns. */
  private readonly listers = new Map<string, Set<string>>();
  /** Each node's live lease, as last computed. */
  private readonly live = new Map<string, NodeLease>();
  /** A live lease limited to its claimed subnets -> the record it was made from. */
  private readonly partialOf = new WeakMap<NodeLease, NodeLease>();
  /** Nodes patched since their leases were last computed. */
  private readonly touched = new Set<string>();
  private readonly damagedFiles = new Map<string, DamagedFile>();
  private readonly settlingFiles = { claims: new Set<string>(), nodes: new Set<string>() };
  private changes = 0;

  /** Counts the changes of the live lease set (a lease added, removed, or changed other than in its expiry). */
  get version(): number {
    return this.changes;
  }

  claim(subnet: string): ClaimEntry | undefined {
    return this.claimFiles.get(subnet);
  }

  claims(): IterableIterator<[string, ClaimEntry]> {
    return this.claimFiles.entries();
  }

  /** The node's record, or its last good one while its file is unreadable. */
  record(node: string): NodeLease | undefined {
    return this.good.get(node);
  }

  records(): IterableIterator<NodeLease> {
    return this.good.values();
  }

  leases(): NodeLease[] {
    return [...this.live.values()];
  }

  damaged(): DamagedFile[] {
    return [...this.damagedFiles.values()];
  }

  /** The files being written: to be read again soon, as their writer may send no further event. */
  settling(): { claims: string[]; nodes: string[] } {
    return { claims: [...this.settlingFiles.claims], nodes: [...this.settlingFiles.nodes] };
  }

  setClaim(subnet: string, entry: ClaimEntry | null): void {
    if (this.claimFiles.get(subnet) === entry) return;
    if (entry === null) this.claimFiles.delete(subnet);
    else this.claimFiles.set(subnet, entry);
    this.noteUnreadable("claim", subnet, entry, this.settlingFiles.claims);
    for (const n of this.listers.get(subnet) ?? []) this.touched.add(n);
  }

  setRecord(node: string, entry: RecordEntry | null): void {
    if (this.recordFiles.get(node) === entry) return;
    if (entry === null) {
      this.recordFiles.delete(node);
      this.setGood(node, undefined);
    } else {
      this.recordFiles.set(node, entry);
      if (!isUnreadable(entry)) this.setGood(node, entry);
    }
    this.noteUnreadable("node", node, entry, this.settlingFiles.nodes);
    this.touched.add(node);
  }

  /** The files the view holds: claims by subnet, records by node. */
  files(): { subnets: string[]; nodes: string[] } {
    return { subnets: [...this.claimFiles.keys()], nodes: [...this.recordFiles.keys()] };
  }

  /**
   * Computes again the leases of the nodes patched since the last call (`all`: of every
   * node, as a lapse needs); true when the lease set changed. A renewal (only the expiry
   * moved) replaces the lease object but is no change: peers act on nothing else.
   */
  refresh(now: number, all = false): boolean {
    const nodes = all ? new Set([...this.good.keys(), ...this.live.keys()]) : this.touched;
    let changed = false;
    for (const n of nodes) {
      const prev = this.live.get(n);
      const next = this.leaseOf(n, now);
      if (next === prev) continue;
      if (next) this.live.set(n, next);
      else this.live.delete(n);
      if (!prev || !next || leaseKey(prev) !== leaseKey(next)) changed = true;
    }
    this.touched.clear();
    if (changed) this.changes++;
    return changed;
  }

  /** A node's live lease: its record while not lapsed, limited to the subnets whose claims name it. */
  private leaseOf(node: string, now: number): NodeLease | undefined {
    const rec = this.good.get(node);
    if (!rec || (rec.expiresAt ?? 0) <= now) return undefined;
    // An unreadable claim cannot disprove the record: the peer keeps the subnet it lists.
    const subnets = rec.subnets.filter((s) => {
      const c = this.claimFiles.get(s);
      return c !== undefined && (isUnreadable(c) || c.nodeName === node);
    });
    // The record itself when every subnet it lists is its own: the same object while its file
    // is unchanged, so the lease's identity is computed once (leases.ts).
    if (subnets.length === rec.subnets.length) return rec;
    if (subnets.length === 0) return undefined;
    const prev = this.live.get(node);
    if (prev && this.partialOf.get(prev) === rec && prev.subnets.join() === subnets.join()) return prev;
    const partial = { ...rec, subnets };
    this.partialOf.set(partial, rec);
    return partial;
  }

  private setGood(node: string, lease: NodeLease | undefined): void {
    const old = this.good.get(node);
    if (old === lease) return;
    for (const s of old?.subnets ?? []) {
      const set = this.listers.get(s);
      set?.delete(node);
      if (set?.size === 0) this.listers.delete(s);
    }
    if (!lease) {
      this.good.delete(node);
      return;
    }
    this.good.set(node, lease);
    for (const s of lease.subnets) {
      const set = this.listers.get(s) ?? new Set<string>();
      set.add(node);
      this.listers.set(s, set);
    }
  }

  private noteUnreadable(kind: DamagedFile["kind"], name: string, entry: ClaimEntry | RecordEntry | null, settling: Set<string>): void {
    const bad = entry !== null && isUnreadable(entry) ? entry : null;
    if (!bad && this.damagedFiles.size === 0 && settling.size === 0) return;
    const key = `${kind} ${name}`;
    if (bad && !bad.settling) this.damagedFiles.set(key, { kind, name, reason: bad.error });
    else this.damagedFiles.delete(key);
    if (bad?.settling) settling.add(name);
    else settling.delete(name);
  }
}
