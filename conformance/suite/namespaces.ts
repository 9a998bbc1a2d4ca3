import { addNetns, ipIn, removeNetns } from "../../testkit/netns.js";
import type { NsState } from "./attachment.js";

/**
 * The namespaces the suite builds: a node namespace per case, where the plugin runs as a
 * runtime would run it, and pod namespaces. Every name carries the run's prefix and is
 * recorded, so an interrupted run still deletes exactly what it made and nothing else.
 */

export class Namespaces {
  private readonly made = new Set<string>();

  constructor(readonly prefix: string) {}

  /** Creates `<prefix>-<suffix>` with its loopback up, as a runtime's sandbox has. */
  async create(suffix: string): Promise<string> {
    const name = `${this.prefix}-${suffix}`;
    this.made.add(name);
    await addNetns(name);
    return name;
  }

  has = (name: string): boolean => this.made.has(name);

  /** Deletes one namespace; one that is already gone is fine. */
  async remove(name: string): Promise<void> {
    await removeNetns(name);
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
  const ip = ipIn(name);
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

/**
 * Adds a stand-in interface named `name` to a namespace: one end of a veth pair whose other
 * end stays beside it (`dummy` links need a kernel module that is not always there).
 */
export async function addStandIn(ns: string, name: string): Promise<void> {
  await ipIn(ns).exec(["link", "add", name, "type", "veth", "peer", "name", `${name}p`], `add stand-in interface "${name}"`);
  for (const end of [name, `${name}p`]) await ipIn(ns).exec(["link", "set", end, "up"], `set "${end}" up`);
}
