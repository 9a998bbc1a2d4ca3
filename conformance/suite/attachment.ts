import type { IpLink, IpLinkAddrs, IpRouteEntry } from "../../testkit/iproute.js";
import { parseCidr, formatIp } from "../../shared/net/cidr.js";
import { isObject } from "./config.js";

/**
 * A result compared with the kernel: what ADD reported must be what a namespace holds, and
 * after DEL nothing of it may remain. Pure: the caller reads the namespaces.
 */

export interface NsState {
  links: IpLink[];
  addrs: IpLinkAddrs[];
  routes: { family: 4 | 6; route: IpRouteEntry }[];
}

export interface Where {
  ifname: string;
  netns: string;
}

/** `ip -json route` writes 0/0 as "default" and host routes without a prefix. */
export function routeKey(cidr: string): string {
  if (cidr === "default") return cidr;
  const c = parseCidr(cidr.includes("/") ? cidr : `${cidr}/${cidr.includes(":") ? 128 : 32}`);
  if (c.prefix === 0) return "default";
  const ip = formatIp(c.family, c.network);
  return c.prefix === (c.family === 4 ? 32 : 128) ? ip : `${ip}/${c.prefix}`;
}

const sameIp = (a: string, b: string) => {
  try {
    return routeKey(a) === routeKey(b);
  } catch {
    return a === b;
  }
};

/** Everything ADD's result claims about `where` that the kernel does not show. */
export function attachmentProblems(result: unknown, where: Where, pod: NsState, node: NsState): string[] {
  if (!isObject(result)) return ["result is not an object"];
  const problems: string[] = [];
  const ifaces: any[] = Array.isArray(result.interfaces) ? result.interfaces : [];
  const own = ifaces.findIndex((i) => i?.name === where.ifname && i?.sandbox === where.netns);
  if (own < 0) problems.push(`result lists no interface ${where.ifname} with sandbox ${where.netns}`);

  for (const i of ifaces) {
    if (!isObject(i) || typeof i.name !== "string") continue;
    const inPod = typeof i.sandbox === "string" && i.sandbox !== "";
    if (inPod && i.sandbox !== where.netns) continue;
    const link = (inPod ? pod : node).links.find((l) => l.ifname === i.name);
    const place = inPod ? "the sandbox" : "the node namespace";
    if (!link) {
      problems.push(`interface ${i.name} from the result is not in ${place}`);
      continue;
    }
    if (typeof i.mac === "string" && i.mac !== "" && link.address?.toLowerCase() !== i.mac.toLowerCase()) {
      problems.push(`interface ${i.name} has MAC ${link.address}, the result says ${i.mac}`);
    }
    if (typeof i.mtu === "number" && i.mtu > 0 && link.mtu !== i.mtu) {
      problems.push(`interface ${i.name} has MTU ${link.mtu}, the result says ${i.mtu}`);
    }
  }
  const podLink = pod.links.find((l) => l.ifname === where.ifname);
  if (podLink && !podLink.flags.includes("UP")) problems.push(`interface ${where.ifname} is not up`);

  const ips: any[] = Array.isArray(result.ips) ? result.ips : [];
  ips.forEach((ip, n) => {
    if (!isObject(ip) || typeof ip.address !== "string") return;
    const idx = ip.interface;
    if (typeof idx === "number" && ifaces[idx]?.sandbox !== where.netns) {
      problems.push(`ips[${n}].interface points at ${ifaces[idx]?.name ?? "nothing"}, not at an interface in ${where.netns}`);
      return;
    }
    const target = typeof idx === "number" ? ifaces[idx].name : where.ifname;
    const [addr, prefix] = ip.address.split("/");
    const held = pod.addrs
      .find((a) => a.ifname === target)
      ?.addr_info.some((a) => sameIp(a.local, addr!) && String(a.prefixlen) === prefix);
    if (!held) problems.push(`address ${ip.address} is not on ${target} in the sandbox`);
  });

  const routes: any[] = Array.isArray(result.routes) ? result.routes : [];
  for (const r of routes) {
    if (!isObject(r) || typeof r.dst !== "string") continue;
    let key: string;
    try {
      key = routeKey(r.dst);
    } catch {
      problems.push(`route ${r.dst} has an invalid destination`);
      continue;
    }
    const family = r.dst.includes(":") ? 6 : 4;
    const found = pod.routes.some(
      ({ family: f, route }) =>
        f === family &&
        route.dst === key &&
        (r.gw === undefined || (route.gateway !== undefined && sameIp(route.gateway, r.gw))) &&
        (r.table === undefined || String(route.table ?? "main") === String(r.table === 254 ? "main" : r.table)),
    );
    if (!found) problems.push(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ""} is not in the sandbox`);
  }
  return problems;
}

/**
 * What an attachment left behind after DEL: its interface in the sandbox (when that still
 * exists) and any link on the node that ADD created, other than a shared bridge.
 */
export function leftoverProblems(where: Where, pod: NsState | null, nodeBefore: NsState, nodeAfter: NsState): string[] {
  const problems: string[] = [];
  if (pod?.links.some((l) => l.ifname === where.ifname)) problems.push(`interface ${where.ifname} is still in the sandbox`);
  const before = new Set(nodeBefore.links.map((l) => l.ifname));
  for (const l of nodeAfter.links) {
    if (before.has(l.ifname) || l.linkinfo?.info_kind === "bridge") continue;
    problems.push(`${l.linkinfo?.info_kind ?? "link"} ${l.ifname} is still on the node`);
  }
  return problems;
}

/**
 * The node's links that belong to one attachment: the peer of the sandbox interface (a veth's
 * `link_index` when its peer is in another namespace) and the result's host-side interfaces
 * other than a shared bridge.
 */
export function hostSide(result: unknown, ifname: string, pod: NsState, node: NsState): IpLink[] {
  const podLink = pod.links.find((l) => l.ifname === ifname);
  const names = new Set(
    isObject(result) && Array.isArray(result.interfaces)
      ? result.interfaces.filter((i: any) => isObject(i) && !i.sandbox).map((i: any) => i.name)
      : [],
  );
  return node.links.filter(
    (l) =>
      l.linkinfo?.info_kind !== "bridge" &&
      (names.has(l.ifname) || (podLink?.link_netnsid !== undefined && l.ifindex === podLink.link_index)),
  );
}

/** Problems when the sandbox still holds the interface or any of `host` is still on the node. */
export function remainingProblems(ifname: string, pod: NsState | null, host: readonly IpLink[], nodeAfter: NsState): string[] {
  const problems: string[] = [];
  if (pod?.links.some((l) => l.ifname === ifname)) problems.push(`interface ${ifname} is still in the sandbox`);
  for (const h of host) {
    if (nodeAfter.links.some((l) => l.ifname === h.ifname && l.ifindex === h.ifindex)) {
      problems.push(`${h.linkinfo?.info_kind ?? "link"} ${h.ifname} is still on the node`);
    }
  }
  return problems;
}

/** The result's host-side interfaces of one kind ("veth", "bridge"), as the kernel shows them. */
export function hostInterfaces(result: unknown, node: NsState, kind: string): string[] {
  if (!isObject(result) || !Array.isArray(result.interfaces)) return [];
  return result.interfaces
    .filter((i: any) => isObject(i) && !i.sandbox && typeof i.name === "string")
    .map((i: any) => i.name as string)
    .filter((name) => node.links.find((l) => l.ifname === name)?.linkinfo?.info_kind === kind);
}

/** The addresses a result gives the attachment, without prefix. */
export const resultAddresses = (result: unknown): string[] =>
  isObject(result) && Array.isArray(result.ips)
    ? result.ips.filter((ip: any) => typeof ip?.address === "string").map((ip: any) => ip.address.split("/")[0] as string)
    : [];
