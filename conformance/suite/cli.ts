import { writeSync } from "node:fs";
import { parseCli } from "./args.js";
import type { SuiteSetup } from "./context.js";
import { Namespaces } from "./namespaces.js";
import { anyFailed, renderTable } from "./report.js";
import { disposeSuite, runPrefix, runSuite } from "./suite.js";

/** scripts/conformance: runs the suite against one plugin and prints the results. */

async function main(): Promise<number> {
  const parsed = parseCli(process.argv.slice(2));
  if ("help" in parsed) {
    writeSync(parsed.status === 0 ? 1 : 2, parsed.help);
    return parsed.status;
  }
  if (process.getuid?.() !== 0) {
    writeSync(2, "conformance: needs root (it creates network namespaces)\n");
    return 2;
  }
  const namespaces = new Namespaces(runPrefix());
  let setup: SuiteSetup | null = null;
  const interrupted = async (signal: string) => {
    writeSync(2, `\nconformance: ${signal}, removing this run's namespaces\n`);
    await (setup ? disposeSuite(setup) : namespaces.removeAll()).catch(() => {});
    process.exit(130);
  };
  process.once("SIGINT", () => void interrupted("SIGINT"));
  process.once("SIGTERM", () => void interrupted("SIGTERM"));

  const run = await runSuite(
    parsed,
    (r) => {
      if (!parsed.json) writeSync(2, `${r.id.padEnd(5)} ${r.result.padEnd(4)} ${r.name}\n`);
    },
    (s) => {
      setup = s;
    },
    namespaces,
  );
  if (parsed.json) writeSync(1, JSON.stringify(run, null, 2) + "\n");
  else writeSync(1, `\nplugin ${run.plugin} (VERSION: ${run.supportedVersions.join(", ") || "none"})\n\n${renderTable(run.results)}`);
  return anyFailed(run.results) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    writeSync(2, `conformance: ${err.message}\n`);
    process.exit(2);
  },
);
