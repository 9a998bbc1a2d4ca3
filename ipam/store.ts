import { closeSync, existsSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from "../shared/fs-sync.js";
import { join } from "node:path";
import { CniError, Code } from "../shared/cni/errors.js";
import { digest, hex } from "../shared/digest.js";
import {
  ABANDONED_TEMPORARY_MS, NotRegularFile, readRegularFile, isTemporaryName, removeOldTemporaries, writeFileAtomic, writeRegularFile,
} from "../shared/fs.js";
import { nullLogger, type Logger } from "../shared/log.js";
import { formatIp, parseIp } from "../shared/net/cidr.js";

/**
 * Reservations on disk in host-local's layout, so a node moves between host-local and
 * twill-ipam without losing one:
 *
 *   <dataDir>/<network>/<ip>                         "containerID\r\nifname", created O_EXCL
 *   <dataDir>/<network>/last_reserved_ip.<set>       the round-robin position of range set <set>
 *   <dataDir>/<network>/.twill/by-id/<id>@<ifname>   twill-ipam's index: the attachment's addresses,
 *                                                    its boot, and its pod when the runtime names it
 *
 * An address is taken by creating its file with O_EXCL: the kernel lets exactly one process
 * win, so concurrent ADDs (of twill-ipam and of host-local alike) never share an address.
 * host-local also holds an flock on `lock` while it allocates; Node and Bun offer no flock, and
 * none is needed for uniqueness. Without it two ADDs may read the same last_reserved_ip and try
 * the same next address: one create fails with EEXIST and that ADD tries the one after. Either
 * may write last_reserved_ip last; it is only where the next walk starts, so a lost update
 * costs at most a skipped or revisited address, never a shared one.
 *
 * Releasing is a read (whose is it?) then an unlink, and those two are not atomic: if another
 * releaser unlinks the file between them and an ADD creates it anew for its own container, the
 * unlink removes that ADD's reservation and the address is handed out twice. So every release
 * holds the store's lock (`.twill.lock`, see {@link StoreLock}) from the read to the unlink.
 * Reserving needs no lock: O_EXCL never replaces a file, so only another unlink can change
 * what a locked releaser read.
 *
 * host-local finds an attachment's addresses by reading every file (O(n) per DEL and CHECK).
 * The index makes that one read; the walk remains for attachments without an entry
 * (reservations host-local made, or an ADD that died before writing its entry). Index files
 * hold JSON, never "id\r\nifname": host-local's DEL walks subdirectories too and deletes every
 * file whose content is the attachment's.
 *
 * Anyone with write access to the directory can plant things in it. twill never follows a
 * symlink where it reads or writes a file, never opens a FIFO in a way that waits, and takes
 * an entry that is not a regular file for no reservation (it skips it and logs the path).
 * `.twill` and `.twill/by-id` must be real directories: ADD refuses to write the index through
 * a symlink, and DEL and GC then do without the index.
 */

export interface Owner {
  containerID: string;
  /** Empty when an old host-local wrote the container ID alone. */
  ifname: string;
}

export interface Reservation extends Owner {
  ip: string;
}

/** The Kubernetes pod an attachment is for, as kubelet names it in CNI_ARGS. */
export interface PodRef {
  namespace: string;
  name: string;
  /** Empty when the runtime passed no K8S_POD_UID (kubelet before 1.19, other runtimes). */
  uid: string;
}

export const podText = (p: PodRef): string => `${p.namespace}/${p.name}`;

export interface IndexEntry extends Owner {
  ips: string[];
  /** Set when the runtime said which pod the attachment is for; lets the node agent find leaks. */
  pod?: PodRef;
  /**
   * The `type` of the network config that called the IPAM (`twill` when the twill plugin made
   * the attachment, whose node-side veth is named from the container ID and ifname).
   */
  plugin?: string;
  /** The kernel boot the reservation was made in (/proc/sys/kernel/random/boot_id). */
  bootId: string;
  created: string;
}

const INDEX_DIR = join(".twill", "by-id");
const LINE_BREAK = "\r\n";
/** host-local's flock file: its presence means host-local has used the directory. */
const HOST_LOCAL_LOCK = "lock";

/**
 * An ADD writes its reservation's owner and index entry within milliseconds of creating the
 * file; one that has not for this long was killed (the runtime cancels a CNI ADD after its
 * runtime-request-timeout, 2 minutes by default). Younger, an empty file may be a live ADD's.
 */
export const TORN_ADD_GRACE_MS = 5 * 60_000;

/** A store file whose name is not the canonical text of an address, skipped by every reader. */
export interface SkippedName {
  name: string;
  why: string;
}

export class Store {
  private indexWarned = false;

  private readonly lock: StoreLock;
  private readonly warnedNames = new Set<string>();

  constructor(
    readonly dir: string,
    private readonly log: Logger = nullLogger,
    lockWaitMs = LOCK_WAIT_MS,
  ) {
    this.lock = new StoreLock(join(dir, LOCK_NAME), lockWaitMs);
  }

  /** Creates the store and index directories, readable by root only; the index ones must be real directories. */
  ensure(): void {
    // Made by an earlier ADD, as they mostly are: two lstats, no mkdir.
    const [twill, index] = this.indexDirs();
    if (isRealDirectory(twill) && isRealDirectory(index)) return;
    fsOp("create the IPAM store directory", this.dir, () => mkdirSync(this.dir, { recursive: true, mode: 0o700 }));
    for (const dir of [twill, index]) {
      try {
        mkdirSync(dir, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw ioError("create the IPAM index directory", dir, err);
        const problem = notADirectory(dir);
        if (problem) throw new CniError(Code.IoFailure, `IPAM index ${dir} ${problem}: refusing to follow it`);
      }
    }
  }

  /** Takes `ip` for the attachment by exclusive create; false when someone holds it. */
  reserve(ip: string, owner: Owner, retried = false): boolean {
    const path = join(this.dir, ip);
    let fd: number;
    try {
      fd = openSync(path, "wx", 0o600);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return false;
      // The first ADD of a network makes its directory; the others skip the mkdir.
      if (code === "ENOENT" && !retried) {
        this.ensure();
        return this.reserve(ip, owner, true);
      }
      throw ioError(`reserve ${ip}`, path, err);
    }
    try {
      writeSync(fd, owner.containerID + LINE_BREAK + owner.ifname);
    } finally {
      closeSync(fd);
    }
    return true;
  }

  /** Frees `ip` if (and only if) the attachment holds it, under the store's lock. */
  release(ip: string, owner: Owner): boolean {
    return this.lock.hold(() => {
      const held = this.owner(ip);
      if (!held || !sameAttachment(held, owner)) return false;
      return unlinkIfExists(join(this.dir, ip));
    });
  }

  /**
   * Frees `ip` if its file is still empty and was created at or before `createdBefore` (Unix
   * ms): what an ADD killed between creating the file and writing its owner leaves. The age is
   * checked again under the lock, so a newer empty file (a live ADD's) is never taken.
   */
  releaseEmpty(ip: string, createdBefore: number): boolean {
    return this.lock.hold(() => {
      const held = this.owner(ip);
      const at = this.reservedAt(ip);
      if (!held || held.containerID !== "" || at === undefined || at > createdBefore) return false;
      return unlinkIfExists(join(this.dir, ip));
    });
  }

  /** Who holds `ip`; undefined when nobody does, or when its entry is not a regular file. */
  owner(ip: string): Owner | undefined {
    const text = this.readEntry(join(this.dir, ip));
    return text === undefined ? undefined : parseOwner(text);
  }

  lastReserved(set: number): string | undefined {
    return this.readEntry(join(this.dir, `last_reserved_ip.${set}`))?.trim() || undefined;
  }

  /**
   * Written in place as host-local does: a torn read only moves where the next walk starts.
   * A symlink in its place is replaced, never written through; anything else is left alone.
   */
  setLastReserved(set: number, ip: string): void {
    const path = join(this.dir, `last_reserved_ip.${set}`);
    for (let attempt = 0; ; attempt++) {
      try {
        return writeRegularFile(path, ip);
      } catch (err) {
        if (!(err instanceof NotRegularFile)) throw ioError("write", path, err);
        this.skipped(path);
        if (attempt > 0 || !isSymlink(path)) return;
        unlinkIfExists(path);
      }
    }
  }

  /** The reserved addresses, by file name alone (no reads); names that are no canonical address are logged and skipped. */
  reservedAddresses(): string[] {
    return this.reservationNames().addresses;
  }

  /**
   * The reservation files' names: canonical addresses, and names shaped like an address that
   * are none or not in its canonical text (`10.244.1.05`, `FD00::2`), which neither twill-ipam
   * nor host-local writes. Those are skipped (never released, never counted as taken), so one
   * planted or hand-made file costs nothing but a log line.
   */
  reservationNames(): { addresses: string[]; skipped: SkippedName[] } {
    const addresses: string[] = [];
    const skipped: SkippedName[] = [];
    for (const name of readdirIfExists(this.dir)) {
      if (!isIpName(name)) continue;
      const why = nonCanonicalReason(name);
      if (why === null) {
        addresses.push(name);
        continue;
      }
      skipped.push({ name, why });
      if (!this.warnedNames.has(name)) this.log.warn("Skipped a store file whose name is no canonical address", { path: join(this.dir, name), why });
      this.warnedNames.add(name);
    }
    return { addresses, skipped };
  }

  /**
   * Removes temporaries of killed writers (index entries, the lock's) older than `olderThanMs`
   * from the store and index directories. Returns their paths.
   */
  removeOldTemporaries(olderThanMs = ABANDONED_TEMPORARY_MS, now = Date.now()): string[] {
    const dirs = [this.dir, ...(this.indexUsable() ? [join(this.dir, INDEX_DIR)] : [])];
    return dirs.flatMap((dir) => fsOp("remove old temporaries", dir, () => removeOldTemporaries(dir, olderThanMs, now)).map((name) => join(dir, name)));
  }

  /** When the reservation file was last written (Unix ms): its creation, as nothing rewrites it. Never follows a symlink. */
  reservedAt(ip: string): number | undefined {
    try {
      return Math.floor(lstatSync(join(this.dir, ip)).mtimeMs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw ioError("stat", join(this.dir, ip), err);
    }
  }

  /**
   * Frees one address if the attachment still holds it, and takes it out of the attachment's
   * index entry (dropped when it held nothing else): what a leak release does, address by address.
   */
  releaseAddress(ip: string, owner: Owner): boolean {
    if (!this.release(ip, owner)) return false;
    const entry = this.indexEntry(owner);
    if (entry) {
      const rest = entry.ips.filter((x) => x !== ip);
      if (rest.length === 0) this.dropIndex(owner);
      else this.writeIndex({ ...entry, ips: rest });
    }
    return true;
  }

  /** Every reservation with its owner, whoever made it: a walk of the directory. */
  list(): Reservation[] {
    return this.reservedAddresses().flatMap((ip) => {
      const owner = this.owner(ip);
      return owner ? [{ ip, ...owner }] : [];
    });
  }

  /** Whether host-local has worked in this directory (and may have made reservations the index lacks). */
  usedByHostLocal(): boolean {
    return existsSync(join(this.dir, HOST_LOCAL_LOCK));
  }

  /**
   * The addresses the attachment holds, checked against the reservation files. From its index
   * entry when it has one; otherwise by walking the directory, unless `walk` is "if-host-local"
   * and host-local never used the directory (then every reservation has an entry).
   */
  addressesOf(owner: Owner, walk: "always" | "if-host-local" = "always"): string[] {
    // Without a usable index, the walk is the only way to know.
    if (!this.indexUsable()) walk = "always";
    const entry = this.indexEntry(owner);
    if (entry) {
      const held = entry.ips.filter((ip) => {
        const o = this.owner(ip);
        return o !== undefined && sameAttachment(o, owner);
      });
      if (held.length > 0) return held;
    }
    if (walk === "if-host-local" && !this.usedByHostLocal()) return [];
    return this.list().filter((r) => sameAttachment(r, owner)).map((r) => r.ip);
  }

  /** Frees everything the attachment holds and drops its index entry; returns what was freed. */
  releaseAttachment(owner: Owner): string[] {
    const freed = this.addressesOf(owner).filter((ip) => this.release(ip, owner));
    this.dropIndex(owner);
    return freed;
  }

  indexEntry(owner: Owner): IndexEntry | undefined {
    if (!this.indexUsable()) return undefined;
    const entry = parseIndexEntry(this.readEntry(this.indexPath(owner)));
    // A hashed name may in theory be shared: the entry says whose it is.
    return entry && entry.containerID === owner.containerID && entry.ifname === owner.ifname ? entry : undefined;
  }

  /**
   * The index is a cache of the reservation files: a crash that loses it costs one walk, so no
   * fsync. What a writer killed mid-write left beside it is removed by age, by GC and the node
   * agent's sweep (removeOldTemporaries), not here: finding it would list the whole index, one
   * entry per pod of the node, on every ADD.
   */
  writeIndex(entry: IndexEntry): void {
    this.ensure();
    const path = this.indexPath(entry);
    fsOp("write the index entry", path, () => writeFileAtomic(path, JSON.stringify(entry), 0o600, false));
  }

  dropIndex(owner: Owner): void {
    if (this.indexUsable()) unlinkIfExists(this.indexPath(owner));
  }

  /**
   * Drops the index entries whose addresses are no longer reserved for them (host-local's DEL
   * removed the reservations and knows nothing of the index). Returns the dropped entries.
   */
  dropStaleIndex(): Owner[] {
    const dropped = this.indexEntries().entries.filter((e) => !e.ips.some((ip) => {
      const held = this.owner(ip);
      return held !== undefined && sameAttachment(held, e);
    }));
    for (const e of dropped) this.dropIndex(e);
    return dropped.map(({ containerID, ifname }) => ({ containerID, ifname }));
  }

  /**
   * Every index entry, and the names of files there that are not one (torn writes) for removal.
   * Entries that are not regular files are neither: they are skipped and logged. A writer's
   * temporary is neither too: it may be an ADD's, about to be renamed into place, and is
   * removed by age (removeOldTemporaries) once its writer is surely gone.
   */
  indexEntries(): { entries: IndexEntry[]; junk: string[] } {
    const dir = join(this.dir, INDEX_DIR);
    const entries: IndexEntry[] = [];
    const junk: string[] = [];
    if (!this.indexUsable()) return { entries, junk };
    for (const name of readdirIfExists(dir)) {
      if (isTemporaryName(name)) continue;
      const path = join(dir, name);
      let text: string | undefined;
      try {
        text = readRegularFile(path);
      } catch (err) {
        if (err instanceof NotRegularFile) {
          this.skipped(path);
          continue;
        }
        throw ioError("read", path, err);
      }
      const entry = parseIndexEntry(text);
      if (entry && name === indexName(entry)) entries.push(entry);
      else junk.push(name);
    }
    return { entries, junk };
  }

  removeIndexFile(name: string): void {
    if (this.indexUsable()) unlinkIfExists(join(this.dir, INDEX_DIR, name));
  }

  /** `.twill` and the index in it, parent first: each must be a real directory. */
  private indexDirs(): [string, string] {
    return [join(this.dir, ".twill"), join(this.dir, INDEX_DIR)];
  }

  /** Whether the index directories are absent or real directories; a symlink is warned of once. */
  indexUsable(): boolean {
    for (const dir of this.indexDirs()) {
      const problem = notADirectory(dir);
      if (!problem) continue;
      if (!this.indexWarned) this.log.warn("Ignored the IPAM index: it is not a directory", { path: dir, problem });
      this.indexWarned = true;
      return false;
    }
    return true;
  }

  /** A store file's content: undefined when absent, or (logged) when not a regular file. */
  private readEntry(path: string): string | undefined {
    try {
      return readRegularFile(path);
    } catch (err) {
      if (err instanceof NotRegularFile) {
        this.skipped(path);
        return undefined;
      }
      throw ioError("read", path, err);
    }
  }

  private skipped(path: string): void {
    this.log.warn("Skipped a store entry that is not a regular file", { path });
  }

  private indexPath(owner: Owner): string {
    return join(this.dir, INDEX_DIR, indexName(owner));
  }
}

/**
 * `<containerID>@<ifname>`: container IDs never hold '@' (SPEC.md's pattern), so no two
 * attachments share a name; '_' would not do, as IDs and interface names may both hold it.
 * A file name holds at most 255 bytes, less the temporary's suffix while it is written, and
 * container IDs have no length limit: a longer ID is cut and followed by '~' (never in an ID)
 * and a digest of the whole ID. The entry's content names the attachment in full.
 */
function indexName(o: Owner): string {
  const ifname = encodeURIComponent(o.ifname);
  const id = o.containerID.length + ifname.length <= MAX_INDEX_NAME
    ? o.containerID
    : `${o.containerID.slice(0, 128)}~${hex(digest(o.containerID))}`;
  return `${id}@${ifname}`;
}

/** 255 bytes less ".tmp-<pid>-<ms>" (at most 32), less '@'. IDs are ASCII. */
const MAX_INDEX_NAME = 200;

/** An index entry as read from its file; a pod or plugin of the wrong shape is dropped, not trusted. */
function parseIndexEntry(text: string | undefined): IndexEntry | undefined {
  if (text === undefined) return undefined;
  let e: Partial<Record<keyof IndexEntry, unknown>>;
  try {
    e = JSON.parse(text) as typeof e;
  } catch {
    return undefined;
  }
  if (!e || typeof e !== "object" || typeof e.containerID !== "string" || typeof e.ifname !== "string") return undefined;
  if (!Array.isArray(e.ips) || !e.ips.every((ip) => typeof ip === "string")) return undefined;
  const entry: IndexEntry = {
    containerID: e.containerID,
    ifname: e.ifname,
    ips: e.ips as string[],
    bootId: typeof e.bootId === "string" ? e.bootId : "",
    created: typeof e.created === "string" ? e.created : "",
  };
  const pod = e.pod as Partial<PodRef> | undefined;
  if (pod && typeof pod.namespace === "string" && typeof pod.name === "string" && typeof pod.uid === "string") {
    entry.pod = { namespace: pod.namespace, name: pod.name, uid: pod.uid };
  }
  if (typeof e.plugin === "string") entry.plugin = e.plugin;
  return entry;
}

/** host-local writes "id\r\nifname"; its versions before 0.7 wrote the ID alone. */
export function parseOwner(text: string): Owner {
  const [id = "", ifname = ""] = text.split(LINE_BREAK);
  return { containerID: id.trim(), ifname: ifname.trim() };
}

/** An owner without an ifname (old host-local) matches every ifname of its container. */
export const sameAttachment = (held: Owner, want: Owner): boolean =>
  held.containerID === want.containerID && (held.ifname === want.ifname || held.ifname === "");

/** A reservation file's name: an IPv4 or IPv6 address (not `lock`, `last_reserved_ip.0`, `.twill`). */
export const isIpName = (name: string): boolean =>
  /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || (/^[0-9a-f:.]+$/i.test(name) && name.includes(":"));

/** Why `name` (shaped like an address) is not the canonical text of one; null when it is. */
function nonCanonicalReason(name: string): string | null {
  // Leading zeros are refused by the parser (they once meant octal); say which address was meant.
  const text = /^[\d.]+$/.test(name) ? name.split(".").map((o) => String(Number(o))).join(".") : name;
  try {
    const ip = parseIp(text);
    const canonical = formatIp(ip.family, ip.value);
    return canonical === name ? null : `not in the canonical form of ${canonical}`;
  } catch {
    return "not an IP address";
  }
}

const LOCK_NAME = ".twill.lock";
/**
 * How long a release waits for the lock: holders keep it for one read and one unlink, and a
 * dead holder's lock is broken within the wait.
 */
const LOCK_WAIT_MS = 6_000;
/** A lock file older than this was left by a holder that died holding it. */
const LOCK_STALE_MS = 4_000;
const LOCK_POLL_MS = 2;

/**
 * The store's lock: a file created with O_EXCL and removed when done. Node has no flock, and
 * a PID in the file would not tell whether its holder lives: the plugin runs in the host's PID
 * namespace, the agent in its container's. So a lock file older than {@link LOCK_STALE_MS},
 * which no holder keeps for more than a read and an unlink, is taken to be a dead holder's and
 * broken: renamed away (only one breaker wins the rename) and checked to be the stale file
 * that was seen, else put back.
 */
export class StoreLock {
  constructor(
    readonly path: string,
    private readonly waitMs: number,
  ) {}

  hold<T>(fn: () => T): T {
    // No store directory: nothing in it to release, and nothing to lock.
    if (!this.acquire()) return fn();
    try {
      return fn();
    } finally {
      unlinkIfExists(this.path);
    }
  }

  /** Takes the lock; false when the store's directory does not exist. */
  private acquire(): boolean {
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      try {
        closeSync(openSync(this.path, "wx", 0o600));
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") return false;
        if (code !== "EEXIST") throw ioError("create the IPAM store lock", this.path, err);
      }
      const seen = lstatIfExists(this.path);
      if (seen && Date.now() - seen.mtimeMs > LOCK_STALE_MS) {
        this.breakStale(seen.ino);
        continue;
      }
      if (Date.now() > deadline) {
        throw new CniError(Code.IoFailure, `the IPAM store lock ${this.path} is held by another process (waited ${this.waitMs} ms)`);
      }
      sleepSync(LOCK_POLL_MS);
    }
  }

  private breakStale(ino: number): void {
    const moved = `${this.path}.tmp-${process.pid}-${Date.now()}`;
    try {
      renameSync(this.path, moved);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // another breaker won
      throw ioError("break the stale IPAM store lock", this.path, err);
    }
    // Between lstat and rename a live holder may have taken a fresh lock: give it back.
    if (lstatIfExists(moved)?.ino !== ino) {
      try {
        linkSync(moved, this.path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw ioError("restore the IPAM store lock", this.path, err);
      }
    }
    unlinkIfExists(moved);
  }
}

function lstatIfExists(path: string): { ino: number; mtimeMs: number } | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw ioError("inspect", path, err);
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Waits without returning to the event loop: the store's API is synchronous. */
const sleepSync = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);

let cachedBootId: string | undefined;

/** This boot's ID; a reservation recorded under another one was made before the last reboot. */
export function bootId(): string {
  cachedBootId ??= readRegularFile("/proc/sys/kernel/random/boot_id")?.trim() ?? "";
  return cachedBootId;
}

function ioError(op: string, path: string, err: unknown): CniError {
  return new CniError(Code.IoFailure, `failed to ${op} (${path}): ${(err as Error).message}`);
}

function fsOp<T>(op: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw ioError(op, path, err);
  }
}

/** Why `path` cannot be used as a directory (a symlink, a file), or null when it can or is absent. */
function notADirectory(path: string): string | null {
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) return "is a symlink, not a directory";
    return st.isDirectory() ? null : "is not a directory";
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw ioError("inspect", path, err);
  }
}

/** Whether `path` is a directory itself, not a symlink to one; false when absent or unreadable. */
function isRealDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function readdirIfExists(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw ioError("list", dir, err);
  }
}

function unlinkIfExists(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw ioError("remove", path, err);
  }
}
