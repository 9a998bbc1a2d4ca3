import { inNetns } from "../../testkit/netns.js";
import { parseNftCounters } from "../../testkit/iproute.js";
import type { Testbed } from "./testbed.js";
import { SEGMENTS } from "./topology.js";

/** The counters `underlayCounters` reads: node to node packets by kind, and any packet with a pod address in clear. */
export interface UnderlayCounts {
  /** IP packets between nodes that are UDP to the given port (the tunnel's). */
  tunnel: number;
  /** Other IP packets between nodes (ND is not counted: it is not traffic between nodes). */
  other: number;
  /** Packets whose source or destination is a pod address: pod traffic in clear. */
  podsInClear: number;
}

/**
 * Counters on the switch's bridge of segment a (family bridge: it sees every frame between the
 * nodes there), installed now; the function returned reads them. It is how the demo and the
 * tests show that pod traffic crosses the underlay only inside the tunnel.
 */
export async function underlayCounters(t: Testbed, tunnelPort: number): Promise<() => Promise<UnderlayCounts>> {
  const { prefix, prefix6 } = SEGMENTS.a;
  const nodes4 = `${prefix}.0/24`;
  const nodes6 = `${prefix6}:/64`;
  const ruleset = [
    "table bridge twill_underlay_counters {",
    "  counter tunnel {}",
    "  counter other {}",
    "  counter pods_in_clear {}",
    "  chain forward {",
    "    type filter hook forward priority 0; policy accept;",
    ...t.network.clusterCIDRs.flatMap((c) => {
      const ip = c.includes(":") ? "ip6" : "ip";
      return [`    ${ip} saddr ${c} counter name pods_in_clear`, `    ${ip} daddr ${c} counter name pods_in_clear`];
    }),
    `    ip saddr ${nodes4} ip daddr ${nodes4} udp dport ${tunnelPort} counter name tunnel accept`,
    `    ip saddr ${nodes4} ip daddr ${nodes4} counter name other`,
    `    ip6 saddr ${nodes6} ip6 daddr ${nodes6} udp dport ${tunnelPort} counter name tunnel accept`,
    `    ip6 saddr ${nodes6} ip6 daddr ${nodes6} meta l4proto != ipv6-icmp counter name other`,
    "  }",
    "}",
  ].join("\n");
  const r = await inNetns(t.underlay.switchNs, ["nft", "-f", "-"], { input: ruleset });
  if (r.exitCode !== 0) throw new Error(`nft in the switch: ${String(r.stderr)}`);
  return async () => {
    const c = parseNftCounters(String((await inNetns(t.underlay.switchNs, ["nft", "-j", "list", "counters", "table", "bridge", "twill_underlay_counters"])).stdout));
    return { tunnel: c.get("tunnel") ?? 0, other: c.get("other") ?? 0, podsInClear: c.get("pods_in_clear") ?? 0 };
  };
}
