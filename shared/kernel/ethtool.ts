import type { NetTools } from "./tools.js";
import { KernelError } from "./types.js";

/**
 * A device's offload features through `ethtool -k` (read) and `-K` (change), run in the
 * node's namespace, like nft. The plain-text listing, not
 * `--json`: older ethtool releases print no JSON for features.
 */

export interface Feature {
  on: boolean;
  /** The driver does not let it change. */
  fixed: boolean;
}

/** `ethtool -k DEV`'s listing: `\ttx-checksum-ip-generic: on` (`off [fixed]`, `off [requested on]`). */
export function parseFeatures(text: string): Map<string, Feature> {
  const features = new Map<string, Feature>();
  for (const line of text.split("\n")) {
    const m = /^\s*([A-Za-z0-9_-]+): (on|off)( \[fixed\])?/.exec(line);
    if (m) features.set(m[1]!, { on: m[2] === "on", fixed: m[3] !== undefined });
  }
  return features;
}

export interface FeaturesOffPlan {
  /** Features to turn off: on and changeable. */
  off: string[];
  /** Features that are on and cannot be turned off. */
  fixedOn: string[];
}

/** Which of `names` must be turned off; a feature the device does not list is left alone. */
export function planFeaturesOff(features: ReadonlyMap<string, Feature>, names: readonly string[]): FeaturesOffPlan {
  const plan: FeaturesOffPlan = { off: [], fixedOn: [] };
  for (const name of names) {
    const f = features.get(name);
    if (f?.on) (f.fixed ? plan.fixedOn : plan.off).push(name);
  }
  return plan;
}

/**
 * Turns `names` off on `dev` when they are on. Returns the features it turned off; throws a
 * KernelError when ethtool fails or a feature is on and fixed.
 */
export async function ensureFeaturesOff(ip: Pick<NetTools, "ethtool">, dev: string, names: readonly string[]): Promise<string[]> {
  const listing = await ip.ethtool(["-k", dev], `read offload features of "${dev}"`);
  const plan = planFeaturesOff(parseFeatures(listing), names);
  if (plan.fixedOn.length > 0) {
    throw new KernelError(`turn off ${plan.fixedOn.join(", ")} on "${dev}"`, "the driver does not let it change");
  }
  if (plan.off.length === 0) return [];
  await ip.ethtool(["-K", dev, ...plan.off.flatMap((name) => [name, "off"])], `turn off ${plan.off.join(", ")} on "${dev}"`);
  return plan.off;
}
