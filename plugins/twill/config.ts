import { invalidConfig, unsupportedField } from "../../shared/cni/errors.js";
import { isValidIfname } from "../../shared/cni/skel.js";
import type { IpamConf, NetConf } from "../../shared/cni/types.js";
import { DEFAULT_SUBNET_FILE } from "../../shared/subnet-file.js";

/** The plugin's own settings, validated. Field names follow the reference `bridge` plugin. */
export interface TwillConf {
  network: string;
  bridge: string;
  mtu?: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  isGateway: boolean;
  isDefaultGateway: boolean;
  ipMasq: boolean;
  /** The pod interface's MAC, when the runtime or the user chose one. */
  mac?: string;
  /** Null: no IPAM, an L2-only attachment (the reference accepts `"ipam": {}` the same way). */
  ipam: IpamConf | null;
  subnetFile: string;
  logFile?: string;
  /**
   * The config names neither address ranges nor an MTU: the node agent's subnet file supplies
   * them (this plugin reads the MTU, twill-ipam the subnets).
   */
  nodeMode: boolean;
}

export const DEFAULT_BRIDGE = "cni0";
export const DEFAULT_LOG_FILE = "/var/log/twill/twill.log";

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Validates the network config and CNI_ARGS. Pure. */
export function parseConf(conf: NetConf, cniArgs: Record<string, string> = {}): TwillConf {
  const bool = (key: string): boolean => {
    const v = conf[key];
    if (v === undefined || v === null) return false;
    if (typeof v !== "boolean") throw invalidConfig(`"${key}" must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const str = (key: string): string | undefined => {
    const v = conf[key];
    if (v === undefined || v === null || v === "") return undefined;
    if (typeof v !== "string") throw invalidConfig(`"${key}" must be a string, got ${JSON.stringify(v)}`);
    return v;
  };

  const bridge = str("bridge") ?? DEFAULT_BRIDGE;
  if (!isValidIfname(bridge)) {
    throw invalidConfig(`"bridge" is not a valid interface name: ${JSON.stringify(bridge)}`);
  }

  let mtu: number | undefined;
  if (conf.mtu !== undefined && conf.mtu !== null && conf.mtu !== 0) {
    if (typeof conf.mtu !== "number" || !Number.isInteger(conf.mtu) || conf.mtu < 68 || conf.mtu > 65535) {
      throw invalidConfig(`"mtu" must be an integer from 68 to 65535, got ${JSON.stringify(conf.mtu)}`);
    }
    mtu = conf.mtu;
  }

  const hairpinMode = bool("hairpinMode");
  const promiscMode = bool("promiscMode");
  if (hairpinMode && promiscMode) throw invalidConfig('"hairpinMode" and "promiscMode" cannot both be true');
  const isDefaultGateway = bool("isDefaultGateway");
  // A default route through the bridge needs the gateway address on the bridge.
  const isGateway = bool("isGateway") || isDefaultGateway;

  const mac = pickMac(conf, cniArgs);

  let ipam: IpamConf | null = null;
  if (conf.ipam !== undefined && conf.ipam !== null) {
    if (typeof conf.ipam !== "object" || Array.isArray(conf.ipam)) throw invalidConfig('"ipam" must be an object');
    const type = (conf.ipam as Record<string, unknown>).type;
    if (type !== undefined && type !== "") {
      if (typeof type !== "string" || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(type)) throw unsupportedField("ipam.type", type);
      ipam = conf.ipam;
    }
  }

  const logFile = str("logFile");
  return {
    network: conf.name,
    bridge,
    ...(mtu !== undefined ? { mtu } : {}),
    hairpinMode,
    promiscMode,
    isGateway,
    isDefaultGateway,
    ipMasq: bool("ipMasq"),
    ...(mac ? { mac } : {}),
    ipam,
    subnetFile: str("subnetFile") ?? DEFAULT_SUBNET_FILE,
    ...(logFile ? { logFile } : {}),
    nodeMode: mtu === undefined && !namesRanges(ipam, conf),
  };
}

/** Whether the IPAM config (or the runtime, through the `ipRanges` capability) names ranges. */
function namesRanges(ipam: IpamConf | null, conf: NetConf): boolean {
  if (!ipam) return false;
  const ranges = ipam.ranges;
  if (Array.isArray(ranges) && ranges.length > 0) return true;
  if (typeof ipam.subnet === "string" && ipam.subnet !== "") return true;
  const runtime = conf.runtimeConfig?.ipRanges;
  return Array.isArray(runtime) && runtime.length > 0;
}

/**
 * The pod MAC: CONVENTIONS.md `mac` capability (runtimeConfig), then `args.cni.mac`, then the
 * deprecated CNI_ARGS `MAC=`; the first source in that order wins, as in the reference.
 */
function pickMac(conf: NetConf, cniArgs: Record<string, string>): string | undefined {
  const candidates: [string, unknown][] = [
    ["runtimeConfig.mac", conf.runtimeConfig?.mac],
    ["args.cni.mac", conf.args?.cni?.mac],
    ["CNI_ARGS MAC", cniArgs.MAC],
  ];
  for (const [where, v] of candidates) {
    if (v === undefined || v === null || v === "") continue;
    if (typeof v !== "string" || !MAC.test(v)) throw invalidConfig(`${where} is not a MAC address: ${JSON.stringify(v)}`);
    const first = parseInt(v.slice(0, 2), 16);
    if (first & 1) throw invalidConfig(`${where} ${v} is a multicast address`);
    return v.toLowerCase();
  }
  return undefined;
}
