import { runPlugin } from "../../shared/cni/skel.js";

/**
 * The `twill` executable: wires the process to the plugin, nothing else. The plugin's modules
 * (and twill-ipam's, run in-process) are imported only for a command that needs them.
 */
export const main = () =>
  runPlugin(
    async () => {
      const { createTwillPlugin, createIpamPlugin } = await import("../loaded.js");
      return createTwillPlugin({ env: process.env, localIpam: (logger) => createIpamPlugin({ logger }) });
    },
    "twill: Kubernetes pod networking on a Linux bridge",
    { inspectNetns: async (path) => (await import("../loaded.js")).inspectNetns(path) },
  );
