import { programFor } from "./program.js";

/**
 * The entry of twill's one executable (scripts/build). Each program is imported only once it
 * is chosen, and the compiled file holds each as a chunk of its own: a pod's ADD or VERSION never
 * evaluates the agent's modules (the Kubernetes client, yargs, prom-client), nor twill-ipam
 * alone twill's. The import() specifiers stay literal so that the bundler can split there.
 */
switch (programFor(process.argv0, process.argv[1])) {
  case "twilld":
    await (await import("../agent/main.js")).main();
    break;
  case "twill-ipam":
    await (await import("../ipam/main.js")).main();
    break;
  case "twill":
    await (await import("../plugins/twill/main.js")).main();
    break;
}
