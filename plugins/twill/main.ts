import { createIpamPlugin } from "../../ipam/plugin.js";
import { runPlugin } from "../../shared/cni/skel.js";
import { createTwillPlugin } from "./plugin.js";

/** The `twill` executable: wires the process to the plugin, nothing else. */
export const main = () =>
  runPlugin(
    createTwillPlugin({ env: process.env, localIpam: (logger) => createIpamPlugin({ logger }) }),
    "twill: Kubernetes pod networking on a Linux bridge",
    { checkNetns: true },
  );
