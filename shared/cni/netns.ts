import { readFileSync, readlinkSync, statSync } from "node:fs";
import { CniError, Code } from "./errors.js";

/**
 * What CNI_NETNS names, told by the kernel. Every namespace file lives on nsfs (one device for
 * all) and its inode number is the namespace's, so the plugin's own is the one whose inode
 * /proc/self/ns/net has. A recycled /proc/PID/ns/net (the pod's process gone, the PID reused by
 * a node process) or /proc/self/ns/net would make ADD configure the node as if it were a pod
 * (plugins#714).
 */
export type NetnsKind = "other" | "own" | "missing" | "not-a-netns";

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

/**
 * The kind of namespace (net, mnt, ...) a namespace file is: a /proc/PID/ns link says it when
 * read; a bind mount (/var/run/netns/NAME) is a mount whose root is "net:[inode]".
 */
function namespaceType(path: string, ino: number): string | undefined {
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

/** libcni's skel lets a caller that means it configure its own namespace (cni#890). */
export const netnsOverride = (value: string | undefined): boolean =>
  value === "1" || value?.toLowerCase() === "true";

/**
 * ADD and CHECK work inside CNI_NETNS: it must be a network namespace, and not the plugin's
 * own unless CNI_NETNS_OVERRIDE says so. Code 8 as in libcni's skel. DEL is not checked: it
 * must succeed whatever the namespace has become.
 */
export function requirePodNetns(path: string, override: boolean, inspect: (path: string) => NetnsKind = inspectNetns): void {
  const kind = inspect(path);
  if (kind === "missing") throw new CniError(Code.InvalidNetns, `network namespace ${path} does not exist`);
  if (kind === "not-a-netns") throw new CniError(Code.InvalidNetns, `CNI_NETNS ${path} is not a network namespace`);
  if (kind === "own" && !override) {
    throw new CniError(Code.InvalidNetns, `CNI_NETNS ${path} is the plugin's own network namespace`, "set CNI_NETNS_OVERRIDE=1 to configure it anyway");
  }
}
