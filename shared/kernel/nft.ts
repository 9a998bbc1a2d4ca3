import { formatCidr, lastAddress, parseCidr, parseIp } from "../net/cidr.js";
import type { NetTools } from "./tools.js";
import { KernelError } from "./types.js";

/**
 * Pod -> outside masquerade for one CNI network (the plugin's `ipMasq`). One nftables table per
 * network: two constant rules that match named interval sets, `ip saddr @pods4 ip daddr !=
 * @keep4 masquerade` (and IPv6), and an ADD only makes sure its pod subnet is in the sets. The
 * reference bridge adds a chain per pod instead, which grows with every pod and is left behind
 * when a DEL never comes.
 *
 * Reading the table is cheap (over nfnetlink in the compiled plugin, see netlink/nftables.ts;
 * else one `nft list`, run while ADD does other work); changing it costs far more (an `nft`
 * process, and a transaction that replaces NAT rules waits for the kernel), so ADD changes it
 * only when something is missing, which is the node's first pod of a subnet.
 * The change is one transaction that creates what is missing, replaces both rules (so a re-run
 * or two concurrent first ADDs never leave a duplicate) and adds set elements (adding one that
 * is there is no change).
 */

export interface MasqSpec {
  /** The CNI network name; the table is `inet twill-masq-<network>`. */
  network: string;
  /** Pod subnets whose traffic is masqueraded (`10.1.0.0/24`); host bits are ignored. */
  sources: readonly string[];
  /** Destinations reached without masquerade besides the sources: the cluster's networks. */
  keep: readonly string[];
}

/** What the table holds, as far as ADD cares. */
export interface MasqState {
  /** Both rules are there, once each. */
  rules: boolean;
  /** Set name -> covered intervals. */
  sets: Record<string, [bigint, bigint][]>;
}

/** nft identifiers start with a letter; network names may start with a digit. */
export const masqTableName = (network: string): string => `twill-masq-${network}`;

/** Marks twill's rules, so a listing tells them from anything else and counts them. */
export const MASQ_RULE_TAG = "twill-masq-v1";
const MULTICAST = { 4: "224.0.0.0/4", 6: "ff00::/8" } as const;
const FAMILIES = [4, 6] as const;

/** The set contents `spec` needs: pods<f> and keep<f> per family that has a source. */
export function wantedElements(spec: MasqSpec): Record<string, string[]> {
  const sources = spec.sources.map((s) => parseCidr(s));
  const keep = [...sources, ...spec.keep.map((s) => parseCidr(s))];
  const out: Record<string, string[]> = {};
  for (const f of FAMILIES) {
    const src = unique(sources.filter((c) => c.family === f).map(formatCidr));
    if (src.length === 0) continue;
    out[`pods${f}`] = src;
    out[`keep${f}`] = unique([...keep.filter((c) => c.family === f).map(formatCidr), MULTICAST[f]]);
  }
  return out;
}

/** Reads `nft list table` output. Pure. */
export function parseMasqTable(text: string): MasqState {
  const tags = text.split(`comment "${MASQ_RULE_TAG}"`).length - 1;
  const sets: MasqState["sets"] = {};
  for (const m of text.matchAll(/set (\w+) \{([^}]*?)(?:elements = \{([^}]*)\})?\s*\}/g)) {
    sets[m[1]!] = (m[3] ?? "")
      .split(",")
      .map((e) => e.trim())
      .filter(Boolean)
      .map(parseElement)
      .filter((x): x is [bigint, bigint] => x !== null);
  }
  return { rules: tags === 2 && /ip saddr @pods4 ip daddr != @keep4 masquerade/.test(text) && /ip6 saddr @pods6 ip6 daddr != @keep6 masquerade/.test(text), sets };
}

/** `10.1.0.0/24`, `10.1.0.0-10.2.255.255` or a single address, as an inclusive interval. */
function parseElement(e: string): [bigint, bigint] | null {
  try {
    if (e.includes("/")) {
      const c = parseCidr(e);
      return [c.network, lastAddress(c)];
    }
    const dash = e.indexOf("-");
    if (dash > 0) return [parseIp(e.slice(0, dash)).value, parseIp(e.slice(dash + 1)).value];
    const ip = parseIp(e).value;
    return [ip, ip];
  } catch {
    return null;
  }
}

/**
 * The `nft -f` transaction that completes the table for `spec`, or null when the table
 * (`have`, null when it does not exist) already does everything. Pure.
 */
export function masqScript(spec: MasqSpec, have: MasqState | null): string | null {
  const t = `inet ${masqTableName(spec.network)}`;
  const wanted = wantedElements(spec);
  const missing = Object.entries(wanted)
    .map(([set, cidrs]) => [set, cidrs.filter((c) => !covered(have?.sets[set] ?? [], c))] as const)
    .filter(([, cidrs]) => cidrs.length > 0);
  if (have?.rules && missing.length === 0) return null;
  const lines = [
    `add table ${t}`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
  ];
  for (const f of FAMILIES) {
    const type = f === 4 ? "ipv4_addr" : "ipv6_addr";
    lines.push(`add set ${t} pods${f} { type ${type}; flags interval; auto-merge; }`);
    lines.push(`add set ${t} keep${f} { type ${type}; flags interval; auto-merge; }`);
  }
  if (!have?.rules) {
    lines.push(`flush chain ${t} postrouting`);
    lines.push(`add rule ${t} postrouting ip saddr @pods4 ip daddr != @keep4 masquerade comment "${MASQ_RULE_TAG}"`);
    lines.push(`add rule ${t} postrouting ip6 saddr @pods6 ip6 daddr != @keep6 masquerade comment "${MASQ_RULE_TAG}"`);
  }
  for (const [set, cidrs] of missing) lines.push(`add element ${t} ${set} { ${cidrs.join(", ")} }`);
  return lines.join("\n") + "\n";
}

function covered(intervals: [bigint, bigint][], cidr: string): boolean {
  const c = parseCidr(cidr);
  const hi = lastAddress(c);
  // Sets hold one family each (pods4, pods6, ...), so values compare within a family.
  return intervals.some(([a, b]) => a <= c.network && hi <= b);
}

/** `nft list table inet NAME`, or null when the table does not exist. */
export async function readNftTable(ip: Pick<NetTools, "nft">, name: string): Promise<string | null> {
  try {
    return await ip.nft(["list", "table", "inet", name], `read nftables table inet ${name}`);
  } catch (err) {
    if (err instanceof KernelError && err.notFound) return null;
    throw err;
  }
}

/** What the network's masquerade table holds, or null when it does not exist. */
export async function readMasquerade(ip: Pick<NetTools, "nft">, network: string): Promise<MasqState | null> {
  const text = await readNftTable(ip, masqTableName(network));
  return text === null ? null : parseMasqTable(text);
}

/** Completes the network's masquerade in one nft transaction when `have` lacks anything. */
export async function ensureMasquerade(ip: Pick<NetTools, "nft">, spec: MasqSpec, have: MasqState | null): Promise<boolean> {
  const script = masqScript(spec, have);
  if (script === null) return false;
  await ip.nft(["-f", "-"], `set up masquerade in nftables table inet ${masqTableName(spec.network)}`, script);
  return true;
}

const unique = (xs: string[]): string[] => [...new Set(xs)];

/** Runs one `nft -f -` transaction: the kernel applies all of `script` or none of it. */
export async function applyNftScript(ip: Pick<NetTools, "nft">, script: string, op: string): Promise<void> {
  await ip.nft(["-f", "-"], op, script);
}

