import { main as twillIpam } from "../ipam/main.js";
import { main as twill } from "../plugins/twill/main.js";
import { programFor, type Program } from "./program.js";

/**
 * The entry of twill's one executable (scripts/build). The CNI plugins' entries are part of it:
 * they hold the CNI protocol alone and import the rest per command, so a VERSION loads nothing
 * more. The agent is a module of its own in the compiled file, imported only when chosen: a pod's
 * ADD never evaluates its modules (the Kubernetes client, yargs, prom-client). The import()
 * specifier stays literal: scripts/lib/compile.ts finds it and swaps in the agent's bundle,
 * embedded as plain source.
 */
const programs: Record<Program, () => Promise<unknown>> = {
  twill,
  "twill-ipam": twillIpam,
  twilld: async () => (await import("../agent/main.js")).main(),
};
await programs[programFor(process.argv0, process.argv[1])]();
