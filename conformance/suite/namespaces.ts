import { IpRoute, KernelError } from "../../shared/kernel/iproute.js";
import type { NsState } from "./attachment.js";

/**
 * The namespaces the suite builds: a node namespace per case, where the plugin runs as a
 * runtime would run it, and pod namespaces. Every name carries the run's prefix and is
 * recorded, so an interrupted run still deletes exactly what it made and nothing else.
 */

export const netnsPath = (name: string): string => `/var/run/netns/${name}`;

export class Namespaces {
  private readonly made = new Set<string>();
  private readonly root = new IpRoute(null);

  constructor(readonly prefix: string) {}

  /** Creates `<prefix>-<suffix>` with its loopback up, as a runtime's sandbox has. */
  async create(suffix: string): Promise<string> {
    const name = `${this.prefix}-${suffix}`;
    this.made.add(name);
    await this.root.exec(["netns", "add", name], `create namespace "${name}"`);
    await new IpRoute(netnsPath(name)).exec(["link", "set", "lo", "up"], `set lo up in "${name}"`);
    return name;
  }

  has = (name: string): boolean => this.made.has(name);

  /** Deletes one namespace; one that is already gone is fine. */
  async remove(name: string): Promise<void> {
    try {
      await this.root.exec(["netns", "del", name], `delete namespace "${name}"`);
    } catch (err) {
      if (!(err instanceof KernelError && err.notFound)) throw err;
    }
    this.made.delete(name);
  }

  async removeAll(): Promise<void> {
    const errors: string[] = [];
    for (const name of [...this.made]) {
      await this.remove(name).catch((err: Error) => errors.push(err.message));
    }
    if (errors.length > 0) throw new Error(errors.join("; "));
  }
}

/** Links, addresses and routes (all tables) of a namespace. */
export async function readNamespace(name: string): Promise<NsState> {
  const ip = new IpRoute(netnsPath(name));
  const [links, addrs, r4, r6] = await Promise.all([
    ip.links(),
    ip.addrs(),
    ip.routes(4, ["table", "all"]),
    ip.routes(6, ["table", "all"]),
  ]);
  return {
    links,
    addrs,
    routes: [...r4.map((route) => ({ family: 4 as const, route })), ...r6.map((route) => ({ family: 6 as const, route }))],
  };
}

/** Runs `ip ARGS` inside the named namespace. */
export const ipIn = (name: string, args: readonly (string | number)[], op: string): Promise<string> =>
  new IpRoute(netnsPath(name)).exec(args, op);

/**
 * Adds a stand-in interface named `name` to a namespace: one end of a veth pair whose other
 * end stays beside it (`dummy` links need a kernel module that is not always there).
 */
export async function addStandIn(ns: string, name: string): Promise<void> {
  await ipIn(ns, ["link", "add", name, "type", "veth", "peer", "name", `${name}p`], `add stand-in interface "${name}"`);
  for (const end of [name, `${name}p`]) await ipIn(ns, ["link", "set", end, "up"], `set "${end}" up`);
}
