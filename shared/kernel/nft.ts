import { formatCidr, parseCidr } from "../net/cidr.js";
import type { IpRoute } from "./iproute.js";

/**
 * Pod -> outside masquerade for one CNI network (the plugin's `ipMasq`). One nftables table per
 * network holds two rules and four interval sets; an ADD only adds its pod subnet to the sets.
 * The reference bridge adds a chain per pod instead, which grows with every pod and is left
 * behind when a DEL never comes. Every ADD sends the same transaction: create what is missing,
 * replace the two rules, add set elements (an element already there is no change), so running
 * it again or concurrently never duplicates anything and never leaves half a rule set.
 */

export interface MasqSpec {
  /** The CNI network name; the table is `inet twill-masq-<network>`. */
  network: string;
  /** Pod subnets whose traffic is masqueraded (`10.1.0.0/24`); host bits are ignored. */
  sources: readonly string[];
  /** Destinations reached without masquerade: the pods' own and the cluster's networks. */
  keep: readonly string[];
}

/** nft identifiers start with a letter; network names may start with a digit. */
export const masqTableName = (network: string): string => `twill-masq-${network}`;

const MULTICAST = { 4: "224.0.0.0/4", 6: "ff00::/8" } as const;

/** The `nft -f` transaction for `spec`. Pure, so it is tested on plain data. */
export function masqScript(spec: MasqSpec): string {
  const t = `inet ${masqTableName(spec.network)}`;
  const lines = [
    `add table ${t}`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
  ];
  for (const f of [4, 6] as const) {
    const type = f === 4 ? "ipv4_addr" : "ipv6_addr";
    lines.push(`add set ${t} pods${f} { type ${type}; flags interval; auto-merge; }`);
    lines.push(`add set ${t} keep${f} { type ${type}; flags interval; auto-merge; }`);
  }
  lines.push(`flush chain ${t} postrouting`);
  lines.push(`add rule ${t} postrouting ip saddr @pods4 ip daddr != @keep4 masquerade`);
  lines.push(`add rule ${t} postrouting ip6 saddr @pods6 ip6 daddr != @keep6 masquerade`);
  const sources = spec.sources.map((s) => parseCidr(s));
  const keep = [...sources, ...spec.keep.map((s) => parseCidr(s))];
  for (const f of [4, 6] as const) {
    const src = unique(sources.filter((c) => c.family === f).map(formatCidr));
    if (src.length === 0) continue;
    const dst = unique([...keep.filter((c) => c.family === f).map(formatCidr), MULTICAST[f]]);
    lines.push(`add element ${t} pods${f} { ${src.join(", ")} }`);
    lines.push(`add element ${t} keep${f} { ${dst.join(", ")} }`);
  }
  return lines.join("\n") + "\n";
}

/** Installs or completes the network's masquerade in one nft transaction. */
export async function ensureMasquerade(ip: IpRoute, spec: MasqSpec): Promise<void> {
  await ip.nft(["-f", "-"], `set up masquerade in nftables table inet ${masqTableName(spec.network)}`, masqScript(spec));
}

const unique = (xs: string[]): string[] => [...new Set(xs)];
