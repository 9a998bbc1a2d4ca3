import { CniError, Code } from "./errors.js";
import type { Interface, IpConfig, Result, Route } from "./types.js";

/** Versions whose result shape we produce. 0.1.0/0.2.0 results have no interfaces list. */
export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export const CURRENT_VERSION = "1.1.0";

export function isSupported(version: string): boolean {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(version);
}

export function requireSupported(version: unknown): string {
  if (typeof version !== "string" || version === "") {
    throw new CniError(Code.DecodeFailure, "network config has no cniVersion");
  }
  if (!isSupported(version)) {
    throw new CniError(
      Code.IncompatibleVersion,
      `incompatible CNI version ${version}; supported: ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  return version;
}

/** Compares dotted versions numerically: -1, 0 or 1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

export const atLeast = (version: string, floor: string) => compareVersions(version, floor) >= 0;

const familyOf = (cidr: string) => (cidr.includes(":") ? "6" : "4");

/**
 * Renders an internal (1.1.0-shaped) result in the shape of `version`: 0.3.x and 0.4.0 carry
 * `ips[].version`; 1.0.0 has neither the interface nor the route fields that 1.1.0 added.
 */
export function formatResult(result: Result, version: string): Record<string, unknown> {
  requireSupported(version);
  const legacy = !atLeast(version, "1.0.0");
  const v11 = atLeast(version, "1.1.0");
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces) {
    out.interfaces = result.interfaces.map((i) =>
      v11 ? { ...i } : pick(i, ["name", "mac", "sandbox"]),
    );
  }
  if (result.ips) {
    out.ips = result.ips.map((ip) => (legacy ? { version: familyOf(ip.address), ...ip } : { ...ip }));
  }
  if (result.routes) {
    out.routes = result.routes.map((r) => (v11 ? { ...r } : pick(r, ["dst", "gw"])));
  }
  if (result.dns && Object.keys(result.dns).length > 0) out.dns = { ...result.dns };
  return out;
}

/**
 * Reads a result of any supported version (a `prevResult`, an IPAM plugin's output) into the
 * internal shape. Throws code 6 when it is not a result.
 */
export function parseResult(raw: unknown): Result {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniError(Code.DecodeFailure, "result is not a JSON object");
  }
  const r = raw as Record<string, unknown>;
  const version = typeof r.cniVersion === "string" ? r.cniVersion : CURRENT_VERSION;
  const out: Result = { cniVersion: version };
  if (Array.isArray(r.interfaces)) out.interfaces = r.interfaces.map((i) => ({ ...(i as Interface) }));
  if (Array.isArray(r.ips)) {
    out.ips = r.ips.map((ip) => {
      const { version: _family, ...rest } = ip as IpConfig & { version?: string };
      if (typeof rest.address !== "string") {
        throw new CniError(Code.DecodeFailure, "result ips[] entry has no address");
      }
      return rest;
    });
  }
  if (Array.isArray(r.routes)) out.routes = r.routes.map((rt) => ({ ...(rt as Route) }));
  if (r.dns && typeof r.dns === "object") out.dns = { ...(r.dns as object) };
  return out;
}

function pick<T extends object>(obj: T, keys: (keyof T)[]): Partial<T> {
  const out: Partial<T> = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}
