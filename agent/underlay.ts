import type { NodeKernel } from "../shared/kernel/node-kernel.js";
import type { Link, LinkAddresses, Route } from "../shared/kernel/types.js";
import { isDefaultRoute, sameIp } from "../shared/kernel/routes.js";
import { familyOfText, parseIp } from "../shared/net/cidr.js";
import { UnderlayError } from "./errors.js";

/**
 * The node's underlay: the interface and address peers reach this node on (VXLAN outer
 * destination, host-gw next hop) and its MTU. Given by --iface / --public-ip, or taken from
 * the default route of the agent's network namespace: its device, and its preferred source
 * or else the device's first global address.
 */

export interface Underlay {
  dev: string;
  ip: string;
  family: 4 | 6;
  mtu: number;
}

export interface UnderlayView {
  routes4: Route[];
  routes6: Route[];
  links: Link[];
  addrs: LinkAddresses[];
}

export interface UnderlayWanted {
  iface?: string;
  publicIP?: string;
}

export async function readUnderlayView(kernel: NodeKernel): Promise<UnderlayView> {
  const [routes4, routes6, links, addrs] = await Promise.all([
    kernel.defaultRoutes(4),
    kernel.defaultRoutes(6),
    kernel.links(),
    kernel.addrs(),
  ]);
  return { routes4, routes6, links, addrs };
}

export function chooseUnderlay(view: UnderlayView, want: UnderlayWanted): Underlay {
  const link = (name: string): Link => {
    const l = view.links.find((x) => x.name === name);
    if (!l) throw new UnderlayError(`underlay interface "${name}" does not exist`);
    return l;
  };
  const globalAddrs = (dev: string, family?: 4 | 6) =>
    (view.addrs.find((a) => a.name === dev)?.addresses ?? []).filter((a) => a.scope === "global" && (family === undefined || a.family === family));

  if (want.publicIP !== undefined) {
    try {
      parseIp(want.publicIP);
    } catch {
      throw new UnderlayError(`--public-ip ${JSON.stringify(want.publicIP)} is not an IP address`);
    }
    const family = familyOfText(want.publicIP);
    const owner = view.addrs.find((a) => a.addresses.some((i) => sameIp(i.ip, want.publicIP!)))?.name;
    const dev = want.iface ?? owner;
    if (!dev) {
      throw new UnderlayError(`public IP ${want.publicIP} is on no interface of this node: give --iface as well`);
    }
    return { dev, ip: want.publicIP, family, mtu: link(dev).mtu };
  }
  if (want.iface !== undefined) {
    const l = link(want.iface);
    const addr = globalAddrs(want.iface, 4)[0] ?? globalAddrs(want.iface, 6)[0];
    if (!addr) throw new UnderlayError(`underlay interface "${want.iface}" has no global address`);
    return { dev: want.iface, ip: addr.ip, family: addr.family, mtu: l.mtu };
  }
  for (const [family, routes] of [
    [4, view.routes4],
    [6, view.routes6],
  ] as const) {
    const route = routes.find((r) => isDefaultRoute(r) && r.dev);
    if (!route?.dev) continue;
    const ip = route.prefsrc ?? globalAddrs(route.dev, family)[0]?.ip;
    if (!ip) throw new UnderlayError(`default route device "${route.dev}" has no global IPv${family} address`);
    return { dev: route.dev, ip, family, mtu: link(route.dev).mtu };
  }
  throw new UnderlayError("no default route in this network namespace: give --iface or --public-ip");
}

export async function detectUnderlay(kernel: NodeKernel, want: UnderlayWanted): Promise<Underlay> {
  return chooseUnderlay(await readUnderlayView(kernel), want);
}
