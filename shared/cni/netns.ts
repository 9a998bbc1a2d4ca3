import { CniError, Code } from "./errors.js";

/**
 * What CNI_NETNS names, told by the kernel (inspect-netns.ts). A recycled /proc/PID/ns/net (the
 * pod's process gone, the PID reused by a node process) or /proc/self/ns/net would make ADD
 * configure the node as if it were a pod (plugins#714).
 */
export type NetnsKind = "other" | "own" | "missing" | "not-a-netns";

/** libcni's skel lets a caller that means it configure its own namespace (cni#890). */
export const netnsOverride = (value: string | undefined): boolean =>
  value === "1" || value?.toLowerCase() === "true";

/**
 * ADD and CHECK work inside CNI_NETNS: it must be a network namespace, and not the plugin's
 * own unless CNI_NETNS_OVERRIDE says so. Code 8 as in libcni's skel. DEL is not checked: it
 * must succeed whatever the namespace has become.
 */
export async function requirePodNetns(path: string, override: boolean, inspect: (path: string) => NetnsKind | Promise<NetnsKind>): Promise<void> {
  const kind = await inspect(path);
  if (kind === "missing") throw new CniError(Code.InvalidNetns, `network namespace ${path} does not exist`);
  if (kind === "not-a-netns") throw new CniError(Code.InvalidNetns, `CNI_NETNS ${path} is not a network namespace`);
  if (kind === "own" && !override) {
    throw new CniError(Code.InvalidNetns, `CNI_NETNS ${path} is the plugin's own network namespace`, "set CNI_NETNS_OVERRIDE=1 to configure it anyway");
  }
}
