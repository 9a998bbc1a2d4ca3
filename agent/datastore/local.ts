import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, watch, type FSWatcher, type Stats } from "node:fs";
import { link, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { writeTempFile } from "../../shared/fs.js";
import { basename, dirname, join } from "node:path";
import { parseCidr } from "../../shared/net/cidr.js";
import { nullLogger, type Logger } from "../../shared/log.js";
import { DatastoreError, LeaseLostError, errorMessage } from "../errors.js";
import { claimAge, checkNodeName, decodeLease, leaseSetFilter } from "../leases.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore, UnreadableRecord } from "../types.js";
import { claimSubnets, requirePools } from "./claim.js";
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
 * A file that cannot be read (torn, not JSON, a directory in its place) costs only itself: a
 * claim is then taken (never free: handing it out could put two nodes on one subnet), a node
 * record keeps the last good view of that peer. Both are logged once and listed by unreadable().
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

interface Claim {
  nodeName: string;
  expiresAt: number;
}

interface State {
  claims: Map<string, Claim>;
  /** Subnets whose claim file exists but cannot be read: held by someone, never free. */
  unreadableClaims: Set<string>;
  records: Map<string, NodeLease>;
}

/** File events within this window are read and reported together. */
const WATCH_BATCH_MS = 2;
const DEFAULT_RESCAN_MS = 60_000;

/** A takeover lock older than this was left by a taker that died mid-way. */
const STALE_LOCK_MS = 10_000;

export const subnetFileName = (subnet: string): string => subnet.replace("/", "_");
const subnetOfFileName = (name: string): string => name.replace("_", "/");

export class LocalStore implements SubnetStore {
  private readonly subnetsDir: string;
  private readonly nodesDir: string;
  private readonly now: () => number;
  private readonly logger: Logger;
  private readonly stops = new Set<() => void>();
  private readonly damaged: UnreadableRecords;
  /** The last node record that could be read, by file name: what a torn record falls back to. */
  private readonly lastGood = new Map<string, NodeLease>();
  /** What each file held when it was last read, under its stamp (see fileStamp). */
  private readonly readCache = new Map<string, { stamp: string; entry: Claim | NodeLease | Unreadable }>();

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
    const state = await this.readState();
    const now = this.now();
    const own = [...state.claims].filter(([, c]) => c.nodeName === name).map(([s]) => s);
    const taken = [
      ...[...state.claims].filter(([s, c]) => c.nodeName !== name && this.live(s, c, state, now)).map(([s]) => s),
      ...state.unreadableClaims,
    ].map((s) => parseCidr(s));
    const subnets = await claimSubnets(pools, name, req.preferredSubnets ?? [], {
      own,
      taken,
      claim: (s) => this.claim(s, name),
      drop: (s) => this.dropClaim(s, name),
    });
    const prev = state.records.get(name);
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
    const own: FileIndex = { claims: new Map(), records: new Map() };
    await this.readFiles(own, lease.subnets.map(subnetFileName), []);
    for (const s of lease.subnets) {
      const claim = own.claims.get(subnetFileName(s));
      if (claim !== undefined && "error" in claim && (await this.repairOwnClaim(s, lease.nodeName, await this.readState()))) continue;
      const owner = claim !== undefined && !("error" in claim) ? claim.nodeName : undefined;
      if (owner !== lease.nodeName) {
        throw new LeaseLostError(lease.nodeName, owner ? `subnet ${s} is now claimed by "${owner}"` : `subnet ${s} is no longer claimed`);
      }
    }
    const renewed: NodeLease = { ...lease, expiresAt: this.now() + this.opts.leaseTTLMs };
    await this.writeRecord(renewed);
    return renewed;
  }

  async list(): Promise<NodeLease[]> {
    return leasesOf(await this.readState(), this.now());
  }

  /**
   * Reads the directory once, then follows it with inotify (fs.watch on `subnets/` and
   * `nodes/`): an event re-reads only the files it names, batched, so the cost is
   * proportional to what changed and never more than one file is open. A
   * lapsing lease changes the set without any file event, so a timer recomputes it then. A
   * full reread every `rescanMs` (and after a watcher error) catches anything inotify missed.
   */
  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void {
    const changed = leaseSetFilter();
    let stopped = false;
    let index: FileIndex | null = null;
    const dirty = { subnets: new Set<string>(), nodes: new Set<string>() };
    let flushing = false;
    let flushTimer: NodeJS.Timeout | undefined;
    let expiryTimer: NodeJS.Timeout | undefined;
    let rescanTimer: NodeJS.Timeout | undefined;
    const watchers: FSWatcher[] = [];
    const fail = (err: unknown) => {
      if (!stopped) onError(err instanceof Error ? err : new Error(String(err)));
    };
    const emit = () => {
      if (stopped || !index) return;
      const now = this.now();
      const state = this.stateOf(index);
      const leases = leasesOf(state, now);
      clearTimeout(expiryTimer);
      const next = nextLapse(state, now);
      if (next !== undefined) expiryTimer = setTimeout(emit, Math.min(Math.max(0, next - now) + 1, 2 ** 31 - 1));
      if (changed(leases)) onChange(leases);
    };
    const flush = async () => {
      flushTimer = undefined;
      if (stopped || flushing || !index) return;
      flushing = true;
      try {
        const subnets = [...dirty.subnets];
        const nodes = [...dirty.nodes];
        dirty.subnets.clear();
        dirty.nodes.clear();
        await this.readFiles(index, subnets, nodes);
        emit();
      } catch (err) {
        fail(err);
      } finally {
        flushing = false;
        if (dirty.subnets.size + dirty.nodes.size > 0) scheduleFlush();
      }
    };
    const scheduleFlush = () => {
      if (!stopped && flushTimer === undefined) flushTimer = setTimeout(() => void flush(), WATCH_BATCH_MS);
    };
    const rescan = async () => {
      try {
        await this.ensureDirs();
        if (watchers.length === 0) startWatchers();
        const fresh = await this.readIndex(true);
        if (stopped) return;
        index = fresh;
        emit();
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
      for (const w of watchers.splice(0)) w.close();
      this.stops.delete(stop);
    };
    this.stops.add(stop);
    return stop;
  }

  async release(nodeName: string): Promise<void> {
    const state = await this.readState();
    const mine = [...state.claims].filter(([, c]) => c.nodeName === nodeName).map(([s]) => s);
    await Promise.all(mine.map((s) => this.dropClaim(s, nodeName)));
    await unlinkIfPresent(this.recordPath(nodeName));
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop();
  }

  private live(subnet: string, claim: Claim, state: State, now: number): boolean {
    if (claim.expiresAt > now) return true;
    const rec = state.records.get(claim.nodeName);
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
      const state = await this.readState();
      const current = state.claims.get(subnet);
      if (state.unreadableClaims.has(subnet)) return false;
      if (current && current.nodeName !== nodeName && this.live(subnet, current, state, this.now())) return false;
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
  private async repairOwnClaim(subnet: string, nodeName: string, state: State): Promise<boolean> {
    const now = this.now();
    const others = [...state.records.values()].filter(
      (r) => r.nodeName !== nodeName && (r.expiresAt ?? 0) > now && r.subnets.includes(subnet),
    );
    if (others.length > 0) return false;
    const tmp = await writeTempFile(this.subnetsDir, JSON.stringify({ nodeName, expiresAt: now + this.opts.leaseTTLMs } satisfies Claim));
    await rename(tmp, this.claimPath(subnet));
    this.logger.warn("Rewrote this node's unreadable subnet claim", { subnet, path: this.claimPath(subnet) });
    return true;
  }

  private async readState(): Promise<State> {
    return this.stateOf(await this.readIndex());
  }

  /**
   * Every claim file and node record. `trustUnchanged` (the watch's full rereads): a file whose
   * stamp is the one it had when last read is not read again, so a reread of 10000 files costs
   * 10000 lstat calls, and the agent's first view right after acquire() costs no second read.
   * Decisions that hand out subnets (acquire, claim, renew) always read every file.
   */
  private async readIndex(trustUnchanged = false): Promise<FileIndex> {
    await this.ensureDirs();
    const [claimNames, nodeNames] = await Promise.all([readdir(this.subnetsDir), readdir(this.nodesDir)]);
    const index: FileIndex = { claims: new Map(), records: new Map() };
    await this.readFiles(index, claimNames, nodeNames, trustUnchanged);
    if (this.readCache.size > index.claims.size + index.records.size) {
      for (const path of [...this.readCache.keys()]) {
        const [dir, name] = [dirname(path), basename(path)];
        if (!(dir === this.subnetsDir ? index.claims.has(name) : index.records.has(name))) this.readCache.delete(path);
      }
    }
    return index;
  }

  /**
   * (Re)reads the named files into the index; a file that is gone leaves it. Synchronous: a
   * store file is a few hundred bytes, read in microseconds, one open at a time; 10000 of
   * them through the thread pool cost ten times as much.
   */
  private async readFiles(index: FileIndex, claimNames: readonly string[], nodeNames: readonly string[], trustUnchanged = false): Promise<void> {
    for (const n of claimNames) {
      if (n.startsWith(".") || n.endsWith(".lock")) continue;
      const entry = this.readEntry(join(this.subnetsDir, n), trustUnchanged, (value) => decodeClaim(value) ?? { error: "not a claim (nodeName, expiresAt)" });
      if (entry === null) index.claims.delete(n);
      else index.claims.set(n, entry as Claim | Unreadable);
    }
    for (const n of nodeNames) {
      if (!n.endsWith(".json") || n.startsWith(".")) continue;
      const entry = this.readEntry(join(this.nodesDir, n), trustUnchanged, (value) => decodeLease(value) ?? { error: "not a node record" });
      if (entry === null) {
        index.records.delete(n);
        this.lastGood.delete(n);
        continue;
      }
      if (!("error" in entry)) this.lastGood.set(n, entry as NodeLease);
      index.records.set(n, entry as NodeLease | Unreadable);
    }
  }

  /**
   * One file, decoded; null when it is gone. The same object as last time while its stamp is
   * unchanged and `trustUnchanged` is set (what the store hands out keeps its identity).
   */
  private readEntry(path: string, trustUnchanged: boolean, decode: (value: unknown) => Claim | NodeLease | Unreadable): Claim | NodeLease | Unreadable | null {
    const cached = this.readCache.get(path);
    if (trustUnchanged && cached !== undefined) {
      const stamp = fileStamp(path);
      if (stamp === cached.stamp) return cached.entry;
    }
    const read = readJson(path);
    if (read === null) {
      this.readCache.delete(path);
      return null;
    }
    const fresh = "error" in read ? { error: read.error } : decode(read.value);
    // The same content read again (acquire's reads): keep handing out the same object.
    const entry = cached !== undefined && JSON.stringify(cached.entry) === JSON.stringify(fresh) ? cached.entry : fresh;
    this.readCache.set(path, { stamp: read.stamp, entry });
    return entry;
  }

  /** The store as claims and records, from the files; unreadable ones noted (and logged once). */
  private stateOf(index: FileIndex): State {
    const claims = new Map<string, Claim>();
    const unreadableClaims = new Set<string>();
    const records = new Map<string, NodeLease>();
    const damaged: UnreadableRecord[] = [];
    for (const [n, c] of index.claims) {
      if ("error" in c) {
        unreadableClaims.add(subnetOfFileName(n));
        damaged.push({ kind: "claim", key: join(this.subnetsDir, n), reason: c.error });
      } else claims.set(subnetOfFileName(n), c);
    }
    for (const [n, r] of index.records) {
      if ("error" in r) {
        damaged.push({ kind: "node", key: join(this.nodesDir, n), reason: r.error });
        const last = this.lastGood.get(n);
        if (last) records.set(last.nodeName, last);
      } else records.set(r.nodeName, r);
    }
    for (const n of [...this.lastGood.keys()]) if (!index.records.has(n)) this.lastGood.delete(n);
    this.damaged.replace(damaged);
    return { claims, unreadableClaims, records };
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

type Unreadable = { error: string };

/** What the store's files say, by file name. */
interface FileIndex {
  claims: Map<string, Claim | Unreadable>;
  records: Map<string, NodeLease | Unreadable>;
}

/** The live leases: records not lapsed, each limited to the subnets whose claims name it. */
function leasesOf(state: State, now: number): NodeLease[] {
  const leases: NodeLease[] = [];
  for (const rec of state.records.values()) {
    if ((rec.expiresAt ?? 0) <= now) continue;
    // An unreadable claim cannot disprove the record: the peer keeps the subnet it lists.
    const subnets = rec.subnets.filter((s) => state.claims.get(s)?.nodeName === rec.nodeName || state.unreadableClaims.has(s));
    // The record itself when every subnet it lists is its own: the same object while its file
    // is unchanged, so the lease's identity is computed once (leases.ts).
    if (subnets.length === rec.subnets.length) leases.push(rec);
    else if (subnets.length > 0) leases.push({ ...rec, subnets });
  }
  return leases;
}

/** The next moment a live record lapses (the set changes without a file event), if any. */
function nextLapse(state: State, now: number): number | undefined {
  let next: number | undefined;
  for (const rec of state.records.values()) {
    const at = rec.expiresAt ?? 0;
    if (at > now && (next === undefined || at < next)) next = at;
  }
  return next;
}

function decodeClaim(raw: unknown): Claim | null {
  const c = raw as Partial<Claim> | null;
  if (typeof c !== "object" || c === null || typeof c.nodeName !== "string" || typeof c.expiresAt !== "number") return null;
  return { nodeName: c.nodeName, expiresAt: c.expiresAt };
}

/**
 * What tells a file's version apart: every writer renames a new file into place (a new inode)
 * and the times carry nanoseconds. null when the file does not exist.
 */
function fileStamp(path: string): string | null {
  const st = lstatSync(path, { throwIfNoEntry: false });
  return st ? stampOf(st) : null;
}
const stampOf = (st: Stats): string => `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.mode}`;

/**
 * A store file's JSON; null when it does not exist, `{error}` when it cannot be read as JSON
 * (torn, a directory, a FIFO: opened non-blocking and checked before reading, never followed
 * through a symlink).
 */
function readJson(path: string): ({ value: unknown } | { error: string }) & { stamp: string } | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP") return { error: "is a symlink", stamp: fileStamp(path) ?? "" };
    throw storeError(`read ${path}`, err);
  }
  try {
    const st = fstatSync(fd);
    const stamp = stampOf(st);
    if (!st.isFile()) return { error: "not a regular file", stamp };
    const text = readFileSync(fd, "utf8");
    try {
      return { value: JSON.parse(text), stamp };
    } catch {
      return { error: text.length === 0 ? "empty" : "not valid JSON (truncated?)", stamp };
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
