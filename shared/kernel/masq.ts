import { parseCidr, formatCidr } from "../net/cidr.js";
import type { NetTools } from "./tools.js";
import { KernelError } from "./types.js";
import { readNftTable } from "./nft.js";

/**
 * Pod -> outside masquerade: one nftables table per node, `inet twill`, with one rule per
 * cluster CIDR: traffic from pods to anything outside the cluster network leaves with the
 * node's address; pod-to-pod traffic, on this node or across nodes, keeps its source.
 * The whole table is replaced in one `nft -f` transaction, so there is never a moment with
 * half the rules, and nothing outside the table is ever touched.
 */

export const MASQ_TABLE = "twill";

/** The table's text for `nft -f`: create-if-missing, flush by deletion, define, in one transaction. */
export function masqueradeRuleset(clusterCIDRs: readonly string[]): string {
  const rules = clusterCIDRs.map((text) => {
    const c = parseCidr(text);
    const cidr = formatCidr(c);
    const f = c.family === 4 ? "ip" : "ip6";
    // Multicast never leaves through NAT; it would only confuse peers' neighbor discovery.
    const multicast = c.family === 4 ? "224.0.0.0/4" : "ff00::/8";
    return `    ${f} saddr ${cidr} ${f} daddr != { ${cidr}, ${multicast} } masquerade`;
  });
  return [
    `table inet ${MASQ_TABLE} {`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...rules,
    `  }`,
    `}`,
  ].join("\n") + "\n";
}

/** The table as nft lists it, or null when it does not exist. */
export const readMasqueradeTable = (ip: Pick<NetTools, "nft">): Promise<string | null> => readNftTable(ip, MASQ_TABLE);

/** Replaces the table atomically; returns the listing the kernel then holds. */
export async function replaceMasqueradeTable(ip: Pick<NetTools, "nft">, clusterCIDRs: readonly string[]): Promise<string> {
  // `table ... {}` first makes the delete valid when the table does not exist yet.
  const script = `table inet ${MASQ_TABLE} {}\ndelete table inet ${MASQ_TABLE}\n${masqueradeRuleset(clusterCIDRs)}`;
  await ip.nft(["-f", "-"], `install nftables table inet ${MASQ_TABLE}`, script);
  return (await readMasqueradeTable(ip)) ?? "";
}

export async function deleteMasqueradeTable(ip: Pick<NetTools, "nft">): Promise<void> {
  try {
    await ip.nft(["delete", "table", "inet", MASQ_TABLE], `delete nftables table inet ${MASQ_TABLE}`);
  } catch (err) {
    if (!(err instanceof KernelError && err.notFound)) throw err;
  }
}
