import { readFileSync } from "node:fs";
import { CniError, Code, invalidConfig, tryAgainLater } from "../shared/cni/errors.js";
import type { DnsConf, NetConf, Route } from "../shared/cni/types.js";
import {
  AddressError, contains, covers, formatCidr, formatIp, lastAddress, overlaps, parseCidr, parseIp, type Cidr, type Family,
} from "../shared/net/cidr.js";
import { DEFAULT_SUBNET_FILE, SubnetFileMissing, readSubnetFile } from "../shared/subnet-file.js";

/**
 * twill-ipam's configuration: host-local's fields (`ranges`, the legacy top-level `subnet`
 * form, `routes`, `dataDir`, `resolvConf`) plus node mode, where the ranges come from the
 * subnet file the node agent writes. Parsing is pure apart from reading those two files.
 */

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";

export interface Range {
  subnet: Cidr;
  start: bigint;
  end: bigint;
  gateway?: bigint;
}

/** Ranges that together hand out one address (a family's worth of pools). */
export type RangeSet = Range[];

export interface IpamConfig {
  /** The network name: the store directory's name, as host-local. */
  network: string;
  dataDir: string;
  rangeSets: RangeSet[];
  routes: Route[];
  dns?: DnsConf;
  /** Set when the ranges came from the node agent's subnet file. */
  subnetFile?: string;
}

interface RawRange {
  subnet?: unknown;
  rangeStart?: unknown;
  rangeEnd?: unknown;
  gateway?: unknown;
}

/** Pure part: the config without node-mode ranges resolved. `nodeRanges` fills them in. */
export function parseIpamConfig(conf: NetConf): IpamConfig & { nodeMode: boolean } {
  const ipam = (conf.ipam ?? {}) as Record<string, unknown>;
  const dataDir = optionalString(ipam, "dataDir") ?? DEFAULT_DATA_DIR;
  if (!dataDir.startsWith("/")) throw invalidConfig(`ipam.dataDir must be an absolute path, got ${JSON.stringify(dataDir)}`);

  let raw: RawRange[][];
  if (ipam.ranges !== undefined) {
    if (!Array.isArray(ipam.ranges) || ipam.ranges.some((s) => !Array.isArray(s) || s.length === 0)) {
      throw invalidConfig("ipam.ranges must be a list of non-empty lists of ranges");
    }
    raw = ipam.ranges as RawRange[][];
  } else if (ipam.subnet !== undefined) {
    raw = [[{ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }]];
  } else {
    raw = [];
  }
  const rangeSets = raw.map((set, i) => set.map((r, j) => parseRange(r, `ipam.ranges[${i}][${j}]`)));
  rangeSets.forEach((set, i) => checkSet(set, `ipam.ranges[${i}]`));

  const routes = parseRoutes(ipam.routes);
  const subnetFile = optionalString(ipam, "subnetFile") ?? DEFAULT_SUBNET_FILE;
  const resolvConf = optionalString(ipam, "resolvConf");
  return {
    network: conf.name,
    dataDir,
    rangeSets,
    routes,
    nodeMode: rangeSets.length === 0,
    ...(rangeSets.length === 0 ? { subnetFile } : {}),
    ...(resolvConf ? { dns: readResolvConf(resolvConf) } : {}),
  };
}

/**
 * Resolves the config for use: in node mode the ranges are the node's subnets from the
 * subnet file, and pods get a route to each cluster CIDR through their gateway so they reach
 * other nodes without a default route. A missing file means the node agent is not ready:
 * `onMissing` decides the code (11 for ADD, 50 for STATUS).
 */
export function loadIpamConfig(conf: NetConf, onMissing: (err: SubnetFileMissing) => CniError = (e) => tryAgainLater(e.message)): IpamConfig {
  const parsed = parseIpamConfig(conf);
  const { nodeMode, ...base } = parsed;
  if (!nodeMode) return base;
  let info;
  try {
    info = readSubnetFile(parsed.subnetFile);
  } catch (err) {
    if (err instanceof SubnetFileMissing) throw onMissing(err);
    throw new CniError(Code.IoFailure, (err as Error).message);
  }
  const rangeSets = info.nodeSubnets.map((s) => [parseRange({ subnet: s }, `node subnet ${s}`)]);
  const routes = [...base.routes];
  for (const set of rangeSets) {
    const r = set[0]!;
    for (const cluster of info.clusterCIDRs) {
      if (cluster.includes(":") === (r.subnet.family === 6)) {
        routes.push({ dst: cluster, gw: formatIp(r.subnet.family, r.gateway!) });
      }
    }
  }
  return { ...base, rangeSets, routes };
}

export function parseRange(raw: RawRange, where: string): Range {
  if (typeof raw !== "object" || raw === null) throw invalidConfig(`${where} must be an object`);
  if (typeof raw.subnet !== "string") throw invalidConfig(`${where}.subnet is required`);
  const subnet = cidrField(raw.subnet, `${where}.subnet`);
  const hostBits = (subnet.family === 4 ? 32 : 128) - subnet.prefix;
  if (hostBits < 2) {
    throw invalidConfig(`${where}.subnet ${formatCidr(subnet)} is too small to allocate from`);
  }
  const inSubnet = (field: string, value: unknown): bigint | undefined => {
    if (value === undefined || value === null || value === "") return undefined;
    const ip = ipField(value, `${where}.${field}`);
    if (!contains(subnet, ip)) {
      throw invalidConfig(`${where}.${field} ${JSON.stringify(value)} is outside ${formatCidr(subnet)}`);
    }
    return ip.value;
  };
  const last = lastAddress(subnet);
  // As host-local: the first address after the network, the last before the IPv4 broadcast.
  const start = inSubnet("rangeStart", raw.rangeStart) ?? subnet.network + 1n;
  const end = inSubnet("rangeEnd", raw.rangeEnd) ?? (subnet.family === 4 ? last - 1n : last);
  if (start > end) throw invalidConfig(`${where}: rangeStart is after rangeEnd`);
  const gateway = inSubnet("gateway", raw.gateway) ?? subnet.network + 1n;
  return { subnet, start, end, gateway };
}

function checkSet(set: RangeSet, where: string) {
  const family = set[0]!.subnet.family;
  for (let i = 0; i < set.length; i++) {
    if (set[i]!.subnet.family !== family) throw invalidConfig(`${where} mixes IPv4 and IPv6 ranges`);
    for (let j = 0; j < i; j++) {
      const a = set[i]!;
      const b = set[j]!;
      if (a.start <= b.end && b.start <= a.end && overlaps(a.subnet, b.subnet)) {
        throw invalidConfig(`${where}: ranges ${j} and ${i} overlap`);
      }
    }
  }
}

function parseRoutes(raw: unknown): Route[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw invalidConfig("ipam.routes must be a list");
  return raw.map((r, i) => {
    const { dst, gw } = (r ?? {}) as { dst?: unknown; gw?: unknown };
    const where = `ipam.routes[${i}]`;
    const d = cidrField(dst, `${where}.dst`);
    const route: Route = { dst: formatCidr(d) };
    if (gw !== undefined) {
      const g = ipField(gw, `${where}.gw`);
      if (g.family !== d.family) throw invalidConfig(`${where}: gw ${String(gw)} is not of the family of ${String(dst)}`);
      route.gw = formatIp(g.family, g.value);
    }
    return route;
  });
}

/** Addresses asked for by the runtime: `runtimeConfig.ips` (capability `ips`), `args.cni.ips`, CNI_ARGS `IP=`. */
export function requestedIps(conf: NetConf, cniArgs: Record<string, string>): { family: Family; value: bigint; text: string }[] {
  const texts: string[] = [];
  const fromRuntime = conf.runtimeConfig?.ips;
  const fromArgs = conf.args?.cni?.ips;
  for (const [where, list] of [["runtimeConfig.ips", fromRuntime], ["args.cni.ips", fromArgs]] as const) {
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw invalidConfig(`${where} must be a list of addresses`);
    texts.push(...list.map(String));
  }
  if (cniArgs.IP) texts.push(...cniArgs.IP.split(","));
  const seen = new Set<string>();
  return texts
    .map((t) => t.trim().split("/")[0]!)
    .filter((t) => !seen.has(t) && seen.add(t))
    .map((t) => {
      const ip = ipField(t, "requested IP");
      return { ...ip, text: formatIp(ip.family, ip.value) };
    });
}

export function readResolvConf(path: string): DnsConf {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CniError(Code.IoFailure, `cannot read ipam.resolvConf ${path}: ${(err as Error).message}`);
  }
  const dns: DnsConf = {};
  for (const line of text.split("\n")) {
    const [key, ...rest] = line.trim().split(/\s+/);
    if (!key || key.startsWith("#") || key.startsWith(";")) continue;
    if (key === "nameserver" && rest[0]) (dns.nameservers ??= []).push(rest[0]);
    else if (key === "domain" && rest[0]) dns.domain = rest[0];
    else if (key === "search") dns.search = rest;
    else if (key === "options") (dns.options ??= []).push(...rest);
  }
  return dns;
}

export const rangeText = (set: RangeSet): string =>
  `${formatIp(set[0]!.subnet.family, set[0]!.start)}-${formatIp(set.at(-1)!.subnet.family, set.at(-1)!.end)}`;

export const setContains = (set: RangeSet, ip: { family: Family; value: bigint }): boolean =>
  set.some((r) => r.subnet.family === ip.family && ip.value >= r.start && ip.value <= r.end);

export const subnetsCover = (set: RangeSet, cidr: Cidr): boolean => set.some((r) => covers(r.subnet, cidr));

function cidrField(value: unknown, where: string): Cidr {
  try {
    return parseCidr(String(value));
  } catch (err) {
    throw invalidConfig(`${where}: ${(err as AddressError).message}`);
  }
}

function ipField(value: unknown, where: string) {
  try {
    return parseIp(String(value));
  } catch (err) {
    throw invalidConfig(`${where}: ${(err as AddressError).message}`);
  }
}

function optionalString(obj: Record<string, unknown>, key: string): string | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v === "") throw invalidConfig(`ipam.${key} must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}
