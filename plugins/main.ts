import { basename } from "node:path";

/**
 * The per-pod executable. One file serves both plugins and picks by the name it was started
 * under, so `ipam.type: twill-ipam` inside `twill` never starts a second process.
 * Only plugin code is imported here: no Kubernetes client, etcd client or yargs. Each plugin's
 * code is loaded only when it runs: twill-ipam alone does not evaluate twill's modules.
 */
const name = basename(process.argv0 || process.argv[1] || "twill");
if (name.startsWith("twill-ipam")) void (require("../ipam/main.js") as typeof import("../ipam/main.js")).main();
else void (require("./twill/main.js") as typeof import("./twill/main.js")).main();
