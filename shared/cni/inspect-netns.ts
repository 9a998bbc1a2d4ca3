import { closeSync, constants, openSync, readFileSync, readlinkSync, statSync } from "../fs-sync.js";
import { nsCalls } from "../kernel/netlink/libc.js";
import { CniError, Code } from "./errors.js";
import type { NetnsKind } from "./netns.js";

/**
 * What CNI_NETNS names (netns.ts). Every namespace file lives on nsfs (one device for all) and
 * its inode number is the namespace's, so the plugin's own is the one whose inode
 * /proc/self/ns/net has. Part of the plugin's chunk (plugins/loaded.ts): ADD and CHECK load it
 * with the plugin, and VERSION, which inspects nothing, loads neither.
 */
export function inspectNetns(path: string): NetnsKind {
  let st: { dev: number; ino: number; isFile(): boolean };
  try {
    st = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw new CniError(Code.InvalidNetns, `failed to inspect network namespace ${path}: ${(err as Error).message}`);
  }
  const own = statSync("/proc/self/ns/net");
  // Namespace files are regular files to stat; a directory or a FIFO is none.
  if (!st.isFile() || st.dev !== own.dev) return "not-a-netns";
  if (st.ino === own.ino) return "own";
  const type = namespaceType(path, st.ino);
  return type === undefined || type === "net" ? "other" : "not-a-netns";
}

const CLONE_NEWNET = 0x40000000;

/**
 * The kind of namespace (net, mnt, ...) a namespace file is, as the kernel says of it open
 * (NS_GET_NSTYPE): "net" or "other". Where the kernel cannot say, as the file names it.
 */
function namespaceType(path: string, ino: number): string | undefined {
  const calls = nsCalls();
  if (calls) {
    let fd: number | undefined;
    try {
      // Non-blocking: the path may have become a FIFO since it was looked at.
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      const type = calls.nsType(fd);
      if (type > 0) return type === CLONE_NEWNET ? "net" : "other";
    } catch {
      // Not to be opened: as the file names it.
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  return namespaceTypeByName(path, ino);
}

/**
 * The kind of namespace a namespace file is by its name: a /proc/PID/ns link says it when read;
 * a bind mount (/var/run/netns/NAME) is a mount whose root is "net:[inode]", found among all
 * the process's mounts (hundreds on a node with pods).
 */
function namespaceTypeByName(path: string, ino: number): string | undefined {
  const named = (text: string) => new RegExp(`^(\\w+):\\[${ino}\\]$`).exec(text)?.[1];
  try {
    const type = named(readlinkSync(path));
    if (type) return type;
  } catch {
    // Not a link: a bind mount.
  }
  try {
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const type = named(line.split(" ")[3] ?? "");
      if (type) return type;
    }
  } catch {
    // No /proc/self/mountinfo: let the kernel judge when the namespace is entered.
  }
  return undefined;
}
