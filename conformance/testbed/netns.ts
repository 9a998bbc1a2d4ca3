import { execFileSync } from "node:child_process";
import { execa, type Options } from "execa";
import { IpRoute } from "../../shared/kernel/iproute.js";

/**
 * Named network namespaces for the testbed. Everything here acts inside namespaces the
 * testbed created; the machine's own namespace is only asked to create and delete them.
 */

export const netnsPath = (name: string): string => `/run/netns/${name}`;

/** iproute2 bound to a testbed namespace. */
export const ipIn = (ns: string): IpRoute => new IpRoute(netnsPath(ns));

const root = new IpRoute(null);

export async function addNetns(name: string): Promise<void> {
  await root.exec(["netns", "add", name], `create network namespace "${name}"`);
  await ipIn(name).exec(["link", "set", "lo", "up"], `set lo up in "${name}"`);
}

export async function deleteNetns(name: string): Promise<void> {
  await root.exec(["netns", "del", name], `delete network namespace "${name}"`).catch(() => undefined);
}

/** Testbed namespaces present now whose names start with `prefix`. */
export async function listNetns(prefix: string): Promise<string[]> {
  const list = await root.json<{ name: string }[]>(["netns", "list"], "list network namespaces");
  return list.map((n) => n.name).filter((n) => n.startsWith(prefix));
}

/** Synchronous delete, for exit handlers where nothing asynchronous runs any more. */
export function deleteNetnsSync(name: string): void {
  try {
    execFileSync("ip", ["netns", "del", name], { stdio: "ignore" });
  } catch {
    // Already gone.
  }
}

/** Runs a command inside a namespace (a test harness may start processes directly). */
export function inNetns(ns: string, argv: readonly string[], opts: Options = {}) {
  return execa("ip", ["netns", "exec", ns, ...argv], { reject: false, ...opts });
}

/** Sets sysctls inside a namespace (`net.*` keys are per namespace). */
export async function sysctls(ns: string, values: Record<string, string | number>): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  const r = await inNetns(ns, ["sysctl", "-q", "-w", ...args]);
  if (r.exitCode !== 0) throw new Error(`failed to set ${args.join(" ")} in "${ns}": ${String(r.stderr)}`);
}
