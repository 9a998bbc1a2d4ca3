import { errnoMessage, errnoName, fileCalls, type FileCalls } from "./kernel/netlink/libc.js";

/**
 * The synchronous file calls of the plugins' commands (and of the shared code the agent runs
 * too), with node:fs's names, arguments and errors, made through libc. A pod's ADD opens, reads
 * and writes a few small files; loading node:fs to do it cost as much as all of them together
 * with the rest of the IPAM store's work (about a millisecond of every ADD and DEL). Where libc
 * cannot be reached (Node: the unit tests) these are node:fs's own.
 *
 * Only the subset twill uses, as twill uses it: `readdirSync` and anything rarer go to node:fs,
 * loaded then.
 */

export interface Stats {
  dev: number;
  ino: number;
  mode: number;
  size: number;
  mtimeMs: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

type NodeFs = typeof import("node:fs");
type Flags = number | "r" | "w" | "wx" | "a";

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

class LibcStats implements Stats {
  constructor(
    readonly dev: number,
    readonly ino: number,
    readonly mode: number,
    readonly size: number,
    readonly mtimeMs: number,
  ) {}
  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
}

/** An error as node:fs throws it: `code` (ENOENT), a negative `errno`, the call and the path. */
export class FsError extends Error {
  readonly code: string;
  readonly errno: number;
  constructor(
    errno: number,
    readonly syscall: string,
    readonly path?: string,
    readonly dest?: string,
  ) {
    const code = errnoName(errno);
    super(`${code}: ${errnoMessage(errno).toLowerCase()}, ${syscall}${path === undefined ? "" : ` '${path}'`}${dest === undefined ? "" : ` -> '${dest}'`}`);
    this.code = code;
    this.errno = -errno;
    this.name = "Error";
  }
}

/** The open(2) flags of Linux on the architectures twill is built for; elsewhere node:fs. */
const FLAGS: Record<string, Record<string, number>> = {
  x64: { O_DIRECTORY: 0o200000, O_NOFOLLOW: 0o400000 },
  arm64: { O_DIRECTORY: 0o40000, O_NOFOLLOW: 0o100000 },
};
const archFlags = FLAGS[process.arch];
const calls: FileCalls | null = archFlags ? fileCalls() : null;
const node: NodeFs | null = calls ? null : (process.getBuiltinModule("node:fs") as NodeFs);

export const constants = node
  ? node.constants
  : ({
      O_RDONLY: 0, O_WRONLY: 1, O_RDWR: 2, O_CREAT: 0o100, O_EXCL: 0o200, O_NOCTTY: 0o400, O_TRUNC: 0o1000,
      O_APPEND: 0o2000, O_NONBLOCK: 0o4000, ...archFlags, F_OK: 0, R_OK: 4, W_OK: 2, X_OK: 1,
    } as NodeFs["constants"]);

const O_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_EMPTY_PATH = 0x1000;
/** STATX_TYPE | STATX_MODE | STATX_INO | STATX_SIZE | STATX_MTIME. */
const STATX_WANTED = 0x1 | 0x2 | 0x100 | 0x200 | 0x40;
const EINTR = 4;
const ENOENT = 2;
const EEXIST = 17;

const utf8 = new TextEncoder();
const text = new TextDecoder();
/** A path as libc takes it; one with a NUL in it is refused, as node:fs refuses it (libc would cut it there). */
function cPath(path: string): Uint8Array {
  if (path.includes("\0")) {
    throw Object.assign(new TypeError(`The argument 'path' must be a string, Uint8Array, or URL without null bytes. Received ${JSON.stringify(path)}`), { code: "ERR_INVALID_ARG_VALUE" });
  }
  return utf8.encode(`${path}\0`);
}

/**
 * After a call returned -1: throws its error, unless a signal interrupted it, and the caller calls
 * again (`while (call() < 0) failed(...)`); close is never called again (Linux has released the
 * descriptor whatever close returns). Only failures come here: a wrapper called for every call
 * was compiled by the JIT on each ADD, in a process that exits a moment later.
 */
function failed(c: FileCalls, syscall: string, path?: string, dest?: string): void {
  const errno = c.errno();
  if (errno !== EINTR || syscall === "close") throw new FsError(errno, syscall, path, dest);
}

const openFlags = (flags: Flags): number => {
  if (typeof flags === "number") return flags;
  const { O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_EXCL, O_APPEND } = constants;
  return { r: O_RDONLY, w: O_WRONLY | O_CREAT | O_TRUNC, wx: O_WRONLY | O_CREAT | O_TRUNC | O_EXCL, a: O_WRONLY | O_APPEND | O_CREAT }[flags];
};

function statOf(c: FileCalls, syscall: string, dirfd: number, path: string, flags: number, shown?: string): Stats {
  const buf = new Uint8Array(256);
  const p = cPath(path);
  while (c.statx(dirfd, p, flags, STATX_WANTED, buf) < 0) failed(c, syscall, shown);
  const v = new DataView(buf.buffer);
  // struct statx: stx_mode @28, stx_ino @32, stx_size @40, stx_mtime @112 (sec, nsec), stx_dev_major/minor @136/@140.
  const dev = v.getUint32(136, true) * 2 ** 32 + v.getUint32(140, true);
  const mtimeMs = Number(v.getBigInt64(112, true)) * 1000 + v.getUint32(120, true) / 1e6;
  return new LibcStats(dev, Number(v.getBigUint64(32, true)), v.getUint16(28, true), Number(v.getBigUint64(40, true)), mtimeMs);
}

function writeAll(c: FileCalls, fd: number, bytes: Uint8Array, position: number | undefined): number {
  let done = 0;
  while (done < bytes.length) {
    const rest = bytes.subarray(done);
    const n = position === undefined ? c.write(fd, rest, rest.length) : c.pwrite(fd, rest, rest.length, position + done);
    if (n < 0) failed(c, "write");
    else done += n;
  }
  return done;
}

/** The rest of the file at `fd` as UTF-8 text, decoded as it is read (a character may span two reads). */
function readAll(c: FileCalls, fd: number): string {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64 * 1024);
  let out = "";
  for (;;) {
    const n = c.read(fd, buf, buf.length);
    if (n < 0) {
      failed(c, "read");
      continue;
    }
    if (n === 0) return out + decoder.decode();
    out += decoder.decode(buf.subarray(0, n), { stream: true });
  }
}

export function openSync(path: string, flags: Flags = "r", mode = 0o666): number {
  if (!calls) return node!.openSync(path, flags, mode);
  const p = cPath(path);
  const f = openFlags(flags) | O_CLOEXEC;
  for (;;) {
    const fd = calls.open(p, f, mode);
    if (fd >= 0) return fd;
    failed(calls, "open", path);
  }
}

export function closeSync(fd: number): void {
  if (!calls) return node!.closeSync(fd);
  if (calls.close(fd) < 0) failed(calls, "close");
}

/** Writes all of `data` (at `position`, when given); returns the bytes written. */
export function writeSync(fd: number, data: string, position?: number): number {
  if (!calls) return node!.writeSync(fd, data, position);
  return writeAll(calls, fd, utf8.encode(data), position);
}

export function fsyncSync(fd: number): void {
  if (!calls) return node!.fsyncSync(fd);
  while (calls.fsync(fd) < 0) failed(calls, "fsync");
}

export function ftruncateSync(fd: number, length = 0): void {
  if (!calls) return node!.ftruncateSync(fd, length);
  while (calls.ftruncate(fd, length) < 0) failed(calls, "ftruncate");
}

/** A file's content as UTF-8 text, by path or open descriptor. */
export function readFileSync(file: string | number, _encoding: "utf8"): string {
  if (!calls) return node!.readFileSync(file, "utf8");
  if (typeof file === "number") return readAll(calls, file);
  const fd = openSync(file, "r");
  try {
    return readAll(calls, fd);
  } finally {
    closeSync(fd);
  }
}

export function writeFileSync(path: string, data: string): void {
  if (!calls) return node!.writeFileSync(path, data);
  const fd = openSync(path, "w");
  try {
    writeAll(calls, fd, utf8.encode(data), undefined);
  } finally {
    closeSync(fd);
  }
}

export function existsSync(path: string): boolean {
  if (!calls) return node!.existsSync(path);
  return calls.access(cPath(path), constants.F_OK) === 0;
}

export function accessSync(path: string, mode: number = constants.F_OK): void {
  if (!calls) return node!.accessSync(path, mode);
  const p = cPath(path);
  while (calls.access(p, mode) < 0) failed(calls, "access", path);
}

export function statSync(path: string): Stats {
  if (!calls) return node!.statSync(path);
  return statOf(calls, "stat", AT_FDCWD, path, 0, path);
}

export function lstatSync(path: string): Stats {
  if (!calls) return node!.lstatSync(path);
  return statOf(calls, "lstat", AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, path);
}

export function fstatSync(fd: number): Stats {
  if (!calls) return node!.fstatSync(fd);
  return statOf(calls, "fstat", fd, "", AT_EMPTY_PATH);
}

export function readlinkSync(path: string): string {
  if (!calls) return node!.readlinkSync(path, "utf8");
  const buf = new Uint8Array(4096);
  const p = cPath(path);
  for (;;) {
    const n = calls.readlink(p, buf, buf.length);
    if (n >= 0) return text.decode(buf.subarray(0, n));
    failed(calls, "readlink", path);
  }
}

export function renameSync(from: string, to: string): void {
  if (!calls) return node!.renameSync(from, to);
  const [f, t] = [cPath(from), cPath(to)];
  while (calls.rename(f, t) < 0) failed(calls, "rename", from, to);
}

export function linkSync(from: string, to: string): void {
  if (!calls) return node!.linkSync(from, to);
  const [f, t] = [cPath(from), cPath(to)];
  while (calls.link(f, t) < 0) failed(calls, "link", from, to);
}

export function unlinkSync(path: string): void {
  if (!calls) return node!.unlinkSync(path);
  const p = cPath(path);
  while (calls.unlink(p) < 0) failed(calls, "unlink", path);
}

/** mkdir, or with `recursive` every missing directory up to `path` (an existing directory is fine). */
export function mkdirSync(path: string, opts: { recursive?: boolean; mode?: number } = {}): void {
  if (!calls) return void node!.mkdirSync(path, opts);
  const mode = opts.mode ?? 0o777;
  if (!opts.recursive) {
    const p = cPath(path);
    while (calls.mkdir(p, mode) < 0) failed(calls, "mkdir", path);
    return;
  }
  if (calls.mkdir(cPath(path), mode) === 0) return;
  const errno = calls.errno();
  if (errno === EEXIST && statSync(path).isDirectory()) return;
  const parent = path.slice(0, path.replace(/\/+$/, "").lastIndexOf("/"));
  if (errno !== ENOENT || parent === "" || parent === path) throw new FsError(errno, "mkdir", path);
  mkdirSync(parent, opts);
  mkdirSync(path, opts);
}

/** The names in a directory: node:fs's, loaded on first use (the leak sweep and GC list directories, no ADD does). */
export function readdirSync(path: string): string[] {
  return (node ?? (process.getBuiltinModule("node:fs") as NodeFs)).readdirSync(path);
}
