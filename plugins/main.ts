import { basename } from "node:path";

/**
 * The per-pod executable. One file serves both plugins and picks by the name it was started
 * under, so `ipam.type: twill-ipam` inside `twill` never starts a second process.
 * Only plugin code is imported here: no Kubernetes client, etcd client or yargs.
 */
const name = basename(process.argv0 || process.argv[1] || "twill");
if (name.startsWith("twill-ipam")) {
  const { main } = await import("../ipam/main.js");
  await main();
} else {
  const { main } = await import("./twill/main.js");
  await main();
}
