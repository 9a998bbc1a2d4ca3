import { formatIp, parseIpOrNull } from "../shared/net/cidr.js";
import { AS_MAX } from "./config.js";
import { ConfigError } from "./errors.js";
import type { BgpRouterConfig } from "./types.js";

/**
 * A node's own BGP settings, over the network config's: its AS (routers mode: its own or its
 * rack's) and the routers it peers with (its top-of-rack). From twilld's flags (--bgp-as,
 * --bgp-routers), else, on the kubernetes datastore, from its Node: the annotations
 * `twill.dev/bgp-as` and `twill.dev/bgp-routers`, or the label `twill.dev/bgp-as` (a rack's
 * nodes labelled alike). Checked before anything starts: a wrong AS is a configuration error,
 * not a session that never comes up. Reading a Node is bgp-node-api.ts's, which only the
 * kubernetes datastore loads.
 */

export interface BgpNodeSettings {
  as?: number;
  routers?: BgpRouterConfig[];
}

export const BGP_NODE_KEYS = { as: "twill.dev/bgp-as", routers: "twill.dev/bgp-routers" } as const;

export function parseAs(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > AS_MAX) {
    throw new ConfigError(`${what} ${JSON.stringify(value)} is not an AS number from 1 to ${AS_MAX}`);
  }
  return value;
}

/** `192.168.77.1@65000,fd00:77::1@65000`: each router's address and AS. */
export function parseRouters(text: string, what = "--bgp-routers"): BgpRouterConfig[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const at = item.lastIndexOf("@");
      const ip = parseIpOrNull(at < 0 ? item : item.slice(0, at));
      if (!ip || !/^\d+$/.test(item.slice(at + 1))) {
        throw new ConfigError(`${what}: ${JSON.stringify(item)} is not ADDRESS@AS (e.g. 192.168.77.1@65000)`);
      }
      return { address: formatIp(ip.family, ip.value), as: parseAs(Number(item.slice(at + 1)), `${what}: ${item}: AS`) };
    });
}

/** The settings a Node's annotations and labels give (annotation over label). */
export function nodeBgpSettings(node: { annotations?: Record<string, string>; labels?: Record<string, string> }): BgpNodeSettings {
  const out: BgpNodeSettings = {};
  const asText = node.annotations?.[BGP_NODE_KEYS.as] ?? node.labels?.[BGP_NODE_KEYS.as];
  if (asText !== undefined) {
    const what = `Node ${node.annotations?.[BGP_NODE_KEYS.as] !== undefined ? "annotation" : "label"} ${BGP_NODE_KEYS.as}`;
    out.as = parseAs(/^\d+$/.test(asText.trim()) ? Number(asText.trim()) : asText, what);
  }
  const routers = node.annotations?.[BGP_NODE_KEYS.routers];
  if (routers !== undefined) out.routers = parseRouters(routers, `Node annotation ${BGP_NODE_KEYS.routers}`);
  return out;
}

/** This node's settings: the flags', else its Node's (kubernetes datastore only). */
export async function readBgpNodeSettings(flags: BgpNodeSettings, node: (() => Promise<BgpNodeSettings>) | null): Promise<BgpNodeSettings> {
  if (!node || (flags.as !== undefined && flags.routers !== undefined)) return flags;
  const fromNode = await node();
  return { ...fromNode, ...flags };
}
