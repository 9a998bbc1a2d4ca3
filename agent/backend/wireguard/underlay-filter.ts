import type { NetTools } from "../../../shared/kernel/tools.js";
import { readNftTable } from "../../../shared/kernel/nft.js";
import { formatCidr, parseCidr } from "../../../shared/net/cidr.js";

/**
 * WireGuard alone is not a filter: a host on the underlay with a plain route to a pod subnet
 * via a node reaches the pod in clear, as the node forwards (docs/wireguard-design.md §6).
 * This table drops, in the forward path, packets for the cluster's pod CIDRs that arrive on
 * the underlay device: pod traffic between nodes comes out of the WireGuard device, never in
 * clear. Packets of a connection the node translated are let through first: replies to pods
 * masqueraded on the way out (SNAT), and traffic a Service sent to a pod (DNAT, NodePort); and
 * packets from the hosts the operator lets in (`AllowUnencryptedFrom`: a control plane that
 * runs no twilld reaching webhooks and the API's proxy).
 * A table of its own, as the masquerade's `inet twill` is replaced whole by its reconciler.
 */

export const UNDERLAY_FILTER_TABLE = "twill-wg";
/** The named counter of what the filter dropped. */
export const UNDERLAY_DROPS = "underlay_to_pods";
/** The named counter of what came in clear from a host the operator lets in. */
export const UNDERLAY_ALLOWED = "allowed_unencrypted";

export function underlayFilterRuleset(underlayDev: string, clusterCIDRs: readonly string[], allowFrom: readonly string[] = []): string {
  const dev = JSON.stringify(underlayDev);
  const allowed = ([4, 6] as const).flatMap((family) => {
    const from = allowFrom.map((t) => parseCidr(t)).filter((c) => c.family === family).map(formatCidr);
    return from.length ? [`    iifname ${dev} ${family === 4 ? "ip" : "ip6"} saddr { ${from.join(", ")} } counter name ${UNDERLAY_ALLOWED} accept`] : [];
  });
  const drops = clusterCIDRs.map((text) => {
    const c = parseCidr(text);
    return `    iifname ${dev} ${c.family === 4 ? "ip" : "ip6"} daddr ${formatCidr(c)} counter name ${UNDERLAY_DROPS} drop`;
  });
  return [
    `table inet ${UNDERLAY_FILTER_TABLE} {`,
    `  counter ${UNDERLAY_DROPS} {}`,
    `  counter ${UNDERLAY_ALLOWED} {}`,
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    iifname ${dev} ct status snat accept`,
    `    iifname ${dev} ct status dnat accept`,
    ...allowed,
    ...drops,
    "  }",
    "}",
  ].join("\n") + "\n";
}

/**
 * Keeps the table as wanted: installed when missing or different from what this process last
 * installed (one `nft -f` transaction, the old table deleted in it). Returns the listing the
 * kernel holds, for the next comparison, and whether it changed anything.
 */
export async function ensureUnderlayFilter(ip: Pick<NetTools, "nft">, ruleset: string, installed: string | null): Promise<{ listing: string; changed: boolean }> {
  const current = await readListing(ip);
  if (current !== null && current === installed) return { listing: current, changed: false };
  const t = `inet ${UNDERLAY_FILTER_TABLE}`;
  await ip.nft(["-f", "-"], `install nftables table ${t}`, `table ${t} {}\ndelete table ${t}\n${ruleset}`);
  return { listing: (await readListing(ip)) ?? "", changed: true };
}

/** The table as listed, its counter's values left out: drops counted are no change to undo. */
async function readListing(ip: Pick<NetTools, "nft">): Promise<string | null> {
  return (await readNftTable(ip, UNDERLAY_FILTER_TABLE))?.replace(/packets \d+ bytes \d+/g, "") ?? null;
}
