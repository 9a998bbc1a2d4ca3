import { readFileSync } from "../shared/fs-sync.js";
import { CniError, Code, invalidConfig } from "../shared/cni/errors.js";
import type { DnsConf, NetConf, Route } from "../shared/cni/types.js";
import { covers, formatCidr, formatIp, parseCidr, type Family } from "../shared/net/cidr.js";
import type { SubnetInfo } from "../shared/subnet-file.js";
import { DEFAULT_SUBNET_FILE } from "../shared/subnet-file.js";
import { checkNoOverlap, checkRangeSet, cidrField, ipField, parseRange, type RangeSet, type RawRange } from "./range.js";

/**
 * twill-ipam's configuration: host-local's fields (`ranges`, the legacy top-level `subnet`
 * form, `routes`, `dataDir`, `resolvConf`, the `ipRanges` capability) plus node mode, where
 * the ranges come from the subnet file the node agent writes. Everything here is pure but
 * reading `resolvConf`; plugin.ts reads the subnet file and hands it to {@link withNodeSubnets}.
 */

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";

/** Where the store of a network lives: all DEL and GC need, so they work with any other field broken. */
export interface StoreLocation {
  /** The network name: the store directory's name, as host-local. */
  network: string;
  dataDir: string;
}

export interface IpamConfig extends StoreLocation {
  rangeSets: RangeSet[];
  routes: Route[];
  dns?: DnsConf;
  /** No range is configured: the ranges are the node's subnets, from `subnetFile`. */
  nodeMode: boolean;
  subnetFile: string;
}

export function storeLocation(conf: NetConf): StoreLocation {
  const ipam = ipamSection(conf);
  const dataDir = optionalString(ipam, "dataDir") ?? DEFAULT_DATA_DIR;
  if (!dataDir.startsWith("/")) throw invalidConfig(`ipam.dataDir must be an absolute path, got ${JSON.stringify(dataDir)}`);
  return { network: conf.name, dataDir };
}

/**
 * The config as written. Ranges: `runtimeConfig.ipRanges` (capability `ipRanges`) replaces
 * `ipam.ranges`, as in host-local; the legacy top-level `subnet` becomes the first set.
 * No range at all means node mode.
 */
export function parseIpamConfig(conf: NetConf, readFile: (path: string) => string = readText): IpamConfig {
  const ipam = ipamSection(conf);
  const location = storeLocation(conf);

  const sets: { raw: unknown; where: string }[] = [];
  if (typeof ipam.subnet === "string" && ipam.subnet !== "") {
    sets.push({ raw: [{ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }], where: "ipam" });
  } else if (ipam.subnet !== undefined && ipam.subnet !== "") {
    throw invalidConfig(`ipam.subnet must be a CIDR string, got ${JSON.stringify(ipam.subnet)}`);
  }
  const runtimeRanges = conf.runtimeConfig?.ipRanges;
  const [key, listed] = Array.isArray(runtimeRanges) && runtimeRanges.length > 0
    ? ["runtimeConfig.ipRanges", runtimeRanges]
    : ["ipam.ranges", ipam.ranges];
  if (listed !== undefined) {
    if (!Array.isArray(listed)) throw invalidConfig(`${key} must be a list of range sets, got ${JSON.stringify(listed)}`);
    listed.forEach((raw, i) => sets.push({ raw, where: `${key}[${i}]` }));
  }

  // The legacy form's fields sit directly in `ipam`, so its errors name `ipam.subnet`.
  const rangeWhere = (where: string, j: number) => (where === "ipam" ? where : `${where}[${j}]`);
  const rangeSets = sets.map(({ raw, where }) => {
    if (!Array.isArray(raw)) throw invalidConfig(`${where} must be a list of ranges, got ${JSON.stringify(raw)}`);
    const set = raw.map((r: RawRange, j) => parseRange(r, rangeWhere(where, j)));
    checkRangeSet(set, where);
    return set;
  });
  checkNoOverlap(rangeSets.flatMap((set, i) => set.map((r, j) => ({ r, where: rangeWhere(sets[i]!.where, j) }))));

  const resolvConf = optionalString(ipam, "resolvConf");
  const subnetFile = optionalString(ipam, "subnetFile") ?? DEFAULT_SUBNET_FILE;
  return {
    ...location,
    rangeSets,
    routes: parseRoutes(ipam.routes),
    ...(resolvConf ? { dns: parseResolvConf(readResolvConf(resolvConf, readFile)) } : {}),
    nodeMode: rangeSets.length === 0,
    subnetFile,
  };
}

/**
 * Node mode: one range set per node subnet (gateway = its first address), and a route to each
 * cluster CIDR of that family through the gateway, so pods reach other nodes' pods even when
 * the main plugin installs no default route. Configured routes come first and win on a tie;
 * a cluster CIDR the node subnet already covers needs no route (the link route serves it).
 */
export function withNodeSubnets(cfg: IpamConfig, info: SubnetInfo): IpamConfig {
  const rangeSets = info.nodeSubnets.map((s) => [parseRange({ subnet: s }, `node subnet ${s}`)]);
  const routes = [...cfg.routes];
  for (const [range] of rangeSets) {
    for (const text of info.clusterCIDRs) {
      const cluster = parseCidr(text);
      if (cluster.family !== range!.subnet.family || covers(range!.subnet, cluster)) continue;
      const dst = formatCidr(cluster);
      if (routes.some((r) => r.dst === dst)) continue;
      routes.push({ dst, gw: formatIp(range!.subnet.family, range!.gateway) });
    }
  }
  return { ...cfg, rangeSets, routes };
}

/** The 1.1 route fields beside `dst` and `gw`; results of older versions drop them. */
const ROUTE_NUMBERS = ["mtu", "advmss", "priority", "table", "scope"] as const;

export function parseRoutes(raw: unknown): Route[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw invalidConfig(`ipam.routes must be a list, got ${JSON.stringify(raw)}`);
  return raw.map((r, i) => {
    const where = `ipam.routes[${i}]`;
    if (typeof r !== "object" || r === null) throw invalidConfig(`${where} must be an object, got ${JSON.stringify(r)}`);
    const { dst, gw, ...rest } = r as Record<string, unknown>;
    const d = cidrField(dst, `${where}.dst`);
    const route: Route = { dst: formatCidr(d) };
    if (gw !== undefined && gw !== null && gw !== "") {
      const g = ipField(gw, `${where}.gw`);
      if (g.family !== d.family) throw invalidConfig(`${where}.gw ${JSON.stringify(gw)} is not of the family of dst ${JSON.stringify(dst)}`);
      route.gw = formatIp(g.family, g.value);
    }
    for (const key of ROUTE_NUMBERS) {
      const v = rest[key];
      if (v === undefined || v === null) continue;
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
        throw invalidConfig(`${where}.${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
      }
      route[key] = v;
    }
    return route;
  });
}

/** An address the runtime asked for, and where it asked. */
export interface RequestedIp {
  family: Family;
  value: bigint;
  text: string;
  from: string;
}

/**
 * Addresses asked for: `runtimeConfig.ips` (capability `ips`), `args.cni.ips` and the
 * deprecated CNI_ARGS `IP=` (comma-separated), as host-local takes them. A prefix length is
 * ignored: the address gets its range's.
 */
export function requestedIps(conf: NetConf, cniArgs: Record<string, string>): RequestedIp[] {
  const given: { text: string; from: string }[] = [];
  const lists: [string, unknown][] = [["runtimeConfig.ips", conf.runtimeConfig?.ips], ["args.cni.ips", conf.args?.cni?.ips]];
  for (const [from, list] of lists) {
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list) || list.some((x) => typeof x !== "string")) {
      throw invalidConfig(`${from} must be a list of addresses, got ${JSON.stringify(list)}`);
    }
    given.push(...(list as string[]).map((text) => ({ text, from })));
  }
  if (cniArgs.IP) given.push(...cniArgs.IP.split(",").map((text) => ({ text, from: "CNI_ARGS IP" })));
  const out: RequestedIp[] = [];
  for (const { text, from } of given) {
    const ip = ipField(text.trim().split("/")[0], `${from} ${JSON.stringify(text)}`);
    if (!out.some((o) => o.family === ip.family && o.value === ip.value)) out.push({ ...ip, text: formatIp(ip.family, ip.value), from });
  }
  return out;
}

export function readResolvConf(path: string, readFile: (path: string) => string = readText): string {
  try {
    return readFile(path);
  } catch (err) {
    throw new CniError(Code.IoFailure, `cannot read ipam.resolvConf ${path}: ${(err as Error).message}`);
  }
}

/** resolv.conf(5) into CNI's `dns`: nameserver, domain, search, options. */
export function parseResolvConf(text: string): DnsConf {
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

function ipamSection(conf: NetConf): Record<string, unknown> {
  const ipam = conf.ipam ?? {};
  if (typeof ipam !== "object" || ipam === null || Array.isArray(ipam)) {
    throw invalidConfig(`"ipam" must be an object, got ${JSON.stringify(ipam)}`);
  }
  return ipam as Record<string, unknown>;
}

function optionalString(obj: Record<string, unknown>, key: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string" || v === "") throw invalidConfig(`ipam.${key} must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

const readText = (path: string) => readFileSync(path, "utf8");
