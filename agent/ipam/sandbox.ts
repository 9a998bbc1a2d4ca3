import { networkInterfaces } from "node:os";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { hostVethName } from "../../plugins/twill/names.js";

/**
 * Whether a reservation's sandbox is still up, told on this node without the API: the API
 * shows no sandbox ID (a pod's status names its app containers only), and a static pod whose
 * mirror pod the API refused is not in it at all.
 *
 * The signal is the node end of the sandbox's veth. The twill plugin names it from the
 * container ID (the CNI container ID is the runtime's sandbox ID) and the interface name
 * (plugins/twill/names.ts), and a veth pair lives exactly as long as both its namespaces: the
 * sandbox's network namespace going away deletes it. So the node end present means the
 * sandbox's namespace is alive (not that anything runs in it: the namespace of a sandbox the
 * runtime lost stays mounted, which is why leaks.ts asks this for static pods only); absent,
 * for an attachment the twill plugin made (recorded in the index), means it is gone. The network namespace's own file (/var/run/netns/cni-...) would
 * say the same but is not mounted where twilld runs, and other runtimes keep it elsewhere;
 * links are visible to twilld wherever it runs, as it shares the node's network namespace.
 * For attachments of other plugins (their veth names are random) absence says nothing.
 */

/** "up": the sandbox's veth end is on this node; "gone": it is not (twill's attachments only). */
export type SandboxState = "up" | "gone" | "unknown";

export interface Attachment {
  containerID: string;
  ifname: string;
  /** The network config type that made it (the index's `plugin`). */
  plugin?: string;
}

export type SandboxProbe = (a: Attachment) => SandboxState;

/** Nothing known: every reservation is judged by the API alone. */
export const noSandboxProbe: SandboxProbe = () => "unknown";

/** Which link names a veth probe sees, and which names and indexes this process's own namespace has. */
export interface LinkViews {
  /** Names in /sys/class/net. */
  sysfs: () => string[];
  /** A link's ifindex from /sys/class/net, or undefined. */
  sysfsIndex: (name: string) => number | undefined;
  /** This process's interfaces with addresses (getifaddrs, which always reads its own namespace), with the ifindex IPv6 link-locals carry. */
  own: () => { name: string; index?: number }[];
}

const SYS_CLASS_NET = "/sys/class/net";

export const systemLinkViews: LinkViews = {
  sysfs: () => readdirSync(SYS_CLASS_NET),
  sysfsIndex: (name) => {
    try {
      return Number(readFileSync(join(SYS_CLASS_NET, name, "ifindex"), "utf8").trim());
    } catch {
      return undefined;
    }
  },
  own: () =>
    Object.entries(networkInterfaces()).map(([name, addrs]) => {
      const linkLocal = addrs?.find((a) => a.family === "IPv6" && a.scopeid);
      return linkLocal?.scopeid ? { name, index: linkLocal.scopeid } : { name };
    }),
};

/**
 * A probe reading /sys/class/net once. It is trusted only when that sysfs shows this process's
 * own network namespace: every interface with an address (one other than lo at least) is in
 * it, under the same ifindex where one is known. A sysfs of another namespace (a container's
 * own /sys) would report every veth gone; then every state is "unknown".
 */
export function vethProbe(views: LinkViews = systemLinkViews): SandboxProbe {
  let names: Set<string>;
  try {
    names = new Set(views.sysfs());
  } catch {
    return noSandboxProbe;
  }
  const own = views.own();
  const trusted = own.some((l) => l.name !== "lo") &&
    own.every((l) => names.has(l.name) && (l.index === undefined || views.sysfsIndex(l.name) === l.index));
  if (!trusted) return noSandboxProbe;
  return (a) => {
    if (a.containerID === "") return "unknown";
    if (names.has(hostVethName(a.containerID, a.ifname))) return "up";
    return a.plugin === "twill" ? "gone" : "unknown";
  };
}
