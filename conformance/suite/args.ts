import { parseArgs } from "node:util";
import type { SuiteOptions } from "./suite.js";

/** The command line of scripts/conformance. */

export const USAGE = `usage: scripts/conformance --plugin PATH --config CONFLIST_OR_CONF [options]

Runs the CNI conformance cases against a plugin, each in its own node and pod network
namespaces. Needs root. Exits 1 when a case fails.

  --plugin PATH              the plugin binary; its file name is its type
  --config FILE              a .conf, or a .conflist holding an entry of that type
  --cni-path DIRS            CNI_PATH for the plugin (default: the plugin's directory)
  --small-pool-config FILE   a config whose pool holds a few addresses (exhaustion,
                             release and GC checks); host-local ranges are narrowed without it
  --not-ready-config FILE    a config under which STATUS must report 50/51
  --temp-path KEY            a dotted config key (ipam.dataDir) to point at a per-case
                             temp directory; repeatable (default: dataDir keys)
  --unsupported KEY=JSON     a setting the plugin must reject with code 2; repeatable
  --only IDS                 comma-separated case ids or checklist lines (12,14.2)
  --json                     print the results as JSON instead of a table
`;

/** The options, or the usage text with the exit status to leave with (0 when asked for). */
export function parseCli(argv: string[]): (SuiteOptions & { json: boolean }) | { help: string; status: number } {
  const { values } = parseArgs({
    args: argv,
    options: {
      plugin: { type: "string" },
      config: { type: "string" },
      "cni-path": { type: "string" },
      "small-pool-config": { type: "string" },
      "not-ready-config": { type: "string" },
      "temp-path": { type: "string", multiple: true },
      unsupported: { type: "string", multiple: true },
      only: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help || !values.plugin || !values.config) return { help: USAGE, status: values.help ? 0 : 2 };
  const unsupported = (values.unsupported ?? []).map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`--unsupported needs KEY=JSON, got ${JSON.stringify(pair)}`);
    return { key: pair.slice(0, eq), value: JSON.parse(pair.slice(eq + 1)) as unknown };
  });
  return {
    plugin: values.plugin,
    config: values.config,
    ...(values["cni-path"] ? { cniPath: values["cni-path"] } : {}),
    ...(values["small-pool-config"] ? { smallPoolConfig: values["small-pool-config"] } : {}),
    ...(values["not-ready-config"] ? { notReadyConfig: values["not-ready-config"] } : {}),
    ...(values["temp-path"] ? { tempPaths: values["temp-path"] } : {}),
    unsupported,
    only: values.only ? values.only.split(",").map((s) => s.trim()).filter(Boolean) : [],
    json: values.json,
  };
}

