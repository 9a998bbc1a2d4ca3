import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, type Stats } from "node:fs";
import type { Logger } from "../../shared/log.js";
import { DatastoreError, errorMessage } from "../errors.js";
import { isUnreadable, mayBeSettling, stampDecisive, type Claim, type ClaimEntry, type RecordEntry } from "./local-view.js";
import type { NodeLease } from "../types.js";

/**
 * How the local store reads one of its files: never through a symlink, never blocking on a FIFO,
 * and not at all when the file's lstat stamp shows it unchanged since it was last read.
 *
 * Any writer is followed, not only one that renames complete files into place as agents do: a
 * file may be written in place (a reader can open it between the writer's open and its write,
 * and find it empty or torn). A file that does not decode and was modified within SETTLE_MS is
 * a write in progress, not damage: it counts as unreadable for every decision but is not
 * reported, and the watch reads it again soon, until it decodes or has stayed torn past
 * SETTLE_MS. A file is skipped on an unchanged stamp only when the stamp can tell a later
 * write apart (see stampDecisive): an in-place rewrite of the same size within one clock tick
 * keeps it.
 */

export type Entry = ClaimEntry | RecordEntry;

/** What one file holds once decoded, or why it cannot be read. */
export type Decode = (value: unknown) => Claim | NodeLease | string;

/** The files last read, each under its stamp, whether that stamp was decisive, and what it held. */
export class StampedReads {
  private readonly cache = new Map<string, { stamp: string; decisive: boolean; entry: Entry }>();

  constructor(private readonly logger: Logger) {}

  /**
   * One file, decoded; null when it is gone. The same object as last time while its stamp is
   * unchanged and decisive and `trustUnchanged` is set, or its content is the same (what the
   * store hands out keeps its identity). A file that does not decode is settling while it was
   * modified within SETTLE_MS (a writer may be mid-way).
   */
  read(path: string, trustUnchanged: boolean, decode: Decode): Entry | null {
    const cached = this.cache.get(path);
    if (trustUnchanged && cached?.decisive && fileStamp(path) === cached.stamp) return cached.entry;
    // File times are wall-clock times, whatever clock the leases are judged by.
    const readAt = Date.now();
    const read = readJson(path);
    if (read === null) {
      this.cache.delete(path);
      return null;
    }
    const decoded = "error" in read ? read.error : decode(read.value);
    const fresh: Entry = typeof decoded === "string" ? { error: decoded, settling: read.regular && mayBeSettling(read.mtimeMs, readAt) } : decoded;
    // The same content read again (acquire's reads): keep handing out the same object.
    const entry = cached !== undefined && JSON.stringify(cached.entry) === JSON.stringify(fresh) ? cached.entry : fresh;
    this.cache.set(path, { stamp: read.stamp, decisive: stampDecisive(read.ctimeMs, readAt), entry });
    if (entry === fresh && isUnreadable(entry) && entry.settling) this.logger.debug("Store file is being written; reading it again", { path, reason: entry.error });
    return entry;
  }
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
export function readJson(path: string): FileRead | null {
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
    throw new DatastoreError(`read ${path}`, errorMessage(err));
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
