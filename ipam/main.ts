import { runPlugin } from "../shared/cni/skel.js";

/**
 * twill-ipam as its own process, for the reference bridge or any plugin that delegates. Its
 * modules are imported only for a command that needs them.
 */
export const main = () =>
  runPlugin(
    async () => {
      const { createIpamPlugin, fileLogger } = await import("../plugins/loaded.js");
      return createIpamPlugin({ logger: fileLogger(process.env.TWILL_LOG_FILE || "/var/log/twill/twill.log").with({ plugin: "twill-ipam" }) });
    },
    "twill-ipam: cluster-unique pod addresses in host-local's store layout",
  );
