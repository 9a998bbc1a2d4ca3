import type { Interface, IpConfig, Result, Route } from "../../shared/cni/types.js";
import { bridgeAddressStep, bridgeSettingsStep, type BridgeSpec } from "../../shared/kernel/bridge.js";
import type { Address } from "../../shared/kernel/types.js";
import type { NetStep } from "../../shared/kernel/pod-kernel.js";
import { sameIp } from "../../shared/kernel/routes.js";
import type { VethSpec } from "../../shared/kernel/veth.js";
import { formatCidr, formatIp, parseCidr, parseIp, type Family } from "../../shared/net/cidr.js";
import type { TwillConf } from "./config.js";
import { bridgeMac, hostVethMac, hostVethName, podMac } from "./names.js";

/**
 * What ADD does, decided from plain data before anything is touched, as two change sets: the
 * node's (bridge, veth pair), which depends on nothing IPAM decides, and the pod's (addresses,
 * MAC, routes). The kernel interface applies each one in order, over netlink.
 */

export interface Attachment {
  containerId: string;
  ifname: string;
  netns: string;
}

/** A change with what it does, for an error that names the failing step. */
export interface Step {
  step: NetStep;
  what: string;
}

export interface NodePlan {
  bridge: BridgeSpec;
  veth: VethSpec;
  /** Bridge settings, the veth pair, hairpin; the bridge and its addresses are read back after. */
  steps: Step[];
  /** Index in steps of the line creating the veth: a failure after it leaves a veth to undo. */
  vethStep: number;
}

export interface PodPlan {
  /** The pod interface's MAC (the runtime's, else derived from the address). */
  mac: string;
  /** lo up, addresses, MAC and link up, routes. */
  steps: Step[];
  /** IPAM's addresses with the gateway filled in when twill is the gateway. */
  ips: IpConfig[];
  /** IPAM's routes plus the default routes twill adds. */
  routes: Route[];
  /** Gateway addresses the bridge must hold (`10.1.0.1/24`). */
  gateways: string[];
  /** `sysctl` keys to set to 1 in the node namespace. */
  forwarding: string[];
  /** Pod subnets (for masquerade). */
  podSubnets: string[];
}

export function planNode(conf: TwillConf, mtu: number | undefined, at: Attachment): NodePlan {
  const bridge: BridgeSpec = {
    name: conf.bridge,
    mac: bridgeMac(conf.bridge),
    ...(mtu !== undefined ? { mtu } : {}),
    ...(conf.promiscMode ? { promisc: true } : {}),
  };
  const hostName = hostVethName(at.containerId, at.ifname);
  const veth: VethSpec = {
    name: hostName,
    mac: hostVethMac(at.containerId, at.ifname),
    ...(mtu !== undefined ? { mtu } : {}),
    master: conf.bridge,
    // The derived MAC needs the address, which IPAM has not chosen yet: the pod batch sets it.
    peer: { name: at.ifname, ...(conf.mac ? { mac: conf.mac } : {}), netns: at.netns },
  };
  const steps: Step[] = [{ step: bridgeSettingsStep(bridge), what: `set up bridge "${bridge.name}"` }];
  const vethStep = steps.length;
  steps.push({
    step: { op: "add-veth", veth },
    what: `create veth "${hostName}" on bridge "${bridge.name}" with peer "${at.ifname}" in ${at.netns}`,
  });
  if (conf.hairpinMode) steps.push({ step: { op: "hairpin", dev: hostName }, what: `turn on hairpin mode on "${hostName}"` });
  return { bridge, veth, steps, vethStep };
}

export function planPod(conf: TwillConf, at: Attachment, ipam: Result): PodPlan {
  const ips = (ipam.ips ?? []).map((ip) => withGateway(ip, conf.isGateway));
  const mac = conf.mac ?? podMac(ips.map((i) => i.address), at.containerId, at.ifname);
  const routes = podRoutes(conf, ips, ipam.routes ?? []);
  const steps: Step[] = [{ step: { op: "set-link", dev: "lo", up: true }, what: `set "lo" up in ${at.netns}` }];
  for (const ip of ips) {
    steps.push({
      step: { op: "add-address", dev: at.ifname, cidr: ip.address, replace: false },
      what: `add address ${ip.address} to "${at.ifname}" in ${at.netns}`,
    });
  }
  steps.push({
    step: { op: "set-link", dev: at.ifname, ...(conf.mac ? {} : { mac }), up: true },
    what: `set "${at.ifname}" up in ${at.netns}`,
  });
  for (const r of routes) {
    const gw = r.gw ?? gatewayFor(ips, familyOfDst(r.dst));
    steps.push({
      step: { op: "add-route", dst: r.dst, ...(gw ? { via: gw } : {}), dev: at.ifname },
      what: `add route ${r.dst}${gw ? ` via ${gw}` : ""} in ${at.netns}`,
    });
  }
  const gateways = conf.isGateway
    ? unique(ips.filter((i) => i.gateway).map((i) => `${i.gateway}/${parseCidr(i.address).prefix}`))
    : [];
  const families = new Set(ips.map((i) => parseCidr(i.address).family));
  const forwarding = conf.isGateway
    ? [...(families.has(4) ? ["net.ipv4.ip_forward"] : []), ...(families.has(6) ? ["net.ipv6.conf.all.forwarding"] : [])]
    : [];
  return { mac, steps, ips, routes, gateways, forwarding, podSubnets: unique(ips.map((i) => formatCidr(parseCidr(i.address)))) };
}

/**
 * The gateway addresses the bridge lacks, as steps; usually none, as the node's first pod put
 * them there. `replace` keeps concurrent ADDs from failing on each other (plugins#366).
 */
export function missingGatewaySteps(bridge: BridgeSpec, have: readonly Address[], gateways: readonly string[]): NetStep[] {
  return gateways
    .filter((g) => {
      const c = parseCidr(g);
      return !have.some((a) => a.prefixLength === c.prefix && sameIp(a.ip, formatIp(c.family, c.ip)));
    })
    .map((g) => bridgeAddressStep(bridge, g));
}

/** The gateway is IPAM's, or when twill is the gateway and IPAM named none, the subnet's first address. */
function withGateway(ip: IpConfig, isGateway: boolean): IpConfig {
  const { interface: _index, ...rest } = ip;
  if (rest.gateway || !isGateway) return rest;
  const c = parseCidr(rest.address);
  return { ...rest, gateway: formatIp(c.family, c.network + 1n) };
}

/** IPAM's routes, plus a default route per family through the bridge when isDefaultGateway. */
function podRoutes(conf: TwillConf, ips: IpConfig[], ipamRoutes: Route[]): Route[] {
  const routes = ipamRoutes.map((r) => ({ ...r }));
  if (!conf.isDefaultGateway) return routes;
  for (const f of [4, 6] as const) {
    const gw = gatewayFor(ips, f);
    if (!gw) continue;
    const dst = f === 4 ? "0.0.0.0/0" : "::/0";
    if (routes.some((r) => isDefault(r.dst, f))) continue;
    routes.push({ dst, gw });
  }
  return routes;
}

const gatewayFor = (ips: IpConfig[], f: Family): string | undefined =>
  ips.find((i) => i.gateway && parseIp(i.gateway).family === f)?.gateway;

const familyOfDst = (dst: string): Family => (dst.includes(":") ? 6 : 4);

const isDefault = (dst: string, f: Family): boolean => {
  try {
    const c = parseCidr(dst);
    return c.family === f && c.prefix === 0;
  } catch {
    return false;
  }
};

/** The result: prevResult's content first, then bridge, node end and pod end; ips point at the pod end. */
export function buildResult(
  cniVersion: string,
  prev: Result | null,
  node: NodePlan,
  pod: PodPlan,
  bridgeMacRead: string,
  ipamDns: Result["dns"],
  confDns: Result["dns"],
): Result {
  const mtu = node.bridge.mtu !== undefined ? { mtu: node.bridge.mtu } : {};
  const ours: Interface[] = [
    { name: node.bridge.name, mac: bridgeMacRead, ...mtu },
    { name: node.veth.name, mac: node.veth.mac, ...mtu },
    { name: node.veth.peer.name, mac: pod.mac, ...mtu, sandbox: node.veth.peer.netns },
  ];
  const interfaces = [...(prev?.interfaces ?? []), ...ours];
  const podIndex = interfaces.length - 1;
  const dns = nonEmpty(confDns) ? confDns : nonEmpty(ipamDns) ? ipamDns : prev?.dns;
  return {
    cniVersion,
    interfaces,
    ips: [...(prev?.ips ?? []), ...pod.ips.map((ip) => ({ ...ip, interface: podIndex }))],
    routes: [...(prev?.routes ?? []), ...pod.routes],
    ...(nonEmpty(dns) ? { dns } : {}),
  };
}

const nonEmpty = (d: Result["dns"]): d is NonNullable<Result["dns"]> =>
  !!d && Object.values(d).some((v) => (Array.isArray(v) ? v.length > 0 : !!v));

const unique = (xs: string[]): string[] => [...new Set(xs)];
