import { closeSync, constants, linkSync, lstatSync, mkdirSync, renameSync, unlinkSync, writeSync, type Stats } from "./fs-sync.js";
import { dirname } from "node:path";
import { NotRegularFile, openRegularFileStat } from "./fs.js";

/**
 * Structured logs: a constant message plus key/values, one JSON object a line. The plugin
 * logs to a file (its stdout belongs to the CNI protocol); the agent logs to stderr.
 */

export type Level = "debug" | "info" | "warn" | "error";
export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  with(fields: Fields): Logger;
}

const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export function createLogger(write: (line: string) => void, minLevel: Level = "info", base: Fields = {}): Logger {
  const emit = (level: Level, msg: string, fields?: Fields) => {
    if (ORDER[level] < ORDER[minLevel]) return;
    const entry = { ts: new Date().toISOString(), level, msg, ...base, ...fields };
    try {
      write((needsReplacer(entry) ? JSON.stringify(entry, errorReplacer) : JSON.stringify(entry)) + "\n");
    } catch {
      // A log that cannot be written must never break the operation being logged.
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    with: (f) => createLogger(write, minLevel, { ...base, ...f }),
  };
}

/** Past this size the plugin's log is rotated: `twill.log` becomes `twill.log.1`, the one older file kept. */
export const LOG_MAX_BYTES = 10 * 1024 * 1024;

export interface FileLoggerOptions {
  minLevel?: Level;
  /** Rotate once the file reaches this size (default LOG_MAX_BYTES). */
  maxBytes?: number;
  stderr?: (text: string) => void;
}

/**
 * A logger appending to `path`, rotated at `maxBytes`; the directory is created on first use.
 * A symlink, FIFO or directory planted at `path` is never written through: the logger says so
 * once on stderr (the runtime keeps a plugin's stderr) and drops its lines.
 */
export function fileLogger(path: string, opts: FileLoggerOptions = {}): Logger {
  const { minLevel = "info", maxBytes = LOG_MAX_BYTES, stderr = (t: string) => void writeSync(2, t) } = opts;
  let ready = false;
  let refused = false;
  return createLogger((line) => {
    if (refused) return;
    if (!ready) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      ready = true;
    }
    let opened: { fd: number; stats: Stats };
    try {
      opened = openRegularFileStat(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT);
    } catch (err) {
      if (!(err instanceof NotRegularFile)) throw err;
      refused = true;
      stderr(`twill: not logging to ${path}: it is not a regular file\n`);
      return;
    }
    const { fd, stats } = opened;
    try {
      // The line first: whatever rotation does next, it is in the file this process opened.
      // Its size now is at least what it was at open and this line (others may append too).
      const size = stats.size + writeSync(fd, line);
      if (size >= maxBytes) rotateLog(path, stats, size >= 2 * maxBytes);
    } finally {
      closeSync(fd);
    }
  }, minLevel);
}

/**
 * Moves the full log `path` (the file `mine`, which this process just wrote) to `path.1`.
 * Plugin processes run side by side and may all find it full at once; the rotation is theirs to
 * make one at a time, under `path.lock`, a hard link to the file at `path` that only one
 * process can create (link() fails with EEXIST). Its holder removes `path` (new writers begin
 * a fresh file there) and renames the lock over `path.1`, which releases it: no process can
 * move a fresh file over the one just rotated, and every line written to the full file, before
 * or after, is in `path.1`. A holder killed mid-way leaves the lock behind; once the log has
 * grown to twice the limit since, the lock is taken for stale and removed. Failures are
 * ignored: a log must never fail the operation it logs.
 */
export function rotateLog(path: string, mine: Stats, lockStale: boolean): void {
  const lock = `${path}.lock`;
  try {
    linkSync(path, lock);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST" && lockStale) unlinkQuietly(lock);
    return;
  }
  try {
    // The file at `path` may already be a fresh one: another process rotated ours first.
    if (!sameFile(lstatSync(lock), mine)) return unlinkQuietly(lock);
    unlinkSync(path);
    renameSync(lock, `${path}.1`);
  } catch {
    unlinkQuietly(lock);
  }
}

const sameFile = (a: Stats, b: Stats): boolean => a.ino === b.ino && a.dev === b.dev;

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already.
  }
}

export const stderrLogger = (minLevel: Level = "info"): Logger =>
  createLogger((line) => process.stderr.write(line), minLevel);

export const nullLogger: Logger = createLogger(() => {});

/**
 * Whether an entry may hold an Error or a bigint, which JSON.stringify cannot write as they
 * should be (`{}`; a TypeError). Looks two levels deep, in loops, and says yes for anything
 * deeper: a replacer is called for every value, and one called that often is compiled by the
 * JIT in a plugin's process, which logs two lines and exits.
 */
function needsReplacer(entry: Record<string, unknown>): boolean {
  for (const key in entry) {
    const value = entry[key];
    if (typeof value !== "object" || value === null) {
      if (typeof value === "bigint") return true;
      continue;
    }
    if (value instanceof Error) return true;
    for (const inner of Array.isArray(value) ? value : Object.values(value)) {
      if (typeof inner === "bigint" || (typeof inner === "object" && inner !== null)) return true;
    }
  }
  return false;
}

function errorReplacer(_key: string, value: unknown) {
  return value instanceof Error ? value.message : typeof value === "bigint" ? value.toString() : value;
}

/**
 * Milliseconds spent per phase of one operation, for its closing log line: says where an
 * operation's time goes on a real node, not only in a benchmark.
 */
export class PhaseTimer {
  /** performance.now() counts from the process's start: this is the runtime's start-up and
   * whatever ran before the operation (reading stdin, loading code). */
  private readonly started = performance.now();
  private readonly ms: Record<string, number> = {};

  /**
   * Records under `name` how long `start` takes, from its call until its promise settles (a
   * thunk: a kernel call over netlink does its work before it returns the promise).
   */
  time<T>(name: string, start: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    let p: Promise<T>;
    try {
      p = start();
    } catch (err) {
      p = Promise.reject(err);
    }
    const done = () => {
      this.ms[name] = round(performance.now() - t0);
    };
    p.then(done, done);
    return p;
  }

  /** Records the time since the operation started under `name`. */
  mark(name: string): void {
    this.ms[name] = round(performance.now() - this.started);
  }

  fields(): Fields {
    return { ms: round(performance.now() - this.started), sinceStart: round(this.started), phases: { ...this.ms } };
  }
}

const round = (ms: number): number => Math.round(ms * 10) / 10;
