import { readFileSync, writeFileSync } from "../fs-sync.js";

/**
 * Kernel parameters through /proc/sys. `net.*` keys belong to the network namespace of the
 * process that opens the file, so these act on the namespace twill runs in, with no process
 * start. Keys are `net.ipv4.ip_forward` or, when a part holds dots (an interface name such
 * as `eth0.10`), the path form `net/ipv4/conf/eth0.10/forwarding`.
 */

export const sysctlPath = (key: string): string => `/proc/sys/${key.includes("/") ? key : key.replace(/\./g, "/")}`;

export function readSysctl(key: string): string | null {
  try {
    return readFileSync(sysctlPath(key), "utf8").trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/**
 * Sets `key` to `value` unless it already has it (writing `ip_forward` resets per-interface
 * settings, so an unchanged value is not rewritten). Returns true when it wrote. `optional`:
 * a key that does not exist (IPv6 disabled, no such interface) is not an error.
 */
export function ensureSysctl(key: string, value: string, opts: { optional?: boolean } = {}): boolean {
  const current = readSysctl(key);
  if (current === null) {
    if (opts.optional) return false;
    throw new Error(`failed to set sysctl ${key}: it does not exist`);
  }
  if (current === value) return false;
  try {
    writeFileSync(sysctlPath(key), value);
  } catch (err) {
    throw new Error(`failed to set sysctl ${key}=${value}: ${(err as Error).message}`);
  }
  return true;
}
