import { leaseKey } from "../leases.js";
import type { NodeLease, PeerError } from "../types.js";
import { desiredDatapath, type DesiredDatapath, type NodeView, type PathFinder } from "./kind.js";
import { emptyState, planDatapath, type Change, type DatapathState } from "./plan.js";

/**
 * The reconcile of a peer event: only the peers named in the event are looked at, and the
 * pure planner is fed what they had programmed against what they want now, so a node with
 * 5000 peers neither reads the kernel nor plans the other 4999 when one joins or leaves. The
 * full read-and-diff (datapath.ts) runs at start-up and on the resync timer and repairs
 * anything changed behind the agent's back.
 */

/** What the agent programmed for each peer, and why a peer cannot be reached. */
export interface Programmed {
  entries: Map<string, DatapathState>;
  errors: Map<string, PeerError[]>;
}

export const emptyProgrammed = (): Programmed => ({ entries: new Map(), errors: new Map() });

export interface PeerUpdate {
  changes: Change[];
  /** The programmed view after the changes are applied. */
  programmed: Programmed;
}

const merge = (into: DatapathState, from: DatapathState | undefined): void => {
  if (!from) return;
  into.routes.push(...from.routes);
  into.neighbors.push(...from.neighbors);
  into.fdb.push(...from.fdb);
};

/**
 * One peer's desired entries, remembered while the peer's lease and this node's view stay the
 * same: a resync at thousands of peers then recomputes none of them.
 */
export class PeerPaths {
  private viewKey = "";
  /** The view the key was computed for: a full reconcile asks for 5000 peers against one view. */
  private keyedView: NodeView | null = null;
  private readonly memo = new Map<string, { key: string; lapsesAt: number; desired: DesiredDatapath }>();

  constructor(private readonly find: PathFinder) {}

  desired(peer: NodeLease, view: NodeView, now: number): DesiredDatapath {
    if (view !== this.keyedView) {
      const viewKey = JSON.stringify([view.local, view.lease.nodeName, view.lease.subnets, view.underlayPrefixes, view.vtep]);
      if (viewKey !== this.viewKey) this.memo.clear();
      this.viewKey = viewKey;
      this.keyedView = view;
    }
    const key = leaseKey(peer);
    const hit = this.memo.get(peer.nodeName);
    if (hit && hit.key === key && now < hit.lapsesAt) return hit.desired;
    const desired = desiredDatapath([peer], view, this.find, now);
    this.memo.set(peer.nodeName, { key, lapsesAt: peer.expiresAt ?? Infinity, desired });
    return desired;
  }

  forget(nodeName: string): void {
    this.memo.delete(nodeName);
  }
}

/** The changes for the peers named in `changed` (joined, left or changed), from `peers` (the current set). */
export function planPeerUpdate(...args: Parameters<typeof collect>): PeerUpdate {
  const { had, wants, programmed } = collect(...args);
  return { changes: planDatapath(wants, had), programmed };
}

/** Every peer's entries from a full desired view (what a full reconcile programs). */
export function programmedFrom(peers: readonly NodeLease[], view: NodeView, find: PathFinder | PeerPaths, now: number): Programmed {
  // What collect() gives for every peer from nothing, without gathering the entries had and
  // wanted, which no caller of this needs: each resync at 5000 peers comes here.
  const paths = find instanceof PeerPaths ? find : new PeerPaths(find);
  const programmed = emptyProgrammed();
  for (const [name, peer] of new Map(peers.map((p) => [p.nodeName, p]))) {
    const desired = paths.desired(peer, view, now);
    if (name in desired.routes) programmed.entries.set(name, desired.state);
    if (desired.errors.length) programmed.errors.set(name, desired.errors);
  }
  return programmed;
}

function collect(
  peers: readonly NodeLease[],
  changed: Iterable<string>,
  before: Programmed,
  view: NodeView,
  find: PathFinder | PeerPaths,
  now: number,
): { had: DatapathState; wants: DatapathState; programmed: Programmed } {
  const paths = find instanceof PeerPaths ? find : new PeerPaths(find);
  const byName = new Map(peers.map((p) => [p.nodeName, p]));
  const programmed: Programmed = { entries: new Map(before.entries), errors: new Map(before.errors) };
  const had = emptyState();
  const wants = emptyState();
  for (const name of new Set(changed)) {
    merge(had, before.entries.get(name));
    const peer = byName.get(name);
    const desired = peer ? paths.desired(peer, view, now) : null;
    if (!peer) paths.forget(name);
    if (desired && name in desired.routes) {
      merge(wants, desired.state);
      programmed.entries.set(name, desired.state);
    } else {
      programmed.entries.delete(name);
    }
    if (desired?.errors.length) programmed.errors.set(name, desired.errors);
    else programmed.errors.delete(name);
  }
  return { had, wants, programmed };
}

/**
 * The changes from one programmed view to another, looking only at peers whose entries are not
 * the very same object (remembered entries of an unchanged peer are): what a full reconcile
 * plans when the kernel is known to hold `before`.
 */
export function planProgrammedChange(before: Programmed, after: Programmed): Change[] {
  const had = emptyState();
  const wants = emptyState();
  for (const [name, entries] of after.entries) {
    const old = before.entries.get(name);
    if (old === entries) continue;
    merge(had, old);
    merge(wants, entries);
  }
  for (const [name, entries] of before.entries) if (!after.entries.has(name)) merge(had, entries);
  return planDatapath(wants, had);
}

/** Every peer's entries as one state. */
export function programmedState(p: Programmed): DatapathState {
  const state = emptyState();
  for (const entries of p.entries.values()) merge(state, entries);
  return state;
}

export const programmedErrors = (p: Programmed): PeerError[] => [...p.errors.values()].flat();
