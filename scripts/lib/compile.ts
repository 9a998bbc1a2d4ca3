// Compiles an entry into a single-file Bun executable, for scripts/build:
//
//   bun scripts/lib/compile.ts ENTRY OUTFILE
//
// - ESM with code splitting: each import() is a chunk of its own inside the file, evaluated
//   only when imported. One file carries the plugin and the agent, and a pod's ADD or VERSION
//   loads none of the agent's chunks (cmd/main.ts).
// - Bytecode: each chunk's compiled code is stored in the file, not parsed again at every start.
// - No .env or bunfig.toml read from the working directory at start-up: a runtime runs the
//   plugin wherever it happens to be, and nothing there may change its environment.
// - @kubernetes/client-node's imports of "undici" go to the undici package it is written for.
//   Bun answers the bare name "undici" with a built-in of its own whose fetch ignores the
//   `dispatcher` the client passes, and with it the cluster's CA and client certificate (every
//   request to an apiserver with its own CA fails; oven-sh/bun#7332, #19754). The package's
//   file path is not the bare name, so the bundler takes the real one.
import { readFileSync } from "node:fs";

/** The part of Bun's build API used here (Bun's types are not installed: scripts type-check for Node). */
interface BunBuilder {
  build(config: {
    entrypoints: string[];
    compile: { outfile: string; autoloadDotenv: boolean; autoloadBunfig: boolean };
    target: "bun";
    format: "esm";
    splitting: boolean;
    bytecode: boolean;
    minify: boolean;
    plugins: BunPlugin[];
    throw: boolean;
  }): Promise<{ success: boolean; logs: unknown[] }>;
}
interface BunPlugin {
  name: string;
  setup(build: { onLoad(opts: { filter: RegExp }, load: (args: { path: string }) => { contents: string; loader: "js" }): void }): void;
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

const [entry, outfile] = process.argv.slice(2);
if (!entry || !outfile) {
  console.error("usage: bun scripts/lib/compile.ts ENTRY OUTFILE");
  process.exit(2);
}
const bun = (globalThis as unknown as { Bun: BunBuilder }).Bun;
const result = await bun.build({
  entrypoints: [entry],
  compile: { outfile, autoloadDotenv: false, autoloadBunfig: false },
  target: "bun",
  format: "esm",
  splitting: true,
  bytecode: true,
  minify: true,
  plugins: [realUndici],
  throw: false,
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
