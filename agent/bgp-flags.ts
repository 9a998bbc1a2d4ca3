import { formatIp, parseIpOrNull } from "../shared/net/cidr.js";
import { AS_MAX } from "./config.js";
import { ConfigError } from "./errors.js";
import type { BgpRouterConfig } from "./types.js";

/** twilld's --bgp-as and --bgp-routers, checked before anything starts. */

export function parseAs(value: unknown, flag: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > AS_MAX) {
    throw new ConfigError(`${flag} ${JSON.stringify(value)} is not an AS number from 1 to ${AS_MAX}`);
  }
  return value;
}

/** `192.168.77.1@65000,fd00:77::1@65000`: each router's address and AS. */
export function parseRouters(text: string): BgpRouterConfig[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const at = item.lastIndexOf("@");
      const ip = parseIpOrNull(at < 0 ? item : item.slice(0, at));
      const as = at < 0 ? NaN : Number(item.slice(at + 1));
      if (!ip || !/^\d+$/.test(item.slice(at + 1))) {
        throw new ConfigError(`--bgp-routers: ${JSON.stringify(item)} is not ADDRESS@AS (e.g. 192.168.77.1@65000)`);
      }
      return { address: formatIp(ip.family, ip.value), as: parseAs(as, `--bgp-routers: ${item}: AS`) };
    });
}
