import { addNetns, ipIn, sysctls } from "../../testkit/netns.js";
import type { Resources } from "./cleanup.js";

/**
 * The underlay: one switch namespace holding a bridge per L3 segment, a router namespace with
 * a leg on each segment (the nodes' default gateway, `.1` / `::1`), and node namespaces
 * attached to a segment's bridge by a veth whose node end is `eth0`. Segment "a" is
 * 192.168.77.0/24 and fd00:77::/64; nodes put on segment "b" (192.168.88.0/24, fd00:88::/64)
 * reach the others only through the router, so host-gw cannot reach them directly while
 * VXLAN can. The underlay carries IPv4, IPv6 or both; with `linkLocal6` a dual-stack node's
 * IPv6 is link-local only.
 */

export type Segment = "a" | "b";
export type UnderlayFamily = 4 | 6 | "dual";

export const SEGMENTS: Record<Segment, { prefix: string; prefix6: string; bridge: string; routerIf: string }> = {
  a: { prefix: "192.168.77", prefix6: "fd00:77:", bridge: "br-a", routerIf: "r-a" },
  b: { prefix: "192.168.88", prefix6: "fd00:88:", bridge: "br-b", routerIf: "r-b" },
};

export interface UnderlayOptions {
  mtu: number;
  family: UnderlayFamily;
  /** Dual-stack only: nodes get no global IPv6 address, only their link-local one. */
  linkLocal6?: boolean;
}

export interface Underlay extends UnderlayOptions {
  switchNs: string;
  routerNs: string;
}

export interface UnderlayNode {
  ns: string;
  segment: Segment;
  /** The node's primary underlay address: IPv4 unless the underlay is IPv6-only. */
  ip: string;
  /** Its IPv6 address beside an IPv4 primary one (dual-stack underlay, global or link-local). */
  ip6?: string;
  dev: "eth0";
}

const has4 = (f: UnderlayFamily) => f !== 6;
const has6 = (f: UnderlayFamily) => f !== 4;

// No duplicate address detection: addresses (link-local ones too) are usable at once, instead
// of a second later, and the testbed hands out unique ones anyway.
const NO_DAD = { "net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0 };

export async function createUnderlay(prefix: string, o: UnderlayOptions, segments: Segment[], res: Resources): Promise<Underlay> {
  const switchNs = `${prefix}sw`;
  const routerNs = `${prefix}rt`;
  for (const ns of [switchNs, routerNs]) {
    await addNetns(ns);
    res.namespaces.add(ns);
    await sysctls(ns, NO_DAD);
  }
  const sw = ipIn(switchNs);
  for (const seg of segments) {
    const { prefix: p, prefix6: p6, bridge, routerIf } = SEGMENTS[seg];
    await sw.batch(
      [
        ["link", "add", bridge, "mtu", o.mtu, "type", "bridge"],
        ["link", "set", bridge, "up"],
        ["link", "add", `up-${seg}`, "mtu", o.mtu, "type", "veth", "peer", "name", routerIf, "netns", routerNs],
        ["link", "set", `up-${seg}`, "master", bridge, "up"],
      ],
      `create segment ${seg} in "${switchNs}"`,
    );
    await ipIn(routerNs).batch(
      [
        ...(has4(o.family) ? [["addr", "add", `${p}.1/24`, "dev", routerIf]] : []),
        ...(has6(o.family) ? [["addr", "add", `${p6}:1/64`, "dev", routerIf, "nodad"]] : []),
        ["link", "set", routerIf, "up"],
      ],
      `configure router leg ${routerIf}`,
    );
  }
  await sysctls(routerNs, { "net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1 });
  return { switchNs, routerNs, ...o };
}

/**
 * Creates a node namespace on a segment: eth0 with `<segment>.<10+index>/24` and/or
 * `<segment6>:<10+index>/64`, default routes via the router.
 */
export async function attachNode(u: Underlay, ns: string, index: number, segment: Segment, res: Resources): Promise<UnderlayNode> {
  await addNetns(ns);
  res.namespaces.add(ns);
  await sysctls(ns, NO_DAD);
  const { prefix: p, prefix6: p6, bridge } = SEGMENTS[segment];
  const port = `n${index}`;
  const ip4 = `${p}.${10 + index}`;
  const ip6 = `${p6}:${10 + index}`;
  const global6 = has6(u.family) && !(u.family === "dual" && u.linkLocal6);
  await ipIn(u.switchNs).batch(
    [
      ["link", "add", port, "mtu", u.mtu, "type", "veth", "peer", "name", "eth0", "netns", ns],
      ["link", "set", port, "master", bridge, "up"],
    ],
    `attach node "${ns}" to ${bridge}`,
  );
  await ipIn(ns).batch(
    [
      ...(has4(u.family) ? [["addr", "add", `${ip4}/24`, "dev", "eth0"]] : []),
      ...(global6 ? [["addr", "add", `${ip6}/64`, "dev", "eth0", "nodad"]] : []),
      ["link", "set", "eth0", "up"],
      ...(has4(u.family) ? [["route", "add", "default", "via", `${p}.1`]] : []),
      ...(global6 ? [["route", "add", "::/0", "via", `${p6}:1`]] : []),
    ],
    `configure eth0 of "${ns}"`,
  );
  // A node forwards pod traffic; a fresh namespace starts with forwarding off.
  await sysctls(ns, { "net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1 });
  const node: UnderlayNode = { ns, segment, ip: has4(u.family) ? ip4 : ip6, dev: "eth0" };
  if (u.family === "dual") node.ip6 = global6 ? ip6 : await linkLocalOf(ns);
  return node;
}

async function linkLocalOf(ns: string): Promise<string> {
  const [eth0] = await ipIn(ns).addrs("eth0");
  const ll = eth0?.addr_info.find((a) => a.family === "inet6" && a.scope === "link");
  if (!ll) throw new Error(`eth0 of "${ns}" has no IPv6 link-local address`);
  return ll.local;
}
