import { addNetns, ipIn, sysctls } from "./netns.js";
import type { Resources } from "./cleanup.js";

/**
 * The underlay: one switch namespace holding a bridge per L3 segment, a router namespace with
 * a leg on each segment (the nodes' default gateway, `.1`), and node namespaces attached to a
 * segment's bridge by a veth whose node end is `eth0`. Segment "a" is 192.168.77.0/24; nodes
 * put on segment "b" (192.168.88.0/24) reach the others only through the router, so host-gw
 * cannot reach them directly while VXLAN can.
 */

export type Segment = "a" | "b";

export const SEGMENTS: Record<Segment, { prefix: string; bridge: string; routerIf: string }> = {
  a: { prefix: "192.168.77", bridge: "br-a", routerIf: "r-a" },
  b: { prefix: "192.168.88", bridge: "br-b", routerIf: "r-b" },
};

export interface Underlay {
  switchNs: string;
  routerNs: string;
  mtu: number;
}

export interface UnderlayNode {
  ns: string;
  segment: Segment;
  ip: string;
  dev: "eth0";
}

export async function createUnderlay(prefix: string, mtu: number, segments: Segment[], res: Resources): Promise<Underlay> {
  const switchNs = `${prefix}sw`;
  const routerNs = `${prefix}rt`;
  for (const ns of [switchNs, routerNs]) {
    await addNetns(ns);
    res.namespaces.add(ns);
  }
  const sw = ipIn(switchNs);
  for (const seg of segments) {
    const { prefix: p, bridge, routerIf } = SEGMENTS[seg];
    await sw.batch(
      [
        ["link", "add", bridge, "mtu", mtu, "type", "bridge"],
        ["link", "set", bridge, "up"],
        ["link", "add", `up-${seg}`, "mtu", mtu, "type", "veth", "peer", "name", routerIf, "netns", routerNs],
        ["link", "set", `up-${seg}`, "master", bridge, "up"],
      ],
      `create segment ${seg} in "${switchNs}"`,
    );
    await ipIn(routerNs).batch(
      [
        ["addr", "add", `${p}.1/24`, "dev", routerIf],
        ["link", "set", routerIf, "up"],
      ],
      `configure router leg ${routerIf}`,
    );
  }
  await sysctls(routerNs, { "net.ipv4.ip_forward": 1 });
  return { switchNs, routerNs, mtu };
}

/** Creates a node namespace on a segment: eth0 with `<segment>.<10+index>/24`, default via the router. */
export async function attachNode(u: Underlay, ns: string, index: number, segment: Segment, res: Resources): Promise<UnderlayNode> {
  await addNetns(ns);
  res.namespaces.add(ns);
  const { prefix: p, bridge } = SEGMENTS[segment];
  const port = `n${index}`;
  const ip = `${p}.${10 + index}`;
  await ipIn(u.switchNs).batch(
    [
      ["link", "add", port, "mtu", u.mtu, "type", "veth", "peer", "name", "eth0", "netns", ns],
      ["link", "set", port, "master", bridge, "up"],
    ],
    `attach node "${ns}" to ${bridge}`,
  );
  await ipIn(ns).batch(
    [
      ["addr", "add", `${ip}/24`, "dev", "eth0"],
      ["link", "set", "eth0", "up"],
      ["route", "add", "default", "via", `${p}.1`],
    ],
    `configure eth0 of "${ns}"`,
  );
  // A node forwards pod traffic; a fresh namespace starts with forwarding off.
  await sysctls(ns, { "net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1 });
  return { ns, segment, ip, dev: "eth0" };
}
