import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, watch, type FSWatcher, type Stats } from "node:fs";
import { link, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { writeTempFile } from "../../shared/fs.js";
import { join } from "node:path";
import { parseCidr } from "../../shared/net/cidr.js";
import { nullLogger, type Logger } from "../../shared/log.js";
import { DatastoreError, LeaseLostError, errorMessage } from "../errors.js";
import { claimAge, checkNodeName, decodeLease } from "../leases.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore, UnreadableRecord } from "../types.js";
import { claimSubnets, requirePools } from "./claim.js";
import {
  LeaseView, SETTLE_MS, isUnreadable, mayBeSettling, stampDecisive, type Claim, type ClaimEntry, type RecordEntry,
} from "./local-view.js";
import { UnreadableRecords } from "./unreadable.js";

/**
 * The `local` datastore: a directory every agent on this host shares (the single-host demo
 * and the tests run each simulated node as its own agent against one directory).
 *
 *   <dir>/subnets/<network>_<prefix>   a claim: {"nodeName", "expiresAt"}; created exclusively
 *                                      (link(2) of a complete temporary file fails with EEXIST
 *                                      like O_EXCL, and no reader ever sees it half-written)
 *   <dir>/subnets/<...>.lock           held only while a lapsed claim is taken over
 *   <dir>/nodes/<node>.json            the node's lease (subnets, public IP, backend data,
 *                                      expiresAt), written atomically on acquire and renew
 *
 * A claim is live while its own expiresAt (a grace for writing the node record) or its
 * owner's record expiry lies ahead and that record lists the subnet. A lapsed claim is free:
 * a taker creates the lock exclusively, re-checks that the claim is still lapsed, then
 * renames its own claim over it. The previous owner finds the claim no longer names it on
 * its next renewal.
 *
 * A file that cannot be read (torn, not JSON, a directory in its place, a record naming another
 * node than its file) costs only itself: a claim is then taken (never free: handing it out
 * could put two nodes on one subnet), a node record keeps the last good view of that peer.
 * Both are logged once and listed by unreadable().
 *
 * Any writer is followed, not only one that renames complete files into place as agents do: a
 * file may be written in place (a reader can open it between the writer's open and its write,
 * and find it empty or torn), and a peer's claim and record may come in either order. A file
 * that does not decode and was modified within SETTLE_MS is a write in progress, not damage:
 * it counts as unreadable for every decision but is not reported, and the watch reads it
 * again soon (its writer's next write fires an event too, but an event can be lost: a full
 * inotify queue, a watch being restarted), until it decodes or has stayed torn past SETTLE_MS.
 * A file is skipped on an unchanged stamp only when the stamp can tell a later write apart
 * (see stampDecisive): an in-place rewrite of the same size within one clock tick keeps it.
 */

export interface LocalStoreOptions {
  dir: string;
  network?: NetworkConfig;
  leaseTTLMs: number;
  /** How often watch() rereads the whole directory, besides following it with inotify. */
  rescanMs?: number;
  now?: () => number;
  logger?: Logger;
}

/** File events within this window are read and reported together. */
const WATCH_BATCH_MS = 2;
const DEFAULT_RESCAN_MS = 60_000;
/** The first re-read of a file being written; each next one waits twice as long, until SETTLE_MS has passed. */
const SETTLE_RETRY_MS = 5;

/** A takeover lock older than this was left by a taker that died mid-way. */
const STALE_LOCK_MS = 10_000;

export const subnetFileName = (subnet: string): string => subnet.replace("/", "_");
const subnetOfFileName = (name: string): string => name.replace("_", "/");
const RECORD_SUFFIX = ".json";
const nodeOfFileName = (name: string): string => name.slice(0, -RECORD_SUFFIX.length);

export class LocalStore implements SubnetStore {
  private readonly subnetsDir: string;
  private readonly nodesDir: string;
  private readonly now: () => number;
  private readonly logger: Logger;
  private readonly stops = new Set<() => void>();
  private readonly damaged: UnreadableRecords;
  /** What the files said when last read: every read (acquire's, a watch event's) patches it. */
  private readonly view = new LeaseView();
  /** What each file held when it was last read, under its stamp (see fileStamp) and whether that stamp is decisive. */
  private readonly readCache = new Map<string, { stamp: string; decisive: boolean; entry: ClaimEntry | RecordEntry }>();

  constructor(private readonly opts: LocalStoreOptions) {
    this.subnetsDir = join(opts.dir, "subnets");
    this.nodesDir = join(opts.dir, "nodes");
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger ?? nullLogger;
    this.damaged = new UnreadableRecords(this.logger);
  }

  unreadable(): UnreadableRecord[] {
    return this.damaged.list();
  }

  async acquire(req: AcquireRequest): Promise<NodeLease> {
    const name = checkNodeName(req.nodeName);
    const pools = requirePools(this.opts.network);
    await this.ensureDirs();
    await this.readAll();
    const now = this.now();
    const claims = [...this.view.claims()];
    const own = claims.filter(([, c]) => !isUnreadable(c) && c.nodeName === name).map(([s]) => s);
    // An unreadable claim is held by someone: never free.
    const taken = claims
      .filter(([s, c]) => isUnreadable(c) || (c.nodeName !== name && this.live(s, c, now)))
      .map(([s]) => parseCidr(s));
    const subnets = await claimSubnets(pools, name, req.preferredSubnets ?? [], {
      own,
      taken,
      claim: (s) => this.claim(s, name),
      drop: (s) => this.dropClaim(s, name),
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
    const renewed: NodeLease = { ...lease, expiresAt: this.now() + this.opts.leaseTTLMs };
    await this.writeRecord(renewed);
    return renewed;
  }

  async list(): Promise<NodeLease[]> {
    await this.readAll();
    this.view.refresh(this.now(), true);
    return this.view.leases();
  }

  /**
   * Reads the directory once, then follows it with inotify (fs.watch on `subnets/` and
   * `nodes/`): an event re-reads only the files it names, batched, and only the leases of the
   * nodes those files concern are computed again, so the cost is proportional to what changed
   * and never more than one file is open. A file being written is read again on a timer too
   * (see the top of this file). A lapsing lease changes the set without any file event, so a
   * timer recomputes it then. A full reread every `rescanMs` (and after a watcher error)
   * catches anything inotify missed.
   */
  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void {
    let stopped = false;
    let started = false;
    /** The view's version last handed to onChange. */
    let emitted: number | null = null;
    const dirty = { subnets: new Set<string>(), nodes: new Set<string>() };
    let flushTimer: NodeJS.Timeout | undefined;
    let expiryTimer: NodeJS.Timeout | undefined;
    let rescanTimer: NodeJS.Timeout | undefined;
    let settleTimer: NodeJS.Timeout | undefined;
    let settleDelay = 0;
    const watchers: FSWatcher[] = [];
    const fail = (err: unknown) => {
      if (!stopped) onError(err instanceof Error ? err : new Error(String(err)));
    };
    const emit = (all = false) => {
      if (stopped || !started) return;
      const now = this.now();
      this.view.refresh(now, all);
      clearTimeout(expiryTimer);
      const next = this.view.nextLapse(now);
      if (next !== undefined) expiryTimer = setTimeout(() => emit(true), Math.min(Math.max(0, next - now) + 1, 2 ** 31 - 1));
      if (this.view.version === emitted) return;
      emitted = this.view.version;
      onChange(this.view.leases());
    };
    /** Reads the files being written again after a while, in case no event follows their last write. */
    const scheduleSettleRetry = () => {
      const { claims, nodes } = this.view.settling();
      if (claims.length + nodes.length === 0) {
        clearTimeout(settleTimer);
        settleTimer = undefined;
        settleDelay = 0;
        return;
      }
      if (stopped || settleTimer !== undefined) return;
      settleDelay = settleDelay === 0 ? SETTLE_RETRY_MS : Math.min(settleDelay * 2, SETTLE_MS);
      settleTimer = setTimeout(() => {
        settleTimer = undefined;
        for (const s of claims) dirty.subnets.add(subnetFileName(s));
        for (const n of nodes) dirty.nodes.add(`${n}${RECORD_SUFFIX}`);
        scheduleFlush();
      }, settleDelay);
    };
    const flush = () => {
      flushTimer = undefined;
      if (stopped || !started) return;
      try {
        const subnets = [...dirty.subnets];
        const nodes = [...dirty.nodes];
        dirty.subnets.clear();
        dirty.nodes.clear();
        this.readFiles(subnets, nodes);
        emit();
        scheduleSettleRetry();
      } catch (err) {
        fail(err);
      }
    };
    const scheduleFlush = () => {
      if (!stopped && flushTimer === undefined) flushTimer = setTimeout(flush, WATCH_BATCH_MS);
    };
    const rescan = async () => {
      try {
        await this.ensureDirs();
        if (watchers.length === 0) startWatchers();
        await this.readAll(true);
        if (stopped) return;
        started = true;
        emit(true);
        scheduleSettleRetry();
        // Events that came while the files were listed and read name files the read may have missed.
        if (dirty.subnets.size + dirty.nodes.size > 0) scheduleFlush();
      } catch (err) {
        fail(err);
      }
      if (!stopped) rescanTimer = setTimeout(() => void rescan(), this.opts.rescanMs ?? DEFAULT_RESCAN_MS);
    };
    const startWatchers = () => {
      for (const [dir, set] of [[this.subnetsDir, dirty.subnets], [this.nodesDir, dirty.nodes]] as const) {
        try {
          const w = watch(dir, { persistent: false }, (_event, name) => {
            if (name === null) return;
            set.add(name.toString());
            scheduleFlush();
          });
          w.on("error", (err) => {
            // The directory went away or the watch broke: start over on the next rescan.
            fail(err);
            for (const x of watchers.splice(0)) x.close();
          });
          watchers.push(w);
        } catch (err) {
          fail(err);
        }
      }
    };
    void rescan();
    const stop = () => {
      stopped = true;
      clearTimeout(flushTimer);
      clearTimeout(expiryTimer);
      clearTimeout(rescanTimer);
      clearTimeout(settleTimer);
      for (const w of watchers.splice(0)) w.close();
      this.stops.delete(stop);
    };
    this.stops.add(stop);
    return stop;
  }

  async release(nodeName: string): Promise<void> {
    await this.readAll();
    const mine = [...this.view.claims()].filter(([, c]) => !isUnreadable(c) && c.nodeName === nodeName).map(([s]) => s);
    await Promise.all(mine.map((s) => this.dropClaim(s, nodeName)));
    await unlinkIfPresent(this.recordPath(nodeName));
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop();
  }

  /** A claim is live while its own expiry or its owner's record (listing the subnet) lies ahead. */
  private live(subnet: string, claim: Claim, now: number): boolean {
    if (claim.expiresAt > now) return true;
    const rec = this.view.record(claim.nodeName);
    return rec !== undefined && (rec.expiresAt ?? 0) > now && rec.subnets.includes(subnet);
  }

  /** Makes `subnet` this node's: a fresh exclusive claim, or a locked takeover of a lapsed one. */
  private async claim(subnet: string, nodeName: string): Promise<boolean> {
    const path = this.claimPath(subnet);
    const content = () => JSON.stringify({ nodeName, expiresAt: this.now() + this.opts.leaseTTLMs } satisfies Claim);
    const tmp = await writeTempFile(this.subnetsDir, content());
    try {
      await link(tmp, path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw storeError(`claim subnet ${subnet}`, err);
    } finally {
      await unlinkIfPresent(tmp);
    }
    return this.withLock(path, async () => {
      // Re-read under the lock: the claim may have been renewed or taken since we looked.
      await this.readAll();
      const current = this.view.claim(subnet);
      if (current && isUnreadable(current)) return false;
      if (current && current.nodeName !== nodeName && this.live(subnet, current, this.now())) return false;
      const replacement = await writeTempFile(this.subnetsDir, content());
      await rename(replacement, path);
      if (current && current.nodeName !== nodeName) {
        this.logger.info("Took over lapsed subnet claim", { subnet, from: current.nodeName, node: nodeName });
      }
      return true;
    });
  }

  private async withLock(path: string, fn: () => Promise<boolean>): Promise<boolean> {
    const lock = `${path}.lock`;
    let handle;
    try {
      handle = await open(lock, "wx", 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw storeError(`lock ${lock}`, err);
      const age = await stat(lock).then((s) => this.now() - s.mtimeMs, () => 0);
      if (age > STALE_LOCK_MS) await unlinkIfPresent(lock);
      return false; // someone else is taking it over: treat as taken, pick another
    }
    await handle.close();
    try {
      return await fn();
    } finally {
      await unlinkIfPresent(lock);
    }
  }

  private async dropClaim(subnet: string, nodeName: string): Promise<void> {
    const path = this.claimPath(subnet);
    const read = readJson(path);
    if (read && "value" in read && decodeClaim(read.value)?.nodeName === nodeName) await unlinkIfPresent(path);
  }

  /**
   * Rewrites this node's own claim when its file is unreadable and no other live record lists
   * the subnet (a torn file must not cost the node its subnet); false when it cannot tell.
   */
  private async repairOwnClaim(subnet: string, nodeName: string): Promise<boolean> {
    await this.readAll();
    const now = this.now();
    const others = [...this.view.records()].filter(
      (r) => r.nodeName !== nodeName && (r.expiresAt ?? 0) > now && r.subnets.includes(subnet),
    );
    if (others.length > 0) return false;
    const tmp = await writeTempFile(this.subnetsDir, JSON.stringify({ nodeName, expiresAt: now + this.opts.leaseTTLMs } satisfies Claim));
    await rename(tmp, this.claimPath(subnet));
    this.logger.warn("Rewrote this node's unreadable subnet claim", { subnet, path: this.claimPath(subnet) });
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
      [...nodeNames, ...held.nodes.map((n) => `${n}${RECORD_SUFFIX}`).filter((n) => !listed.nodes.has(n))],
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
      const entry = this.readEntry(join(this.subnetsDir, n), trustUnchanged, (value) => decodeClaim(value) ?? "not a claim (nodeName, expiresAt)");
      this.view.setClaim(subnetOfFileName(n), entry as ClaimEntry | null);
    }
    for (const n of nodeNames) {
      if (!isRecordFile(n)) continue;
      const node = nodeOfFileName(n);
      const entry = this.readEntry(join(this.nodesDir, n), trustUnchanged, (value) => {
        const lease = decodeLease(value);
        if (!lease) return "not a node record";
        return lease.nodeName === node ? lease : `names node "${lease.nodeName}", not "${node}"`;
      });
      this.view.setRecord(node, entry as RecordEntry | null);
    }
    const paths = (kind: "claim" | "node", name: string) => (kind === "claim" ? this.claimPath(name) : join(this.nodesDir, `${name}${RECORD_SUFFIX}`));
    this.damaged.replace(this.view.damaged().map((d) => ({ kind: d.kind, key: paths(d.kind, d.name), reason: d.reason })));
  }

  /**
   * One file, decoded; null when it is gone. The same object as last time while its stamp is
   * unchanged and decisive and `trustUnchanged` is set, or its content is the same (what the
   * store hands out keeps its identity). A file that does not decode is settling while it was
   * modified within SETTLE_MS (a writer may be mid-way).
   */
  private readEntry(path: string, trustUnchanged: boolean, decode: (value: unknown) => Claim | NodeLease | string): ClaimEntry | RecordEntry | null {
    const cached = this.readCache.get(path);
    if (trustUnchanged && cached?.decisive && fileStamp(path) === cached.stamp) return cached.entry;
    // File times are wall-clock times, whatever clock the leases are judged by.
    const readAt = Date.now();
    const read = readJson(path);
    if (read === null) {
      this.readCache.delete(path);
      return null;
    }
    const decoded = "error" in read ? read.error : decode(read.value);
    const fresh: ClaimEntry | RecordEntry =
      typeof decoded === "string" ? { error: decoded, settling: read.regular && mayBeSettling(read.mtimeMs, readAt) } : decoded;
    // The same content read again (acquire's reads): keep handing out the same object.
    const entry = cached !== undefined && JSON.stringify(cached.entry) === JSON.stringify(fresh) ? cached.entry : fresh;
    this.readCache.set(path, { stamp: read.stamp, decisive: stampDecisive(read.ctimeMs, readAt), entry });
    if (entry === fresh && isUnreadable(entry) && entry.settling) this.logger.debug("Store file is being written; reading it again", { path, reason: entry.error });
    return entry;
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

  private claimPath = (subnet: string) => join(this.subnetsDir, subnetFileName(subnet));
  private recordPath = (nodeName: string) => join(this.nodesDir, `${checkNodeName(nodeName)}.json`);
}

const isClaimFile = (name: string): boolean => !name.startsWith(".") && !name.endsWith(".lock");
const isRecordFile = (name: string): boolean => !name.startsWith(".") && name.endsWith(RECORD_SUFFIX);

function decodeClaim(raw: unknown): Claim | null {
  const c = raw as Partial<Claim> | null;
  if (typeof c !== "object" || c === null || typeof c.nodeName !== "string" || typeof c.expiresAt !== "number") return null;
  return { nodeName: c.nodeName, expiresAt: c.expiresAt };
}

/**
 * What tells a file's version apart: a file renamed into place is a new inode, one written in
 * place has new times (within the limits stampDecisive knows). null when the file does not exist.
 */
function fileStamp(path: string): string | null {
  const st = lstatSync(path, { throwIfNoEntry: false });
  return st ? stampOf(st) : null;
}
const stampOf = (st: Stats): string => `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.mode}`;

/** What a read of a store file found, with the file's stamp and times as it was read. */
type FileRead = ({ value: unknown } | { error: string }) & { stamp: string; regular: boolean; mtimeMs: number; ctimeMs: number };

/**
 * A store file's JSON; null when it does not exist, `{error}` when it cannot be read as JSON
 * (torn, a directory, a FIFO: opened non-blocking and checked before reading, never followed
 * through a symlink).
 */
function readJson(path: string): FileRead | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP") {
      const st = lstatSync(path, { throwIfNoEntry: false });
      return st ? { error: "is a symlink", stamp: stampOf(st), regular: false, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs } : null;
    }
    throw storeError(`read ${path}`, err);
  }
  try {
    const st = fstatSync(fd);
    const file = { stamp: stampOf(st), regular: st.isFile(), mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
    if (!file.regular) return { error: "not a regular file", ...file };
    const text = readFileSync(fd, "utf8");
    try {
      return { value: JSON.parse(text), ...file };
    } catch {
      return { error: text.length === 0 ? "empty" : "not valid JSON (truncated?)", ...file };
    }
  } finally {
    closeSync(fd);
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw storeError(`remove ${path}`, err);
  }
}

const storeError = (op: string, err: unknown) => new DatastoreError(op, errorMessage(err));
