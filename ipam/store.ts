import {
  closeSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeFileSync, writeSync,
} from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../shared/fs.js";
import { AddressError, parseIp } from "../shared/net/cidr.js";

/**
 * Reservations on disk in host-local's layout, so a node can move between host-local and
 * twill-ipam without losing any: `<dataDir>/<network>/<ip>` holds "containerID\r\nifname",
 * `last_reserved_ip.<set>` the round-robin position.
 *
 * An address is taken by creating its file with O_EXCL: the kernel lets exactly one process
 * win, so concurrent ADDs never share an address. host-local also takes an flock on `lock`,
 * which Node and Bun do not offer; without it two ADDs may read the same round-robin position
 * and race for one address, and the loser simply tries the next. Only the hint is shared.
 *
 * host-local finds an attachment's addresses by reading every file (O(n) per DEL and CHECK).
 * twill-ipam keeps an index, `.twill/<containerID>@<ifname>`, and walks only for
 * reservations host-local made. Index files never hold "id\r\nifname", because host-local's
 * walk descends into subdirectories and deletes files whose content matches.
 */

export interface Reservation {
  ip: string;
  containerID: string;
  ifname: string;
}

export interface IndexEntry {
  containerID: string;
  ifname: string;
  ips: string[];
  /** The kernel boot this was made in: a reservation from an earlier boot has no live pod. */
  bootId: string;
  created: string;
}

const INDEX_DIR = ".twill";
const LINE_BREAK = "\r\n";

export class Store {
  constructor(readonly dir: string) {}

  /** Creates the store directory, readable by root only. */
  ensure(): void {
    mkdirSync(join(this.dir, INDEX_DIR), { recursive: true, mode: 0o700 });
  }

  /** Takes `ip` for the attachment; false when another holds it. */
  reserve(ip: string, containerID: string, ifname: string): boolean {
    let fd: number;
    try {
      fd = openSync(join(this.dir, ip), "wx", 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    }
    try {
      writeSync(fd, containerID + LINE_BREAK + ifname);
    } finally {
      closeSync(fd);
    }
    return true;
  }

  /** Frees `ip` if (and only if) the attachment holds it. */
  releaseIfOwned(ip: string, containerID: string, ifname: string): boolean {
    const owner = this.owner(ip);
    if (!owner || !sameAttachment(owner, containerID, ifname)) return false;
    return unlinkIfExists(join(this.dir, ip));
  }

  owner(ip: string): { containerID: string; ifname: string } | undefined {
    const text = readIfExists(join(this.dir, ip));
    return text === undefined ? undefined : parseOwner(text);
  }

  lastReserved(set: number): string | undefined {
    return readIfExists(join(this.dir, `last_reserved_ip.${set}`))?.trim() || undefined;
  }

  setLastReserved(set: number, ip: string): void {
    writeFileSync(join(this.dir, `last_reserved_ip.${set}`), ip, { mode: 0o600 });
  }

  /** Every reservation in the directory, whoever made it. */
  list(): Reservation[] {
    const out: Reservation[] = [];
    for (const name of readdirIfExists(this.dir)) {
      if (!isIpName(name)) continue;
      const owner = this.owner(name);
      if (owner) out.push({ ip: name, ...owner });
    }
    return out;
  }

  /** The addresses the attachment holds: from the index, else by walking (host-local's). */
  addressesOf(containerID: string, ifname: string): string[] {
    const entry = this.indexEntry(containerID, ifname);
    if (entry) return entry.ips.filter((ip) => { const o = this.owner(ip); return o && sameAttachment(o, containerID, ifname); });
    return this.list().filter((r) => sameAttachment(r, containerID, ifname)).map((r) => r.ip);
  }

  /** Frees everything the attachment holds and forgets it; returns what was freed. */
  releaseAttachment(containerID: string, ifname: string): string[] {
    const freed = this.addressesOf(containerID, ifname).filter((ip) => this.releaseIfOwned(ip, containerID, ifname));
    unlinkIfExists(this.indexPath(containerID, ifname));
    return freed;
  }

  indexEntry(containerID: string, ifname: string): IndexEntry | undefined {
    const text = readIfExists(this.indexPath(containerID, ifname));
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as IndexEntry;
    } catch {
      return undefined;
    }
  }

  /** The index is a cache of the reservation files: a crash that loses it costs one walk, so no fsync. */
  writeIndex(entry: IndexEntry): void {
    writeFileAtomic(this.indexPath(entry.containerID, entry.ifname), JSON.stringify(entry), 0o600, false);
  }

  /** Index entries, for GC: attachments whose reservations are gone are dropped there. */
  indexEntries(): IndexEntry[] {
    const dir = join(this.dir, INDEX_DIR);
    return readdirIfExists(dir)
      .map((name) => readIfExists(join(dir, name)))
      .flatMap((text) => {
        try {
          return text ? [JSON.parse(text) as IndexEntry] : [];
        } catch {
          return [];
        }
      });
  }

  private indexPath(containerID: string, ifname: string): string {
    // Container IDs never hold '@' (SPEC.md's pattern); interface names may hold almost anything.
    return join(this.dir, INDEX_DIR, `${containerID}@${encodeURIComponent(ifname)}`);
  }
}

/** host-local writes "id\r\nifname"; its older versions wrote the ID alone. */
export function parseOwner(text: string): { containerID: string; ifname: string } {
  const [id = "", ifname = ""] = text.split(LINE_BREAK);
  return { containerID: id.trim(), ifname: ifname.trim() };
}

/** An owner written without an ifname (older host-local) matches any ifname of the container. */
export const sameAttachment = (o: { containerID: string; ifname: string }, containerID: string, ifname: string): boolean =>
  o.containerID === containerID && (o.ifname === ifname || o.ifname === "");

export function isIpName(name: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(name)) return false;
  try {
    parseIp(name);
    return true;
  } catch (err) {
    if (err instanceof AddressError) return false;
    throw err;
  }
}

export function bootId(): string {
  return readIfExists("/proc/sys/kernel/random/boot_id")?.trim() ?? "";
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

function readdirIfExists(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

function unlinkIfExists(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
