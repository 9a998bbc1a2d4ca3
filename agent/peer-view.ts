import type { Logger } from "../shared/log.js";
import { diffLeases, isEmptyDiff, sortLeases, withoutExpiry } from "./leases.js";
import type { AgentMetrics } from "./metrics.js";
import { PeerAdmission } from "./peers.js";
import type { NetworkConfig, NodeLease, PeerError } from "./types.js";

/** What a new view changed for the datapath: the first view in full, later ones by peer name. */
export type PeerUpdate = { first: true } | { first: false; changed: string[] };

/**
 * The peers the datapath gets: the watch's last view, admitted against this node's lease, and
 * what changed since the last admitted set. Joins, leaves and changes are logged as they
 * happen; a refused record is logged once (again when its reason changes).
 */
export class PeerView {
  private readonly admission: PeerAdmission;
  /** The watch's last view, before admission: admitted again when this node's own lease changes. */
  private view: NodeLease[] | null = null;
  private admitted: NodeLease[] = [];
  /** Peer records refused by admission, as of the last view. */
  private refusedRecords: PeerError[] = [];
  private refusedKey = "[]";
  private admittedOnce = false;

  constructor(
    network: NetworkConfig,
    private readonly logger: Logger,
    private readonly metrics: AgentMetrics,
    /** Called when the refused records change (they are part of the datapath report). */
    private readonly onRefusedChange: () => void,
  ) {
    this.admission = new PeerAdmission(network);
  }

  /** The admitted peers, without their expiry. */
  get peers(): NodeLease[] {
    return this.admitted;
  }

  get refused(): PeerError[] {
    return this.refusedRecords;
  }

  /** Whether the watch has reported a view yet. */
  get hasView(): boolean {
    return this.view !== null;
  }

  /** Keeps the watch's view, also while no lease is held: the next lease's admission judges the latest one. */
  see(all: NodeLease[]): void {
    this.view = all;
  }

  /** Admits the last view against `lease`; null when there is none yet or the admitted set did not change. */
  admit(lease: NodeLease): PeerUpdate | null {
    if (!this.view) return null;
    // Only admitted records reach the datapath: a bad or forged one is refused for that peer alone.
    const { admitted, refused } = this.admission.admit(this.view, lease);
    this.noteRefused(refused);
    // The watch is the authority on liveness: it drops a lapsed lease itself, and it reports
    // no event for a renewal (only the expiry moves). A copy's expiresAt would go stale and
    // make the datapath drop a live peer, so it is not kept.
    const peers = sortLeases(admitted).map(withoutExpiry);
    const diff = diffLeases(this.admitted, peers);
    this.admitted = peers;
    this.metrics.peers.set(peers.length);
    // The first view always reconciles in full (start-up prune); later ones only the peers that changed.
    if (isEmptyDiff(diff) && this.admittedOnce) return null;
    const first = !this.admittedOnce;
    this.admittedOnce = true;
    // The first view names its peers at debug level only: a line each for thousands of peers
    // at every start is noise. Changes after it are logged one by one.
    if (first) this.logger.info("Peers at start", { peers: peers.length });
    for (const l of diff.added) {
      const fields = { peer: l.nodeName, subnets: l.subnets, publicIP: l.publicIP };
      if (first) this.logger.debug("Peer joined", fields);
      else this.logger.info("Peer joined", fields);
    }
    for (const l of diff.removed) this.logger.info("Peer left", { peer: l.nodeName, subnets: l.subnets });
    for (const l of diff.changed) this.logger.info("Peer changed", { peer: l.nodeName, subnets: l.subnets, publicIP: l.publicIP });
    if (first) return { first };
    return { first, changed: [...diff.added, ...diff.removed, ...diff.changed].map((l) => l.nodeName) };
  }

  /** Logs each refused record once (again when its reason changes) and counts them. */
  private noteRefused(refused: PeerError[]): void {
    const key = JSON.stringify(refused);
    if (key === this.refusedKey) return;
    const before = new Map(this.refusedRecords.map((r) => [r.peer, r.message]));
    for (const r of refused) {
      if (before.get(r.peer) !== r.message) this.logger.warn("Refused peer record; not routed", { peer: r.peer, reason: r.message });
      before.delete(r.peer);
    }
    for (const peer of before.keys()) this.logger.info("Peer record no longer refused", { peer });
    this.refusedRecords = refused;
    this.refusedKey = key;
    this.metrics.unreadableRecords.set({ kind: "peer" }, refused.length);
    this.onRefusedChange();
  }
}
