import { runPlugin } from "../shared/cni/skel.js";
import { fileLogger } from "../shared/log.js";
import { createIpamPlugin } from "./plugin.js";

/** twill-ipam as its own process, for the reference bridge or any plugin that delegates. */
export const main = () =>
  runPlugin(
    createIpamPlugin({ logger: fileLogger(process.env.TWILL_LOG_FILE || "/var/log/twill/twill.log").with({ plugin: "twill-ipam" }) }),
    "twill-ipam: cluster-unique pod addresses in host-local's store layout",
  );
