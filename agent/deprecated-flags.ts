import { dirname } from "node:path";
import type { Logger } from "../shared/log.js";

/**
 * Flags an earlier release took and this one no longer reads. Each is still accepted, so a
 * manifest written for that release keeps starting, and said once to be deprecated.
 */
export const deprecatedFlags = {
  // The data dir above --ipam-store, which could disagree with it; the data dir is now the one
  // holding --ipam-store.
  "ipam-dir": { type: "string", deprecated: "not read: the data dir is the one holding --ipam-store", describe: "The IPAM data dir, searched for pods left on a subnet the node lost" },
} as const;

/** Says once which deprecated flags were given and what is used instead. */
export function warnDeprecatedFlags(a: { "ipam-dir"?: unknown; "ipam-store"?: unknown }, logger: Logger): void {
  if (a["ipam-dir"] === undefined) return;
  logger.warn("--ipam-dir is deprecated and not read: pods left on a lost subnet are looked for in the data dir holding --ipam-store", {
    ipamDir: String(a["ipam-dir"]),
    dataDir: dirname(String(a["ipam-store"])),
  });
}
