/**
 * The libc calls twill makes through Bun's FFI: netlink's (`libc()`), a plugin's stdin
 * (`stdio()`), the file calls of shared/fs-sync.ts (`fileCalls()`) and telling a
 * namespace's kind (`nsCalls()`). Bun is twill's one runtime (the compiled executable, and the
 * privileged tests, which run on Bun); each is null on a runtime without it (Node: the unit
 * tests, which never reach the kernel).
 */

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  send(fd: number, buf: Uint8Array, len: number, flags: number): number;
  recv(fd: number, buf: Uint8Array, len: number, flags: number): number;
  setns(fd: number, nstype: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  close(fd: number): number;
  /** errno of the last failed call on this thread. */
  errno(): number;
}

/** The libc calls a CNI plugin reads its config with (shared/cni/stdio.ts). */
export interface Stdio {
  read(fd: number, buf: Uint8Array, len: number): number;
  isatty(fd: number): boolean;
  errno(): number;
}

/** ioctl(2) on a namespace file: which kind of namespace it is (a CLONE_NEW* flag; Linux 4.11). */
const NS_GET_NSTYPE = 0xb703;

interface NsCalls {
  /** The CLONE_NEW* flag of the namespace open at `fd`; -1 when the kernel cannot say. */
  nsType(fd: number): number;
}

/**
 * The file calls of shared/fs-sync.ts: paths are NUL-terminated UTF-8, results as libc returns
 * them (-1 and errno on failure).
 */
export interface FileCalls {
  open(path: Uint8Array, flags: number, mode: number): number;
  close(fd: number): number;
  read(fd: number, buf: Uint8Array, len: number): number;
  write(fd: number, buf: Uint8Array, len: number): number;
  pwrite(fd: number, buf: Uint8Array, len: number, offset: number): number;
  fsync(fd: number): number;
  ftruncate(fd: number, length: number): number;
  rename(from: Uint8Array, to: Uint8Array): number;
  link(from: Uint8Array, to: Uint8Array): number;
  unlink(path: Uint8Array): number;
  mkdir(path: Uint8Array, mode: number): number;
  readlink(path: Uint8Array, buf: Uint8Array, len: number): number;
  access(path: Uint8Array, mode: number): number;
  /** statx(2) into `buf` (256 bytes); its layout is the same on every architecture. */
  statx(dirfd: number, path: Uint8Array, flags: number, mask: number, buf: Uint8Array): number;
  errno(): number;
}

let loaded: (Libc & Stdio & NsCalls & FileCalls) | null | undefined;

/**
 * Every call twill makes through bun:ffi, bound by one dlopen: it is the opening of the FFI that
 * costs (a fraction of a millisecond, a large part of a VERSION answer), hardly each symbol.
 * Null outside Bun or when libc cannot be opened.
 */
function bound(): (Libc & Stdio & NsCalls & FileCalls) | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (!(globalThis as { Bun?: unknown }).Bun) return loaded;
  try {
    // A literal require, so the compiler keeps Bun's built-in module; Node never reaches here.
    const ffi = require("bun:ffi") as BunFfi;
    const { symbols } = ffi.dlopen("libc.so.6", {
      socket: { args: ["i32", "i32", "i32"], returns: "i32" },
      send: { args: ["i32", "ptr", "u64", "i32"], returns: "i64" },
      recv: { args: ["i32", "ptr", "u64", "i32"], returns: "i64" },
      setns: { args: ["i32", "i32"], returns: "i32" },
      bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
      setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
      close: { args: ["i32"], returns: "i32" },
      read: { args: ["i32", "ptr", "u64"], returns: "i64" },
      write: { args: ["i32", "ptr", "u64"], returns: "i64" },
      isatty: { args: ["i32"], returns: "i32" },
      ioctl: { args: ["i32", "u64", "u64"], returns: "i32" },
      open: { args: ["ptr", "i32", "u32"], returns: "i32" },
      pwrite: { args: ["i32", "ptr", "u64", "i64"], returns: "i64" },
      fsync: { args: ["i32"], returns: "i32" },
      ftruncate: { args: ["i32", "i64"], returns: "i32" },
      rename: { args: ["ptr", "ptr"], returns: "i32" },
      link: { args: ["ptr", "ptr"], returns: "i32" },
      unlink: { args: ["ptr"], returns: "i32" },
      mkdir: { args: ["ptr", "u32"], returns: "i32" },
      readlink: { args: ["ptr", "ptr", "u64"], returns: "i64" },
      access: { args: ["ptr", "i32"], returns: "i32" },
      statx: { args: ["i32", "ptr", "i32", "u32", "ptr"], returns: "i32" },
      __errno_location: { args: [], returns: "ptr" },
    });
    loaded = {
      socket: (d, t, p) => symbols.socket(d, t, p) as number,
      send: (fd, buf, len, flags) => Number(symbols.send(fd, buf, len, flags)),
      recv: (fd, buf, len, flags) => Number(symbols.recv(fd, buf, len, flags)),
      setns: (fd, t) => symbols.setns(fd, t) as number,
      bind: (fd, addr, len) => symbols.bind(fd, addr, len) as number,
      setsockopt: (fd, level, name, value, len) => symbols.setsockopt(fd, level, name, value, len) as number,
      close: (fd) => symbols.close(fd) as number,
      read: (fd, buf, len) => Number(symbols.read(fd, buf, len)),
      write: (fd, buf, len) => Number(symbols.write(fd, buf, len)),
      isatty: (fd) => symbols.isatty(fd) === 1,
      nsType: (fd) => symbols.ioctl(fd, NS_GET_NSTYPE, 0) as number,
      open: (path, flags, mode) => symbols.open(path, flags, mode) as number,
      pwrite: (fd, buf, len, offset) => Number(symbols.pwrite(fd, buf, len, offset)),
      fsync: (fd) => symbols.fsync(fd) as number,
      ftruncate: (fd, length) => symbols.ftruncate(fd, length) as number,
      rename: (from, to) => symbols.rename(from, to) as number,
      link: (from, to) => symbols.link(from, to) as number,
      unlink: (path) => symbols.unlink(path) as number,
      mkdir: (path, mode) => symbols.mkdir(path, mode) as number,
      readlink: (path, buf, len) => Number(symbols.readlink(path, buf, len)),
      access: (path, mode) => symbols.access(path, mode) as number,
      statx: (dirfd, path, flags, mask, buf) => symbols.statx(dirfd, path, flags, mask, buf) as number,
      errno: () => ffi.read.i32(symbols.__errno_location() as number, 0),
    };
  } catch {
    loaded = null;
  }
  return loaded;
}

/** libc's netlink calls through bun:ffi, or null outside Bun or when libc cannot be opened. */
export const libc = (): Libc | null => bound();

/** read(2) and isatty(3) on the process's own descriptors, or null as libc(). */
export const stdio = (): Stdio | null => bound();

/** ioctl NS_GET_NSTYPE, or null as libc(). */
export const nsCalls = (): NsCalls | null => bound();

/** The file calls, or null as libc(). */
export const fileCalls = (): FileCalls | null => bound();

/** libc, or an error naming `program` where this runtime cannot reach it (only Bun can). */
export function requireLibc(program: string): Libc {
  const c = libc();
  if (!c) throw new Error(`${program} reaches the kernel through netlink, which needs the Bun runtime (bun:ffi); this runtime has none`);
  return c;
}

/** The part of bun:ffi used here (Bun's types are not installed: the code type-checks for Node). */
interface BunFfi {
  dlopen(path: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  read: { i32(ptr: number, offset: number): number };
}

/** errno names and the words libc's strerror uses, for the errors that carry them. */
const ERRNO: Record<number, [string, string]> = {
  1: ["EPERM", "Operation not permitted"],
  2: ["ENOENT", "No such file or directory"],
  3: ["ESRCH", "No such process"],
  4: ["EINTR", "Interrupted system call"],
  5: ["EIO", "Input/output error"],
  6: ["ENXIO", "No such device or address"],
  9: ["EBADF", "Bad file descriptor"],
  11: ["EAGAIN", "Resource temporarily unavailable"],
  12: ["ENOMEM", "Cannot allocate memory"],
  13: ["EACCES", "Permission denied"],
  16: ["EBUSY", "Device or resource busy"],
  17: ["EEXIST", "File exists"],
  18: ["EXDEV", "Invalid cross-device link"],
  19: ["ENODEV", "No such device"],
  20: ["ENOTDIR", "Not a directory"],
  21: ["EISDIR", "Is a directory"],
  22: ["EINVAL", "Invalid argument"],
  23: ["ENFILE", "Too many open files in system"],
  24: ["EMFILE", "Too many open files"],
  28: ["ENOSPC", "No space left on device"],
  30: ["EROFS", "Read-only file system"],
  34: ["ERANGE", "Numerical result out of range"],
  36: ["ENAMETOOLONG", "File name too long"],
  39: ["ENOTEMPTY", "Directory not empty"],
  40: ["ELOOP", "Too many levels of symbolic links"],
  95: ["EOPNOTSUPP", "Operation not supported"],
  97: ["EAFNOSUPPORT", "Address family not supported by protocol"],
  99: ["EADDRNOTAVAIL", "Cannot assign requested address"],
  101: ["ENETUNREACH", "Network is unreachable"],
  105: ["ENOBUFS", "No buffer space available"],
  110: ["ETIMEDOUT", "Connection timed out"],
  113: ["EHOSTUNREACH", "No route to host"],
  122: ["EDQUOT", "Disk quota exceeded"],
};

/** The errno numbers code decides on by name (the table above gives their text). */
export const Errno = { EPERM: 1, ENOENT: 2, EBUSY: 16, EEXIST: 17, EOPNOTSUPP: 95 } as const;

/** The errno's name (ENOENT), as node:fs puts it in an error's code; `E<n>` for one not listed. */
export const errnoName = (errno: number): string => ERRNO[errno]?.[0] ?? `E${errno}`;

/** The words libc's strerror uses for the errno (No such file or directory); `errno <n>` for one not listed. */
export const errnoMessage = (errno: number): string => ERRNO[errno]?.[1] ?? `errno ${errno}`;

export const errnoText = (errno: number): string => (ERRNO[errno] ? `${errnoMessage(errno)} (${errnoName(errno)})` : errnoMessage(errno));
