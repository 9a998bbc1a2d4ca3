import {
  closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeFileSync, writeSync,
} from "node:fs";
import { join } from "node:path";
import { CniError, Code } from "../shared/cni/errors.js";
import { writeFileAtomic } from "../shared/fs.js";

/**
 * Reservations on disk in host-local's layout, so a node moves between host-local and
 * twill-ipam without losing one:
 *
 *   <dataDir>/<network>/<ip>                         "containerID\r\nifname", created O_EXCL
 *   <dataDir>/<network>/last_reserved_ip.<set>       the round-robin position of range set <set>
 *   <dataDir>/<network>/.twill/by-id/<id>@<ifname>   twill-ipam's index: the attachment's addresses
 *
 * An address is taken by creating its file with O_EXCL: the kernel lets exactly one process
 * win, so concurrent ADDs (of twill-ipam and of host-local alike) never share an address.
 * host-local also holds an flock on `lock` while it allocates; Node and Bun offer no flock, and
 * none is needed for uniqueness. Without it two ADDs may read the same last_reserved_ip and try
 * the same next address: one create fails with EEXIST and that ADD tries the one after. Either
 * may write last_reserved_ip last; it is only where the next walk starts, so a lost update
 * costs at most a skipped or revisited address, never a shared one.
 *
 * host-local finds an attachment's addresses by reading every file (O(n) per DEL and CHECK).
 * The index makes that one read; the walk remains for attachments without an entry
 * (reservations host-local made, or an ADD that died before writing its entry). Index files
 * hold JSON, never "id\r\nifname": host-local's DEL walks subdirectories too and deletes every
 * file whose content is the attachment's.
 */

export interface Owner {
  containerID: string;
  /** Empty when an old host-local wrote the container ID alone. */
  ifname: string;
}

export interface Reservation extends Owner {
  ip: string;
}

export interface IndexEntry extends Owner {
  ips: string[];
  /** The kernel boot the reservation was made in (/proc/sys/kernel/random/boot_id). */
  bootId: string;
  created: string;
}

const INDEX_DIR = join(".twill", "by-id");
const LINE_BREAK = "\r\n";
/** host-local's flock file: its presence means host-local has used the directory. */
const HOST_LOCAL_LOCK = "lock";

export class Store {
  constructor(readonly dir: string) {}

  /** Creates the store and index directories, readable by root only. */
  ensure(): void {
    fsOp("create the IPAM store directory", this.dir, () => mkdirSync(join(this.dir, INDEX_DIR), { recursive: true, mode: 0o700 }));
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

  /** Frees `ip` if (and only if) the attachment holds it. */
  release(ip: string, owner: Owner): boolean {
    const held = this.owner(ip);
    if (!held || !sameAttachment(held, owner)) return false;
    return unlinkIfExists(join(this.dir, ip));
  }

  owner(ip: string): Owner | undefined {
    const text = readIfExists(join(this.dir, ip));
    return text === undefined ? undefined : parseOwner(text);
  }

  lastReserved(set: number): string | undefined {
    return readIfExists(join(this.dir, `last_reserved_ip.${set}`))?.trim() || undefined;
  }

  /** Written in place as host-local does: a torn read only moves where the next walk starts. */
  setLastReserved(set: number, ip: string): void {
    const path = join(this.dir, `last_reserved_ip.${set}`);
    fsOp("write", path, () => writeFileSync(path, ip, { mode: 0o600 }));
  }

  /** The reserved addresses, by file name alone (no reads). */
  reservedAddresses(): string[] {
    return readdirIfExists(this.dir).filter(isIpName);
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
    return parseIndexEntry(readIfExists(this.indexPath(owner)));
  }

  /** The index is a cache of the reservation files: a crash that loses it costs one walk, so no fsync. */
  writeIndex(entry: IndexEntry): void {
    const path = this.indexPath(entry);
    fsOp("write the index entry", path, () => writeFileAtomic(path, JSON.stringify(entry), 0o600, false));
  }

  dropIndex(owner: Owner): void {
    unlinkIfExists(this.indexPath(owner));
  }

  /** Every index entry, and the names of files there that are not one (torn writes) for removal. */
  indexEntries(): { entries: IndexEntry[]; junk: string[] } {
    const dir = join(this.dir, INDEX_DIR);
    const entries: IndexEntry[] = [];
    const junk: string[] = [];
    for (const name of readdirIfExists(dir)) {
      const entry = parseIndexEntry(readIfExists(join(dir, name)));
      if (entry && name === indexName(entry)) entries.push(entry);
      else junk.push(name);
    }
    return { entries, junk };
  }

  removeIndexFile(name: string): void {
    unlinkIfExists(join(this.dir, INDEX_DIR, name));
  }

  private indexPath(owner: Owner): string {
    return join(this.dir, INDEX_DIR, indexName(owner));
  }
}

/**
 * `<containerID>@<ifname>`: container IDs never hold '@' (SPEC.md's pattern), so no two
 * attachments share a name; '_' would not do, as IDs and interface names may both hold it.
 */
const indexName = (o: Owner) => `${o.containerID}@${encodeURIComponent(o.ifname)}`;

function parseIndexEntry(text: string | undefined): IndexEntry | undefined {
  if (text === undefined) return undefined;
  try {
    const e = JSON.parse(text) as IndexEntry;
    const ok = typeof e.containerID === "string" && typeof e.ifname === "string" && Array.isArray(e.ips);
    return ok ? e : undefined;
  } catch {
    return undefined;
  }
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

let cachedBootId: string | undefined;

/** This boot's ID; a reservation recorded under another one was made before the last reboot. */
export function bootId(): string {
  cachedBootId ??= readIfExists("/proc/sys/kernel/random/boot_id")?.trim() ?? "";
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

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw ioError("read", path, err);
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
