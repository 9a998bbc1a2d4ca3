import {
  closeSync, constants, fstatSync, fsyncSync, ftruncateSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, unlinkSync, writeSync, type Stats,
} from "./fs-sync.js";
import { dirname, join } from "node:path";

/**
 * Writes a file so readers see either the old or the new content, never a torn one:
 * write a temporary file beside it, fsync, rename over. `durable: false` skips the fsync for
 * files that can be rebuilt from others after a crash (it costs milliseconds per call).
 * The temporary is created exclusively: a symlink planted under its name is never followed.
 */
export function writeFileAtomic(path: string, data: string, mode = 0o600, durable = true): void {
  const tmp = `${path}${TMP_MARK}${process.pid}-${Date.now()}`;
  let fd: number;
  try {
    fd = openSync(tmp, "wx", mode);
  } catch (err) {
    // The directory is made only when missing: most writes go where others went before.
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    fd = openSync(tmp, "wx", mode);
  }
  try {
    writeSync(fd, data);
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

const TMP_MARK = ".tmp-";

/**
 * The asynchronous half of {@link writeFileAtomic}, for a caller that puts the file in place
 * itself (`rename` to replace, `link` to create only when absent): a complete, fsynced file
 * under a fresh hidden name in `dir` (the destination's directory, so rename and link stay
 * atomic). Returns its path; the caller removes it when it is not moved.
 */
export async function writeTempFile(dir: string, data: string, mode = 0o644): Promise<string> {
  const tmp = join(dir, `${TMP_MARK}${process.pid}-${Math.random().toString(16).slice(2, 14)}`);
  // Imported here: the plugins load this module too, and a pod's ADD has no use for the module.
  const { open } = await import("node:fs/promises");
  const handle = await open(tmp, "wx", mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return tmp;
}

/** A temporary this old was abandoned: its writer would have renamed it within milliseconds. */
export const ABANDONED_TEMPORARY_MS = 10 * 60_000;

/** The names {@link writeFileAtomic} (`<name>.tmp-<pid>-<ms>`) and {@link writeTempFile} (`.tmp-<pid>-<hex>`) give temporaries. */
const TEMPORARY_NAME = /^(?:.+\.tmp-\d+-\d+|\.tmp-\d+-[0-9a-f]+)$/;

/** Whether `name` is one a writer gives its temporary ({@link writeFileAtomic}, {@link writeTempFile}). */
export const isTemporaryName = (name: string): boolean => TEMPORARY_NAME.test(name);

/**
 * Removes from `dir` the temporaries of writers killed between create and rename, judged by
 * age alone: a write takes milliseconds, so one older than `olderThanMs` was abandoned. Not by
 * PID: the plugin runs in the host's PID namespace and the agent in its container's, so neither
 * can tell whether the other's writer lives. Only regular files with a temporary's name are
 * touched, never followed. Returns the names removed.
 */
export function removeOldTemporaries(dir: string, olderThanMs = ABANDONED_TEMPORARY_MS, now = Date.now()): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!isTemporaryName(name)) continue;
    const path = join(dir, name);
    try {
      const st = lstatSync(path);
      if (!st.isFile() || now - st.mtimeMs < olderThanMs) continue;
      unlinkSync(path);
      removed.push(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return removed;
}

/** A path that is a symlink, directory, FIFO or device where a regular file belongs. */
export class NotRegularFile extends Error {
  constructor(readonly path: string) {
    super(`${path} is not a regular file`);
    this.name = "NotRegularFile";
  }
}

/**
 * Opens a regular file without following a symlink in its place, and without waiting on a
 * FIFO (O_NONBLOCK): anything else throws {@link NotRegularFile}. Errors such as ENOENT pass.
 */
export function openRegularFile(path: string, flags: number, mode = 0o600): number {
  return openRegularFileStat(path, flags, mode).fd;
}

/** {@link openRegularFile}, with what fstat said of the file as it was opened. */
export function openRegularFileStat(path: string, flags: number, mode = 0o600): { fd: number; stats: Stats } {
  let fd: number;
  try {
    fd = openSync(path, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode);
  } catch (err) {
    // ELOOP: a symlink; EISDIR: a directory opened for writing; ENXIO: a FIFO nobody reads.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP" || code === "EISDIR" || code === "ENXIO") throw new NotRegularFile(path);
    throw err;
  }
  const stats = fstatSync(fd);
  if (!stats.isFile()) {
    closeSync(fd);
    throw new NotRegularFile(path);
  }
  return { fd, stats };
}

/** A regular file's content; undefined when it does not exist. */
export function readRegularFile(path: string): string | undefined {
  let fd: number;
  try {
    fd = openRegularFile(path, constants.O_RDONLY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces a regular file's content in place; never through a symlink. The new content is
 * written over the old, and the file cut to it only when the old was longer: a truncation is
 * a journal transaction, and the file usually keeps its length (a round-robin position). A
 * reader between the two steps may see the new content followed by the end of the old.
 */
export function writeRegularFile(path: string, data: string, mode = 0o600): void {
  const fd = openRegularFile(path, constants.O_WRONLY | constants.O_CREAT, mode);
  try {
    // Cut only once the file is known to be regular: O_TRUNC would act before the check.
    const written = writeSync(fd, data, 0);
    if (fstatSync(fd).size > written) ftruncateSync(fd, written);
  } finally {
    closeSync(fd);
  }
}

/** Appends to a regular file, creating it; never through a symlink. */
export function appendRegularFile(path: string, data: string, mode = 0o600): void {
  const fd = openRegularFile(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, mode);
  try {
    writeSync(fd, data);
  } finally {
    closeSync(fd);
  }
}
