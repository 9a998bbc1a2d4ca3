import { basename } from "node:path";
import { main as ipamMain } from "../ipam/main.js";
import { main as twillMain } from "./twill/main.js";

/**
 * The per-pod executable. One file serves both plugins and picks by the name it was started
 * under, so `ipam.type: twill-ipam` inside `twill` never starts a second process.
 * Only plugin code is imported here: no Kubernetes client, etcd client or yargs.
 */
const name = basename(process.argv0 || process.argv[1] || "twill");
void (name.startsWith("twill-ipam") ? ipamMain() : twillMain());
