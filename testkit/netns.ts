import { execFileSync } from "node:child_process";
import { execa, type Options } from "execa";
import { KernelError } from "../shared/kernel/types.js";
import { nodeKernel } from "../shared/kernel/netlink/node.js";
import type { NodeKernel } from "../shared/kernel/node-kernel.js";
import { IpRoute } from "./iproute.js";

/**
 * Named network namespaces for tests, the testbed, the suite and benchmarks. Everything here
 * acts inside namespaces a test created; the machine's own namespace is only asked to create
 * and delete them.
 */

export const netnsPath = (name: string): string => `/run/netns/${name}`;

/** iproute2 bound to a test namespace: the tests' own view of it. */
export const ipIn = (ns: string): IpRoute => new IpRoute(netnsPath(ns));

/** twill's node kernel (netlink) bound to a test namespace; needs the Bun runtime, as twilld does. */
export const kernelIn = (ns: string): NodeKernel => nodeKernel(netnsPath(ns));

const root = new IpRoute(null);

/** Creates a namespace with its loopback up, as a runtime's sandbox has. */
export async function addNetns(name: string): Promise<void> {
  await root.exec(["netns", "add", name], `create network namespace "${name}"`);
  await ipIn(name).exec(["link", "set", "lo", "up"], `set lo up in "${name}"`);
}

/** Deletes a namespace; one that is already gone is fine, any other failure throws. */
export async function removeNetns(name: string): Promise<void> {
  try {
    await root.exec(["netns", "del", name], `delete network namespace "${name}"`);
  } catch (err) {
    if (!(err instanceof KernelError && err.notFound)) throw err;
  }
}

/** Deletes a namespace, ignoring every failure (teardown). */
export async function deleteNetns(name: string): Promise<void> {
  await removeNetns(name).catch(() => undefined);
}

/** Namespaces present now whose names start with `prefix`. */
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
export function inNetns<O extends Options = {}>(ns: string, argv: readonly string[], opts?: O) {
  return execa("ip", ["netns", "exec", ns, ...argv], { reject: false, ...opts } as O & { reject: false });
}

/** Sets sysctls inside a namespace (`net.*` keys are per namespace). */
export async function sysctls(ns: string, values: Record<string, string | number>): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  const r = await inNetns(ns, ["sysctl", "-q", "-w", ...args]);
  if (r.exitCode !== 0) throw new Error(`failed to set ${args.join(" ")} in "${ns}": ${String(r.stderr)}`);
}
