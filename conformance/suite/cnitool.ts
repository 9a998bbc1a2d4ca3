import { readdirSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../shared/kernel/exec.js";

/**
 * scripts/cnitool: the reference cnitool's command line on top of twill-libcni.
 *
 *   cnitool add|check|del NETWORK NETNS      cnitool status|gc NETWORK
 *
 * NETWORK is looked up by name in NETCONFPATH (default /etc/cni/net.d; .conflist files first,
 * then .conf and .json, each in name order), as cnitool does. CNI_PATH, CNI_IFNAME (default
 * eth0), CNI_ARGS and CAP_ARGS are read from the environment by twill-libcni itself; the
 * container ID is cnitool's, derived from the netns path. Beyond cnitool: CNI_CACHE_DIR moves
 * libcni's result cache, and for gc VALID_ATTACHMENTS gives the JSON list to keep (default:
 * none, so every cached attachment of the network is deleted).
 */

const USAGE = "usage: cnitool add|check|del NETWORK NETNS | cnitool status|gc NETWORK\n";

/** The config file defining `network`, searched the way cnitool's libcni.LoadConfList does. */
export function findNetworkConfig(dir: string, network: string, read = (p: string) => readFileSync(p, "utf8")): string {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    throw new Error(`cannot read NETCONFPATH ${dir}: ${(err as Error).message}`);
  }
  const ordered = [...names.filter((n) => n.endsWith(".conflist")), ...names.filter((n) => n.endsWith(".conf") || n.endsWith(".json"))];
  for (const name of ordered) {
    try {
      if ((JSON.parse(read(join(dir, name))) as { name?: unknown }).name === network) return join(dir, name);
    } catch {
      // Not a config: cnitool skips files it cannot parse while searching.
    }
  }
  throw new Error(`no net configuration with name "${network}" in ${dir}`);
}

/** The twill-libcni argument list for one cnitool command line. */
export function libcniArgs(argv: readonly string[], env: Record<string, string | undefined>): string[] {
  const [command, network, netns] = argv;
  const withNetns = ["add", "check", "del"].includes(command ?? "");
  const without = ["status", "gc"].includes(command ?? "");
  if (!network || (withNetns && (!netns || argv.length !== 3)) || (without && argv.length !== 2) || (!withNetns && !without)) {
    throw new Error(USAGE.trimEnd());
  }
  const args = [command!, ...(withNetns ? [netns!] : []), "--conflist", findNetworkConfig(env.NETCONFPATH || "/etc/cni/net.d", network)];
  if (env.CNI_CACHE_DIR) args.push("--cache-dir", env.CNI_CACHE_DIR);
  if (command === "gc") args.push("--valid-attachments", env.VALID_ATTACHMENTS || "[]");
  return args;
}

async function main(): Promise<number> {
  const [bin, ...argv] = process.argv.slice(2);
  let args: string[];
  try {
    args = libcniArgs(argv, process.env);
  } catch (err) {
    writeSync(2, `cnitool: ${(err as Error).message}\n`);
    return 1;
  }
  const r = await run([bin!, ...args]);
  if (r.stdout) writeSync(1, r.stdout);
  if (r.stderr) writeSync(2, r.stderr);
  return r.code;
}

if (process.argv[1]?.endsWith("cnitool.ts")) process.exit(await main());
