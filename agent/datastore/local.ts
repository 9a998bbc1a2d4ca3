import { mkdir, readdir, rename } from "node:fs/promises";
import { join } from "node:path";
import { writeTempFile } from "../../shared/fs.js";
import { parseCidr } from "../../shared/net/cidr.js";
import { nullLogger, type Logger } from "../../shared/log.js";
import { systemClock, type Clock } from "../clock.js";
import { LeaseLostError } from "../errors.js";
import { claimAge, checkNodeName, decodeLease } from "../leases.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore, UnreadableRecord } from "../types.js";
import { claimSubnets, requirePools } from "./claim.js";
import { ClaimFiles, decodeClaim, isClaimFile, storeError, subnetFileName, subnetOfFileName, unlinkIfPresent, type ClaimState } from "./local-claims.js";
import { StampedReads } from "./local-reads.js";
import { LeaseView, isUnreadable, type Claim, type ClaimEntry, type RecordEntry } from "./local-view.js";
import { DirectoryFollower } from "./local-watch.js";
import { UnreadableRecords } from "./unreadable.js";
import { LeaseSetEmitter, WatchRegistry } from "./watch-emitter.js";

/**
 * The `local` datastore: a directory every agent on this host shares (the single-host demo
 * and the tests run each simulated node as its own agent against one directory).
 *
 *   <dir>/subnets/<network>_<prefix>   a claim: {"nodeName", "expiresAt"} (local-claims.ts)
 *   <dir>/subnets/<...>.lock           held only while a lapsed claim is taken over
 *   <dir>/nodes/<node>.json            the node's lease (subnets, public IP, backend data,
 *                                      expiresAt), written atomically on acquire and renew
 *
 * A claim is live while its own expiresAt (a grace for writing the node record) or its
 * owner's record expiry lies ahead and that record lists the subnet.
 *
 * A file that cannot be read (torn, not JSON, a directory in its place, a record naming another
 * node than its file) costs only itself: a claim is then taken (never free: handing it out
 * could put two nodes on one subnet), a node record keeps the last good view of that peer.
 * Both are logged once and listed by unreadable(). Any writer is followed, not only one that
 * renames complete files into place as agents do, and a peer's claim and record may come in
 * either order; a file being written is not damage (local-reads.ts).
 */

export interface LocalStoreOptions {
  dir: string;
  network?: NetworkConfig;
  leaseTTLMs: number;
  /** How often watch() rereads the whole directory, besides following it with inotify. */
  rescanMs?: number;
  /** Lease time (file times are the wall clock's whatever this says). */
  clock?: Clock;
  logger?: Logger;
}

/** File events within this window are read and reported together. */
const WATCH_BATCH_MS = 2;

const RECORD_SUFFIX = ".json";
const recordFileName = (node: string): string => `${node}${RECORD_SUFFIX}`;
const nodeOfFileName = (name: string): string => name.slice(0, -RECORD_SUFFIX.length);
const isRecordFile = (name: string): boolean => !name.startsWith(".") && name.endsWith(RECORD_SUFFIX);

export class LocalStore implements SubnetStore {
  private readonly subnetsDir: string;
  private readonly nodesDir: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly watches = new WatchRegistry();
  private readonly damaged: UnreadableRecords;
  private readonly claims: ClaimFiles;
  /** What the files said when last read: every read (acquire's, a watch event's) patches it. */
  private readonly view = new LeaseView();
  private readonly reads: StampedReads;

  constructor(private readonly opts: LocalStoreOptions) {
    this.subnetsDir = join(opts.dir, "subnets");
    this.nodesDir = join(opts.dir, "nodes");
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? nullLogger;
    this.damaged = new UnreadableRecords(this.logger);
    this.reads = new StampedReads(this.logger);
    this.claims = new ClaimFiles({ dir: this.subnetsDir, leaseTTLMs: opts.leaseTTLMs, clock: this.clock, logger: this.logger });
  }

  unreadable(): UnreadableRecord[] {
    return this.damaged.list();
  }

  async acquire(req: AcquireRequest): Promise<NodeLease> {
    const name = checkNodeName(req.nodeName);
    const pools = requirePools(this.opts.network);
    await this.ensureDirs();
    await this.readAll();
    const now = this.clock.now();
    const claims = [...this.view.claims()];
    const own = claims.filter(([, c]) => !isUnreadable(c) && c.nodeName === name).map(([s]) => s);
    // An unreadable claim is held by someone: never free.
    const taken = claims
      .filter(([s, c]) => isUnreadable(c) || (c.nodeName !== name && this.live(s, c, now)))
      .map(([s]) => parseCidr(s));
    const subnets = await claimSubnets(pools, name, req.preferredSubnets ?? [], {
      own,
      taken,
      claim: (s) => this.claims.claim(s, name, () => this.claimNow(s)),
      drop: (s) => this.claims.drop(s, name),
    });
    const prev = this.view.record(name);
    const { acquiredAt, kept } = claimAge(prev, subnets, now);
    const lease: NodeLease = {
      nodeName: name,
      subnets,
      publicIP: req.publicIP,
      backend: req.backend,
      expiresAt: now + this.opts.leaseTTLMs,
      acquiredAt,
    };
    await this.writeRecord(lease);
    this.logger.info("Acquired lease", { node: name, subnets, kept });
    return lease;
  }

  async renew(lease: NodeLease): Promise<NodeLease> {
    // Only this node's own claim files decide; every file is read only to repair one of them.
    this.readFiles(lease.subnets.map(subnetFileName), []);
    for (const s of lease.subnets) {
      const claim = this.view.claim(s);
      // A claim being written in place is someone's write in progress: neither repaired over
      // nor taken for lost; the next renewal judges what it says.
      if (claim !== undefined && isUnreadable(claim) && claim.settling) continue;
      if (claim !== undefined && isUnreadable(claim) && (await this.repairOwnClaim(s, lease.nodeName))) continue;
      const owner = claim !== undefined && !isUnreadable(claim) ? claim.nodeName : undefined;
      if (owner !== lease.nodeName) {
        throw new LeaseLostError(lease.nodeName, owner ? `subnet ${s} is now claimed by "${owner}"` : `subnet ${s} is no longer claimed`);
      }
    }
    const renewed: NodeLease = { ...lease, expiresAt: this.clock.now() + this.opts.leaseTTLMs };
    await this.writeRecord(renewed);
    return renewed;
  }

  async list(): Promise<NodeLease[]> {
    await this.readAll();
    this.view.refresh(this.clock.now(), true);
    return this.view.leases();
  }

  /**
   * Reads the directory once, then follows it (local-watch.ts): an event re-reads only the
   * files it names, batched, and only the leases of the nodes those files concern are computed
   * again, so the cost is proportional to what changed and never more than one file is open.
   */
  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void {
    const dirty = { claims: new Set<string>(), records: new Set<string>() };
    let synced = false;
    /** The view's version last handed on: the view counts its changes, no lease is compared. */
    let emitted: number | null = null;
    const emitter = new LeaseSetEmitter({
      clock: this.clock,
      batchMs: WATCH_BATCH_MS,
      onChange,
      onError,
      changed: () => {
        if (this.view.version === emitted) return false;
        emitted = this.view.version;
        return true;
      },
      read: (now, whole) => {
        if (!synced) return undefined;
        this.readFiles(drain(dirty.claims), drain(dirty.records));
        this.view.refresh(now, whole);
        const { claims, nodes } = this.view.settling();
        follower.rereadSettling({ claims: claims.map(subnetFileName), records: nodes.map(recordFileName) });
        return this.view.leases();
      },
    });
    const follower = new DirectoryFollower({
      dirs: { claims: this.subnetsDir, records: this.nodesDir },
      rescanMs: this.opts.rescanMs,
      prepare: () => this.ensureDirs(),
      rescan: async () => {
        await this.readAll(true);
        synced = true;
        emitter.emit(true);
      },
      changed: (dir, name) => {
        dirty[dir].add(name);
        emitter.schedule();
      },
      onError: (err) => emitter.fail(err),
    });
    follower.start();
    return this.watches.add(() => {
      emitter.stop();
      follower.stop();
    });
  }

  async release(nodeName: string): Promise<void> {
    await this.readAll();
    const mine = [...this.view.claims()].filter(([, c]) => !isUnreadable(c) && c.nodeName === nodeName).map(([s]) => s);
    await Promise.all(mine.map((s) => this.claims.drop(s, nodeName)));
    await unlinkIfPresent(this.recordPath(nodeName));
  }

  async close(): Promise<void> {
    this.watches.stopAll();
  }

  /** A claim is live while its own expiry or its owner's record (listing the subnet) lies ahead. */
  private live(subnet: string, claim: Claim, now: number): boolean {
    if (claim.expiresAt > now) return true;
    const rec = this.view.record(claim.nodeName);
    return rec !== undefined && (rec.expiresAt ?? 0) > now && rec.subnets.includes(subnet);
  }

  /** The subnet's claim as every file says now: what a takeover decides on, under its lock. */
  private async claimNow(subnet: string): Promise<ClaimState> {
    await this.readAll();
    const current = this.view.claim(subnet);
    return { current, live: current !== undefined && !isUnreadable(current) && this.live(subnet, current, this.clock.now()) };
  }

  /**
   * Rewrites this node's own claim when its file is unreadable and no other live record lists
   * the subnet (a torn file must not cost the node its subnet); false when it cannot tell.
   */
  private async repairOwnClaim(subnet: string, nodeName: string): Promise<boolean> {
    await this.readAll();
    const now = this.clock.now();
    const others = [...this.view.records()].filter(
      (r) => r.nodeName !== nodeName && (r.expiresAt ?? 0) > now && r.subnets.includes(subnet),
    );
    if (others.length > 0) return false;
    await this.claims.rewrite(subnet, nodeName);
    return true;
  }

  /**
   * Every claim file and node record, into the view. `trustUnchanged` (the watch's full
   * rereads): a file whose stamp is the one it had when last read, and decisive then (see
   * stampDecisive), is not read again, so a reread of 10000 files costs 10000 lstat calls, and
   * the agent's first view right after acquire() costs no second read. Decisions that hand
   * out subnets (acquire, claim, renew) always read every file.
   */
  private async readAll(trustUnchanged = false): Promise<void> {
    await this.ensureDirs();
    const [claimNames, nodeNames] = await Promise.all([readdir(this.subnetsDir), readdir(this.nodesDir)]);
    // A file the view holds but the listing lacks is read too: gone, it leaves the view;
    // created since the listing (a watch event read it), it stays.
    const held = this.view.files();
    const listed = { claims: new Set(claimNames), nodes: new Set(nodeNames) };
    this.readFiles(
      [...claimNames, ...held.subnets.map(subnetFileName).filter((n) => !listed.claims.has(n))],
      [...nodeNames, ...held.nodes.map(recordFileName).filter((n) => !listed.nodes.has(n))],
      trustUnchanged,
    );
  }

  /**
   * (Re)reads the named files into the view; a file that is gone leaves it. Synchronous: a
   * store file is a few hundred bytes, read in microseconds, one open at a time; 10000 of
   * them through the thread pool cost ten times as much.
   */
  private readFiles(claimNames: readonly string[], nodeNames: readonly string[], trustUnchanged = false): void {
    for (const n of claimNames) {
      if (!isClaimFile(n)) continue;
      const entry = this.reads.read(join(this.subnetsDir, n), trustUnchanged, (value) => decodeClaim(value) ?? "not a claim (nodeName, expiresAt)");
      this.view.setClaim(subnetOfFileName(n), entry as ClaimEntry | null);
    }
    for (const n of nodeNames) {
      if (!isRecordFile(n)) continue;
      const node = nodeOfFileName(n);
      const entry = this.reads.read(join(this.nodesDir, n), trustUnchanged, (value) => {
        const lease = decodeLease(value);
        if (!lease) return "not a node record";
        return lease.nodeName === node ? lease : `names node "${lease.nodeName}", not "${node}"`;
      });
      this.view.setRecord(node, entry as RecordEntry | null);
    }
    const paths = (kind: "claim" | "node", name: string) => (kind === "claim" ? this.claims.path(name) : join(this.nodesDir, recordFileName(name)));
    this.damaged.replace(this.view.damaged().map((d) => ({ kind: d.kind, key: paths(d.kind, d.name), reason: d.reason })));
  }

  private async writeRecord(lease: NodeLease): Promise<void> {
    const tmp = await writeTempFile(this.nodesDir, JSON.stringify(lease, null, 2) + "\n");
    try {
      await rename(tmp, this.recordPath(lease.nodeName));
    } catch (err) {
      await unlinkIfPresent(tmp);
      throw storeError(`write node record of "${lease.nodeName}"`, err);
    }
  }

  private async ensureDirs(): Promise<void> {
    try {
      await mkdir(this.subnetsDir, { recursive: true, mode: 0o755 });
      await mkdir(this.nodesDir, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw storeError(`create ${this.opts.dir}`, err);
    }
  }

  private recordPath = (nodeName: string) => join(this.nodesDir, recordFileName(checkNodeName(nodeName)));
}

/** The set's members, and the set emptied. */
function drain(set: Set<string>): string[] {
  const items = [...set];
  set.clear();
  return items;
}
