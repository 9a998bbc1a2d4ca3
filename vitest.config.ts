import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The privileged tier runs on Bun (scripts/test), as twill does. Bun answers the bare name
 * "undici" with a built-in whose fetch ignores the dispatcher @kubernetes/client-node passes,
 * and with it the apiserver's CA (oven-sh/bun#7332): the client is loaded through Vite here,
 * with "undici" resolved to the package it is written for, as scripts/lib/compile.ts does for
 * the executable.
 */
const realUndici = fileURLToPath(new URL("./node_modules/undici/index.js", import.meta.url));

// Two tiers: `unit` is pure logic on plain data and runs anywhere; `privileged` needs root,
// builds its own network namespaces and runs the built executables from dist/bin.
export default defineConfig({
  test: {
    // Only the unit tier uses the threads pool; the privileged tier's forks stay isolated.
    poolOptions: { threads: { isolate: false } },
    projects: [
      {
        test: {
          name: "unit",
          include: ["{cmd,shared,ipam,plugins,agent,conformance,testkit}/**/*.test.ts"],
          exclude: ["**/*.priv.test.ts", "**/node_modules/**"],
          // Pure code on plain data, with no module mocks, stubbed globals or global fake
          // timers (clocks are injected): files share worker threads and their loaded modules
          // instead of a fresh process and module graph each, which was most of the tier's time.
          // (The threads pool is made from the root's poolOptions, below.)
          pool: "threads",
          poolOptions: { threads: { isolate: false } },
        },
      },
      {
        test: {
          name: "privileged",
          alias: [{ find: /^undici$/, replacement: realUndici }],
          server: { deps: { inline: [/@kubernetes\/client-node/] } },
          include: ["{cmd,shared,ipam,plugins,agent,conformance,testkit}/**/*.priv.test.ts"],
          exclude: ["**/node_modules/**"],
          // Namespaces, daemons and real clusters: slow by nature, and the machine has 2 cores.
          testTimeout: 120_000,
          hookTimeout: 300_000,
          // One file at a time: namespaces and daemons of two files must not compete for
          // the 2 cores and make each other's bounded waits flaky.
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
