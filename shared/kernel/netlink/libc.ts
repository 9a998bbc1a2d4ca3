/**
 * The few libc calls netlink needs, through Bun's FFI: twill's one runtime (the compiled
 * executable, and the privileged tests, which run on Bun). `libc()` is null on a runtime
 * without it (Node: the unit tests, which never reach the kernel).
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

/** The libc calls a CNI plugin reads its config and writes its answer with. */
export interface Stdio {
  read(fd: number, buf: Uint8Array, len: number): number;
  write(fd: number, buf: Uint8Array, len: number): number;
  isatty(fd: number): boolean;
  errno(): number;
}

/** ioctl(2) on a namespace file: which kind of namespace it is (a CLONE_NEW* flag; Linux 4.11). */
const NS_GET_NSTYPE = 0xb703;

interface NsCalls {
  /** The CLONE_NEW* flag of the namespace open at `fd`; -1 when the kernel cannot say. */
  nsType(fd: number): number;
}

let loaded: (Libc & Stdio & NsCalls) | null | undefined;

/**
 * Every call twill makes through bun:ffi, bound by one dlopen: it is the opening of the FFI that
 * costs (a fraction of a millisecond, a large part of a VERSION answer), hardly each symbol.
 * Null outside Bun or when libc cannot be opened.
 */
function bound(): (Libc & Stdio & NsCalls) | null {
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
      errno: () => ffi.read.i32(symbols.__errno_location() as number, 0),
    };
  } catch {
    loaded = null;
  }
  return loaded;
}

/** libc's netlink calls through bun:ffi, or null outside Bun or when libc cannot be opened. */
export const libc = (): Libc | null => bound();

/**
 * read(2) and write(2) on the process's own descriptors, or null as libc(). Bun reads a pipe and
 * writes to one on a pool of threads it starts for the purpose, which costs a plugin more than
 * moving the few hundred bytes of its config and answer on its own thread.
 */
export const stdio = (): Stdio | null => bound();

/** ioctl NS_GET_NSTYPE, or null as libc(). */
export const nsCalls = (): NsCalls | null => bound();

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
  9: ["EBADF", "Bad file descriptor"],
  11: ["EAGAIN", "Resource temporarily unavailable"],
  12: ["ENOMEM", "Cannot allocate memory"],
  13: ["EACCES", "Permission denied"],
  16: ["EBUSY", "Device or resource busy"],
  17: ["EEXIST", "File exists"],
  19: ["ENODEV", "No such device"],
  22: ["EINVAL", "Invalid argument"],
  34: ["ERANGE", "Numerical result out of range"],
  95: ["EOPNOTSUPP", "Operation not supported"],
  97: ["EAFNOSUPPORT", "Address family not supported by protocol"],
  99: ["EADDRNOTAVAIL", "Cannot assign requested address"],
  101: ["ENETUNREACH", "Network is unreachable"],
  105: ["ENOBUFS", "No buffer space available"],
  110: ["ETIMEDOUT", "Connection timed out"],
  113: ["EHOSTUNREACH", "No route to host"],
};

/** The errno numbers code decides on by name (the table above gives their text). */
export const Errno = { EPERM: 1, ENOENT: 2, EBUSY: 16, EEXIST: 17, EOPNOTSUPP: 95 } as const;

export const errnoText = (errno: number): string => (ERRNO[errno] ? `${ERRNO[errno][1]} (${ERRNO[errno][0]})` : `errno ${errno}`);
