// Compiles an entry into a single-file Bun executable, for scripts/build:
//
//   bun scripts/lib/compile.ts ENTRY OUTFILE [--plain SPECIFIER]... [--bytecode-order FILE,...]
//
// - ESM with code splitting: each import() is a chunk of its own inside the file, evaluated
//   only when imported. One file carries the plugin and the agent, and a pod's ADD or VERSION
//   loads none of the agent's code (cmd/main.ts).
// - Bytecode: each chunk's compiled code is stored in the file, not parsed again at every start.
//   Start-up is most of a CNI ADD, so the plugin's chunks keep it.
// - --plain SPECIFIER: ENTRY's literal `import("SPECIFIER")` (cmd/main.ts: the agent) is first
//   bundled alone into one minified ES module, embedded in the executable as a file and imported
//   from there as source, without bytecode. Bytecode is several times the size of its source, and
//   the agent's (mostly @kubernetes/client-node) was most of what the executable carried beyond
//   Bun's runtime; the agent starts once per node and can parse its source. ENTRY keeps the
//   literal import() for tsc, the tests and the bundler; only the compiled file swaps it. The
//   bundle, written beside OUTFILE and removed once compiled, is made ASCII: Bun's printer
//   escapes every other character in code but keeps legal comments (`/*! ... */`) as they are,
//   and one such character has the runtime hold the whole source as UTF-16, twice its size, for
//   as long as the agent runs.
// - --bytecode-order FILE,...: the bytecode laid out in the order runs of an earlier build used
//   it (files written with BUN_BYTECODE_ORDER_OUT, the most common run first;
//   scripts/lib/bytecode-order.ts records a pod's calls): what a call runs is together at the
//   front, and its start faults in fewer pages of the file.
// - No .env or bunfig.toml read from the working directory at start-up: a runtime runs the
//   plugin wherever it happens to be, and nothing there may change its environment.
// - @kubernetes/client-node's imports of "undici" go to the undici package it is written for.
//   Bun answers the bare name "undici" with a built-in of its own whose fetch ignores the
//   `dispatcher` the client passes, and with it the cluster's CA and client certificate (every
//   request to an apiserver with its own CA fails; oven-sh/bun#7332, #19754). The package's
//   file path is not the bare name, so the bundler takes the real one.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";

/** The part of Bun's build API used here (Bun's types are not installed: scripts type-check for Node). */
interface BunBuilder {
  build(config: {
    entrypoints: string[];
    compile?: { outfile: string; autoloadDotenv: boolean; autoloadBunfig: boolean; bytecodeOrder?: string[] };
    target: "bun";
    format: "esm";
    splitting?: boolean;
    bytecode?: boolean;
    minify: boolean;
    plugins: BunPlugin[];
    throw: boolean;
  }): Promise<{ success: boolean; logs: unknown[]; outputs: { path: string; text(): Promise<string> }[] }>;
}
interface BunPlugin {
  name: string;
  setup(build: { onLoad(opts: { filter: RegExp }, load: (args: { path: string }) => { contents: string; loader: "js" | "ts" }): void }): void;
}

const CLIENT_NODE_FILE = /\/node_modules\/@kubernetes\/client-node\/dist\/.*\.js$/;
const BARE_UNDICI = /(\bfrom\s*|\bimport\s*\(\s*)(["'])undici\2/g;

const realUndici: BunPlugin = {
  name: "real undici for @kubernetes/client-node",
  setup(build) {
    build.onLoad({ filter: CLIENT_NODE_FILE }, ({ path }) => ({
      contents: readFileSync(path, "utf8").replace(BARE_UNDICI, "$1$2undici/index.js$2"),
      loader: "js",
    }));
  },
};

/** Where SPECIFIER, imported by ENTRY, goes when bundled alone: "../agent/main.js" → "agent-main.js". */
const bundleName = (specifier: string): string =>
  specifier.split("/").filter((part) => part !== "." && part !== "..").join("-");

/** Every character outside ASCII as its `\uXXXX` escape (UTF-16 code units, as a JS string holds them). */
const asAscii = (source: string): string =>
  source.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

const exactly = (path: string): RegExp => new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);

/**
 * ENTRY's `import("SPECIFIER")` becomes an import of the embedded file the bundle is. A specifier
 * not found is an error: the import would otherwise be compiled with bytecode, silently.
 */
function embedPlain(entry: string, bundles: Map<string, string>): BunPlugin {
  const entryPath = resolve(entry);
  return {
    name: "plain embedded modules",
    setup(build) {
      build.onLoad({ filter: exactly(entryPath) }, ({ path }) => {
        let contents = readFileSync(path, "utf8");
        let n = 0;
        for (const [specifier, file] of bundles) {
          const literal = `import(${JSON.stringify(specifier)})`;
          if (!contents.includes(literal)) throw new Error(`${entry} has no literal ${literal} to replace`);
          contents = `import plainModule${n} from ${JSON.stringify(file)} with { type: "file" };\n` + contents.replaceAll(literal, `import(plainModule${n})`);
          n++;
        }
        return { contents, loader: "ts" };
      });
    },
  };
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { plain: { type: "string", multiple: true, default: [] }, "bytecode-order": { type: "string" } },
});
const [entry, outfile] = positionals;
if (!entry || !outfile || positionals.length > 2) {
  console.error("usage: bun scripts/lib/compile.ts ENTRY OUTFILE [--plain SPECIFIER]... [--bytecode-order FILE,...]");
  process.exit(2);
}
const bun = (globalThis as unknown as { Bun: BunBuilder }).Bun;
const order = values["bytecode-order"]?.split(",").filter((f) => f !== "");

class BuildFailed extends Error {}

function check(result: { success: boolean; logs: unknown[] }): void {
  if (result.success) return;
  for (const log of result.logs) console.error(log);
  throw new BuildFailed();
}

const plainDir = join(dirname(outfile), `${basename(outfile)}.plain`);
const bundles = new Map<string, string>();
try {
  for (const specifier of values.plain) {
    mkdirSync(plainDir, { recursive: true });
    const result = await bun.build({
      entrypoints: [resolve(dirname(entry), specifier.replace(/\.js$/, ".ts"))],
      target: "bun",
      format: "esm",
      minify: true,
      plugins: [realUndici],
      throw: false,
    });
    check(result);
    // One file is embedded: an asset the bundle needs beside it would be missing at run time.
    if (result.outputs.length !== 1) throw new Error(`${specifier}: ${result.outputs.length} files bundled, not one: ${result.outputs.map((o) => o.path).join(", ")}`);
    const file = resolve(plainDir, bundleName(specifier));
    writeFileSync(file, asAscii(await result.outputs[0].text()));
    bundles.set(specifier, file);
  }
  check(await bun.build({
    entrypoints: [entry],
    compile: { outfile, autoloadDotenv: false, autoloadBunfig: false, ...(order ? { bytecodeOrder: order } : {}) },
    target: "bun",
    format: "esm",
    splitting: true,
    bytecode: true,
    minify: true,
    plugins: bundles.size ? [realUndici, embedPlain(entry, bundles)] : [realUndici],
    throw: false,
  }));
} catch (err) {
  if (!(err instanceof BuildFailed)) console.error(err);
  process.exitCode = 1;
} finally {
  rmSync(plainDir, { recursive: true, force: true });
}
