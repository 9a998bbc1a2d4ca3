import { readFileSync } from "node:fs";
import { bits, covers, formatCidr, formatIp, parseCidr, parseIp, type Cidr, type Family } from "../shared/net/cidr.js";
import { ConfigError } from "./errors.js";
import type { BackendConfig, BgpConfig, NetworkConfig, WireguardConfig } from "./types.js";

/**
 * The cluster network config, in the shape of flannel's net-conf.json so an existing file
 * keeps working: {"Network", "IPv6Network", "SubnetLen", "IPv6SubnetLen", "SubnetMin",
 * "SubnetMax", "Backend": {"Type", "VNI", "Port"}, "IPMasq"}; the bgp backend's own keys are
 * "Backend": {"Type": "bgp", "Mode", "AS", "Routers"}, the wireguard backend's "Backend":
 * {"Type": "wireguard", "ListenPort", "PersistentKeepaliveInterval", "Mode", "AllowUnencryptedFrom"}. Validation is strict where
 * flannel is lenient: an unknown key, a CIDR with host bits or a subnet length that leaves no
 * room is an error naming the field and the value, before anything is claimed or written.
 */

export const DEFAULT_VNI = 1;
export const DEFAULT_VXLAN_PORT = 4789;
const BACKEND_TYPES: readonly BackendConfig["type"][] = ["vxlan", "host-gw", "auto", "bgp", "wireguard"];
/** The cluster's AS in a node mesh, and every node's in routers mode unless set: the first private 16-bit AS, as Calico's. */
export const DEFAULT_BGP_AS = 64512;
/** The largest 4-byte AS number (RFC 6793). */
export const AS_MAX = 4294967295;
/** WireGuard's customary port (wg-quick's, flannel's wireguard backend's). */
export const DEFAULT_WIREGUARD_PORT = 51820;
const TOP_KEYS = [
  "Network",
  "IPv6Network",
  "EnableIPv4",
  "EnableIPv6",
  "SubnetLen",
  "IPv6SubnetLen",
  "SubnetMin",
  "SubnetMax",
  "Backend",
  "IPMasq",
  // Accepted for compatibility with flannel's file; twill always programs nftables.
  "EnableNFTables",
];
const BACKEND_KEYS = ["Type", "VNI", "Port"];
const BGP_KEYS = ["Type", "Mode", "AS", "Routers"];
const WIREGUARD_KEYS = ["Type", "ListenPort", "PersistentKeepaliveInterval", "Mode", "AllowUnencryptedFrom"];
const WIREGUARD_MODES: readonly WireguardConfig["mode"][] = ["auto", "kernel", "userspace"];
const ROUTER_KEYS = ["Address", "AS"];
/** The longest node subnet that still leaves a gateway and one pod address. */
const LONGEST_SUBNET: Record<Family, number> = { 4: 30, 6: 126 };

export function readNetworkConfig(path: string): NetworkConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read network config ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`network config ${path} is not JSON: ${(err as Error).message}`);
  }
  try {
    return parseNetworkConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`network config ${path}: ${err.message}`);
    throw err;
  }
}

export function parseNetworkConfig(raw: unknown): NetworkConfig {
  const conf = asObject(raw, "the config");
  unknownKeys(conf, TOP_KEYS, "");

  const v4 = familyNetwork(conf, 4, "Network", "EnableIPv4", "SubnetLen");
  const v6 = familyNetwork(conf, 6, "IPv6Network", "EnableIPv6", "IPv6SubnetLen");
  if (!v4 && !v6) throw new ConfigError('"Network" (or "IPv6Network") is required');
  if (!v4 && (conf.SubnetMin !== undefined || conf.SubnetMax !== undefined)) {
    throw new ConfigError('"SubnetMin"/"SubnetMax" bound the IPv4 "Network", which is not set');
  }

  const result: NetworkConfig = {
    clusterCIDRs: [v4, v6].filter((n) => n !== null).map((n) => formatCidr(n.cidr)),
    subnetLen: {
      ...(v4 ? { 4: v4.subnetLen } : {}),
      ...(v6 ? { 6: v6.subnetLen } : {}),
    },
    backend: parseBackend(conf.Backend),
    ipMasq: optionalBool(conf, "IPMasq") ?? true,
  };
  if (v4) {
    const min = bound(conf, "SubnetMin", v4.cidr, v4.subnetLen);
    const max = bound(conf, "SubnetMax", v4.cidr, v4.subnetLen);
    if (min && max && min.network > max.network) {
      throw new ConfigError(`"SubnetMin" ${formatCidr(min)} is above "SubnetMax" ${formatCidr(max)}`);
    }
    if (min) result.subnetMin = formatCidr(min);
    if (max) result.subnetMax = formatCidr(max);
  }
  optionalBool(conf, "EnableNFTables");
  return result;
}

/** The default node subnet length: /24 (/64), or two bits below a smaller network, as flannel. */
export function defaultSubnetLen(network: Cidr): number {
  const usual = network.family === 4 ? 24 : 64;
  return network.prefix > usual - 2 ? network.prefix + 2 : usual;
}

function familyNetwork(
  conf: Record<string, unknown>,
  family: Family,
  networkKey: string,
  enableKey: string,
  lenKey: string,
): { cidr: Cidr; subnetLen: number } | null {
  const text = conf[networkKey];
  const enabled = optionalBool(conf, enableKey) ?? text !== undefined;
  if (!enabled) return null;
  if (text === undefined) throw new ConfigError(`"${networkKey}" is required when "${enableKey}" is true`);
  const cidr = cidrField(networkKey, text);
  if (cidr.family !== family) {
    throw new ConfigError(`"${networkKey}" ${JSON.stringify(text)} is not an IPv${family} CIDR`);
  }
  if (cidr.ip !== cidr.network) {
    throw new ConfigError(
      `"${networkKey}" ${JSON.stringify(text)} has host bits set (the network is ${formatCidr(cidr)})`,
    );
  }
  let subnetLen = defaultSubnetLen(cidr);
  if (conf[lenKey] !== undefined) {
    const len = conf[lenKey];
    if (typeof len !== "number" || !Number.isInteger(len) || len < 0 || len > bits(family)) {
      throw new ConfigError(`"${lenKey}" ${JSON.stringify(len)} is not a prefix length`);
    }
    subnetLen = len;
  }
  if (subnetLen < cidr.prefix) {
    throw new ConfigError(
      `"${lenKey}" ${subnetLen} is shorter than "${networkKey}" ${formatCidr(cidr)}: the network cannot hold one node subnet`,
    );
  }
  if (subnetLen > LONGEST_SUBNET[family]) {
    throw new ConfigError(
      `"${lenKey}" ${subnetLen} leaves no pod addresses: at most ${LONGEST_SUBNET[family]} for IPv${family}`,
    );
  }
  return { cidr, subnetLen };
}

function parseBackend(raw: unknown): BackendConfig {
  if (raw === undefined) return { type: "vxlan", vni: DEFAULT_VNI, port: DEFAULT_VXLAN_PORT };
  const b = asObject(raw, '"Backend"');
  const type = b.Type ?? "vxlan";
  if (typeof type !== "string" || !(BACKEND_TYPES as readonly string[]).includes(type)) {
    throw new ConfigError(
      `"Backend.Type" ${JSON.stringify(type)} is not a known backend (${BACKEND_TYPES.join(", ")})`,
    );
  }
  if (type === "bgp") {
    unknownKeys(b, BGP_KEYS, "Backend.");
    return { type, vni: DEFAULT_VNI, port: DEFAULT_VXLAN_PORT, bgp: parseBgp(b) };
  }
  if (type === "wireguard") {
    unknownKeys(b, WIREGUARD_KEYS, "Backend.");
    return { type, vni: DEFAULT_VNI, port: DEFAULT_VXLAN_PORT, wireguard: parseWireguard(b) };
  }
  unknownKeys(b, BACKEND_KEYS, "Backend.");
  return {
    type: type as BackendConfig["type"],
    vni: intField(b, "VNI", "Backend.VNI", 1, 0xffffff) ?? DEFAULT_VNI,
    port: intField(b, "Port", "Backend.Port", 1, 65535) ?? DEFAULT_VXLAN_PORT,
  };
}

/** `{"Type": "bgp", "Mode": "mesh"|"routers", "AS": 64512, "Routers": [{"Address", "AS"}]}`. */
function parseBgp(b: Record<string, unknown>): BgpConfig {
  const mode = b.Mode ?? "mesh";
  if (mode !== "mesh" && mode !== "routers") {
    throw new ConfigError(`"Backend.Mode" ${JSON.stringify(mode)} is not a BGP peering mode (mesh, routers)`);
  }
  const routersRaw = b.Routers ?? [];
  if (!Array.isArray(routersRaw)) throw new ConfigError(`"Backend.Routers" must be a list of {"Address", "AS"}`);
  if (mode === "mesh" && routersRaw.length > 0) {
    throw new ConfigError('"Backend.Routers" is for "Mode": "routers"; a node mesh peers with the nodes only');
  }
  const routers = routersRaw.map((r, i) => {
    const name = `Backend.Routers[${i}]`;
    const o = asObject(r, `"${name}"`);
    unknownKeys(o, ROUTER_KEYS, `${name}.`);
    if (typeof o.Address !== "string") throw new ConfigError(`"${name}.Address" ${JSON.stringify(o.Address)} is not an IP address`);
    let ip: { family: Family; value: bigint };
    try {
      ip = parseIp(o.Address);
    } catch {
      throw new ConfigError(`"${name}.Address" ${JSON.stringify(o.Address)} is not an IP address`);
    }
    const as = intField(o, "AS", `${name}.AS`, 1, AS_MAX);
    if (as === undefined) throw new ConfigError(`"${name}.AS" is required`);
    return { address: formatIp(ip.family, ip.value), as };
  });
  return { mode, as: intField(b, "AS", "Backend.AS", 1, AS_MAX) ?? DEFAULT_BGP_AS, routers };
}

/**
 * `{"Type": "wireguard", "ListenPort": 51820, "PersistentKeepaliveInterval": 0, "Mode":
 * "auto"|"kernel"|"userspace", "AllowUnencryptedFrom": ["192.0.2.10", "198.51.100.0/24"]}`.
 */
function parseWireguard(b: Record<string, unknown>): WireguardConfig {
  const mode = b.Mode ?? "auto";
  if (typeof mode !== "string" || !(WIREGUARD_MODES as readonly string[]).includes(mode)) {
    throw new ConfigError(`"Backend.Mode" ${JSON.stringify(mode)} is not a WireGuard mode (${WIREGUARD_MODES.join(", ")})`);
  }
  return {
    listenPort: intField(b, "ListenPort", "Backend.ListenPort", 1, 65535) ?? DEFAULT_WIREGUARD_PORT,
    persistentKeepalive: intField(b, "PersistentKeepaliveInterval", "Backend.PersistentKeepaliveInterval", 0, 65535) ?? 0,
    mode: mode as WireguardConfig["mode"],
    allowUnencryptedFrom: addressList(b.AllowUnencryptedFrom ?? [], "Backend.AllowUnencryptedFrom"),
  };
}

/** A list of addresses or CIDRs, canonical (an address is its /32 or /128); each wrong entry named. */
function addressList(raw: unknown, name: string): string[] {
  if (!Array.isArray(raw)) throw new ConfigError(`"${name}" must be a list of addresses or CIDRs`);
  return raw.map((entry, i) => {
    const text = typeof entry === "string" ? entry : "";
    try {
      if (text.includes("/")) return formatCidr(parseCidr(text));
      const ip = parseIp(text);
      return `${formatIp(ip.family, ip.value)}/${bits(ip.family)}`;
    } catch {
      throw new ConfigError(`"${name}[${i}]" ${JSON.stringify(entry)} is not an address or CIDR`);
    }
  });
}

/** SubnetMin/SubnetMax: an address or CIDR inside the network, taken as the node subnet holding it. */
function bound(conf: Record<string, unknown>, key: string, network: Cidr, subnetLen: number): Cidr | null {
  const raw = conf[key];
  if (raw === undefined) return null;
  if (typeof raw !== "string") throw new ConfigError(`"${key}" ${JSON.stringify(raw)} is not an address`);
  let addr: { family: Family; value: bigint };
  try {
    addr = raw.includes("/") ? { family: parseCidr(raw).family, value: parseCidr(raw).network } : parseIp(raw);
  } catch {
    throw new ConfigError(`"${key}" ${JSON.stringify(raw)} is not an IPv4 address or CIDR`);
  }
  const hostBits = BigInt(bits(network.family) - subnetLen);
  const start = (addr.value >> hostBits) << hostBits;
  const subnet: Cidr = { family: addr.family, ip: start, network: start, prefix: subnetLen };
  if (!covers(network, subnet)) {
    throw new ConfigError(`"${key}" ${JSON.stringify(raw)} is outside "Network" ${formatCidr(network)}`);
  }
  return subnet;
}

function cidrField(key: string, raw: unknown): Cidr {
  if (typeof raw !== "string") throw new ConfigError(`"${key}" ${JSON.stringify(raw)} is not a CIDR`);
  try {
    return parseCidr(raw);
  } catch {
    throw new ConfigError(`"${key}" ${JSON.stringify(raw)} is not a valid CIDR`);
  }
}

function intField(o: Record<string, unknown>, key: string, name: string, min: number, max: number): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`"${name}" ${JSON.stringify(v)} must be an integer from ${min} to ${max}`);
  }
  return v;
}

function optionalBool(o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw new ConfigError(`"${key}" ${JSON.stringify(v)} must be true or false`);
  return v;
}

function asObject(raw: unknown, what: string): Record<string, unknown> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${what} must be a JSON object`);
  }
  return raw as Record<string, unknown>;
}

function unknownKeys(o: Record<string, unknown>, known: readonly string[], path: string): void {
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) {
      throw new ConfigError(`unknown field "${path}${key}" (known: ${known.join(", ")})`);
    }
  }
}
