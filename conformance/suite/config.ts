import { join } from "node:path";
import { formatIp, parseCidr } from "../../shared/net/cidr.js";
import { compareVersions } from "../../shared/cni/version.js";

/**
 * The network configuration a case hands to the plugin, derived from the file the user gave.
 * All pure: each function returns a new object, so a case can never change what the next
 * case sees.
 */

export type Conf = Record<string, unknown>;

export interface LoadedConfig {
  /** The plugin's own config as a runtime passes it: `name` and `cniVersion` injected. */
  conf: Conf;
  /** Versions the file allows (`cniVersion` plus a conflist's `cniVersions`), highest first. */
  versions: string[];
}

/**
 * Reads a .conf or .conflist. From a conflist the suite takes the entry whose `type` is the
 * plugin's file name and injects the list's `name` and `cniVersion`, as libcni does.
 */
export function loadConfig(text: string, pluginType: string): LoadedConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`config is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new Error("config is not a JSON object");
  const versions = configVersions(raw);
  if (!Array.isArray(raw.plugins)) {
    if (raw.type !== pluginType) {
      throw new Error(`config has type ${JSON.stringify(raw.type)}, the plugin is ${JSON.stringify(pluginType)}`);
    }
    return { conf: clone(raw), versions };
  }
  const entry = raw.plugins.find((p) => isObject(p) && p.type === pluginType);
  if (!isObject(entry)) {
    const types = raw.plugins.map((p) => (isObject(p) ? p.type : undefined));
    throw new Error(`conflist has no plugin of type ${JSON.stringify(pluginType)} (types: ${JSON.stringify(types)})`);
  }
  const conf: Conf = { ...clone(entry), name: raw.name, cniVersion: versions[0] };
  return { conf, versions };
}

function configVersions(raw: Conf): string[] {
  const all = new Set<string>();
  if (typeof raw.cniVersion === "string" && raw.cniVersion !== "") all.add(raw.cniVersion);
  if (Array.isArray(raw.cniVersions)) {
    for (const v of raw.cniVersions) if (typeof v === "string") all.add(v);
  }
  if (all.size === 0) throw new Error("config has no cniVersion");
  return [...all].sort((a, b) => compareVersions(b, a));
}

export const setKey = (conf: Conf, key: string, value: unknown): Conf => ({ ...clone(conf), [key]: value });

export const withVersion = (conf: Conf, version: string): Conf => setKey(conf, "cniVersion", version);

/**
 * Points path-valued settings at a directory of this case, so cases share no state and
 * nothing is written to the host's real state directories. `keys` are dotted paths
 * ("ipam.dataDir"); a key whose parent object is absent is left alone.
 */
export function withTempPaths(conf: Conf, keys: readonly string[], dir: string): Conf {
  const out = clone(conf);
  for (const key of keys) {
    const parts = key.split(".");
    const last = parts.pop()!;
    let obj: unknown = out;
    for (const p of parts) obj = isObject(obj) ? obj[p] : undefined;
    if (isObject(obj)) obj[last] = join(dir, key.replace(/[^A-Za-z0-9_-]/g, "-"));
  }
  return out;
}

/**
 * The settings the suite moves into a temp directory when the user names none: any that the
 * config already sets, and host-local's `dataDir`, which it always accepts.
 */
export function defaultTempPathKeys(conf: Conf): string[] {
  const keys: string[] = [];
  if (typeof conf.dataDir === "string") keys.push("dataDir");
  const ipam = conf.ipam;
  if (isObject(ipam) && (typeof ipam.dataDir === "string" || ipam.type === "host-local")) keys.push("ipam.dataDir");
  return keys;
}

/**
 * A config whose pool holds `size` addresses, for exhaustion and release checks, when the
 * IPAM section uses host-local's range syntax (`ranges` or a top-level `subnet`): the first
 * range set is narrowed to `size` addresses after the gateway. Null when it does not.
 */
export function shrinkPool(conf: Conf, size: number): Conf | null {
  const out = clone(conf);
  const ipam = out.ipam;
  if (!isObject(ipam)) return null;
  if (Array.isArray(ipam.ranges) && Array.isArray(ipam.ranges[0]) && isObject(ipam.ranges[0][0])) {
    const range = ipam.ranges[0][0];
    const narrowed = narrowRange(range, size);
    if (!narrowed) return null;
    ipam.ranges = [[narrowed], ...ipam.ranges.slice(1)];
    return out;
  }
  if (typeof ipam.subnet === "string") {
    const narrowed = narrowRange(ipam, size);
    if (!narrowed) return null;
    out.ipam = narrowed;
    return out;
  }
  return null;
}

function narrowRange(range: Conf, size: number): Conf | null {
  if (typeof range.subnet !== "string") return null;
  const cidr = parseCidr(range.subnet);
  // Start after a .1 gateway and leave room for the broadcast address.
  const first = cidr.network + 2n;
  const last = first + BigInt(size) - 1n;
  const hostBits = BigInt((cidr.family === 4 ? 32 : 128) - cidr.prefix);
  if (last >= cidr.network + (1n << hostBits) - 1n) return null;
  return {
    ...range,
    rangeStart: formatIp(cidr.family, first),
    rangeEnd: formatIp(cidr.family, last),
  };
}

const CIDR_LIKE = /^[0-9a-fA-F.:]+\/\d{1,3}$/;
const NOT_CONFIG = new Set(["prevResult", "runtimeConfig", "args"]);

/** Replaces the first CIDR-valued setting with an invalid one; null when there is none. */
export function corruptFirstCidr(conf: Conf): { conf: Conf; path: string; value: string } | null {
  const out = clone(conf);
  const bad = "10.0.0.0/33";
  const walk = (node: unknown, path: string): string | null => {
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        if (typeof node[i] === "string" && CIDR_LIKE.test(node[i])) {
          node[i] = bad;
          return `${path}[${i}]`;
        }
        const hit = walk(node[i], `${path}[${i}]`);
        if (hit) return hit;
      }
    } else if (isObject(node)) {
      for (const [k, v] of Object.entries(node)) {
        if (path === "" && NOT_CONFIG.has(k)) continue;
        const p = path === "" ? k : `${path}.${k}`;
        if (typeof v === "string" && CIDR_LIKE.test(v)) {
          node[k] = bad;
          return p;
        }
        const hit = walk(v, p);
        if (hit) return hit;
      }
    }
    return null;
  };
  const path = walk(out, "");
  return path ? { conf: out, path, value: bad } : null;
}

/**
 * Adds a route whose gateway is on no link of the sandbox to the IPAM section (host-local's
 * `routes` syntax): the plugin gets an address, then fails to install the route, which is
 * a failure after IPAM. Null when there is no IPAM section.
 */
export function withUnreachableRoute(conf: Conf): Conf | null {
  const out = clone(conf);
  if (!isObject(out.ipam)) return null;
  const routes = Array.isArray(out.ipam.routes) ? out.ipam.routes : [];
  out.ipam.routes = [...routes, { dst: UNREACHABLE_ROUTE.dst, gw: UNREACHABLE_ROUTE.gw }];
  return out;
}

/** Documentation prefixes (RFC 5737): never a real network. */
export const UNREACHABLE_ROUTE = { dst: "198.51.100.0/24", gw: "203.0.113.99" };

/** Keys a probe must not touch: the protocol's own and the reserved ones (SPEC.md section 1). */
const RESERVED = new Set(["cniVersion", "cniVersions", "name", "type", "ipam", "dns", "prevResult", "runtimeConfig", "args", "capabilities"]);

export const UNSUPPORTED_VALUE = "conformance-unsupported-value";

export interface Probe {
  key: string;
  value: unknown;
  conf: Conf;
}

/**
 * Configs that each set one of the plugin's own settings to a value no plugin supports: every
 * top-level string setting that is not a path (a missing file is a different error) and any
 * the user named with `--unsupported KEY=JSON`.
 */
export function unsupportedProbes(conf: Conf, extra: ReadonlyArray<{ key: string; value: unknown }> = []): Probe[] {
  const probes: Probe[] = extra.map(({ key, value }) => ({ key, value, conf: setKey(conf, key, value) }));
  for (const [key, value] of Object.entries(conf)) {
    if (RESERVED.has(key) || key.startsWith("cni.dev/") || typeof value !== "string") continue;
    if (value.startsWith("/") || probes.some((p) => p.key === key)) continue;
    probes.push({ key, value: UNSUPPORTED_VALUE, conf: setKey(conf, key, UNSUPPORTED_VALUE) });
  }
  return probes;
}

export const withPrevResult = (conf: Conf, prevResult: unknown): Conf => setKey(conf, "prevResult", prevResult);

export const withoutKey = (conf: Conf, key: string): Conf => {
  const out = clone(conf);
  delete out[key];
  return out;
};

/** The capabilities the config declares `true`, as libcni reads them. */
export function declaredCapabilities(conf: Conf): string[] {
  return isObject(conf.capabilities)
    ? Object.entries(conf.capabilities).filter(([, on]) => on === true).map(([k]) => k)
    : [];
}

/** The IPAM plugin the config delegates to, if any. */
export const ipamType = (conf: Conf): string | null =>
  isObject(conf.ipam) && typeof conf.ipam.type === "string" && conf.ipam.type !== "" ? conf.ipam.type : null;

export function isObject(v: unknown): v is Record<string, any> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export const clone = <T>(v: T): T => structuredClone(v);
