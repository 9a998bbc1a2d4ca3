import type { DropCounter, NftSet, PolicyPlan } from "./plan.js";

/**
 * A compiled plan as one `nft -f` transaction. The kernel commits a transaction at once, so
 * packets see either the old ruleset or the new one: no moment where a pod is unprotected,
 * none where it is cut off.
 *
 * - renderRuleset: the whole table, replacing whatever is there (create it so the delete
 *   cannot fail, delete it, define it anew). At start-up and after a failure.
 * - renderUpdate: from the plan in the kernel to the next one, touching only what changed.
 *   Names stand for their contents (a set's name is a hash of its elements), so a changed set
 *   is a new set plus the rules that use it, and counters of pods that stay keep counting.
 */

export const POLICY_TABLE = "twill-policy";

/**
 * Neighbour discovery must pass whatever a pod's policy says (RFC 4861): to a pod address, and
 * from a pod to its node (the pod resolving its gateway).
 */
const ND_TYPES = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert";

/**
 * The base chains, each dispatching to the pods' chains through the maps of its direction.
 * Packets between pods, and from pods to elsewhere, cross the forward hook; a pod's packets to
 * its own node (its addresses, hostNetwork pods such as kubelet's) cross input instead, and
 * egress policy covers them too. All at the filter priority: a deny in any of them is final,
 * whatever other tables hook there.
 */
const BASE_CHAINS = [
  { name: "ingress", hook: "forward", direction: "ingress" },
  { name: "egress", hook: "forward", direction: "egress" },
  { name: "egress-to-node", hook: "input", direction: "egress" },
] as const;

export interface Ruleset {
  script: string;
  /** Size of the transaction, for logs and the benchmark. */
  rules: number;
  elements: number;
  bytes: number;
}

export function renderRuleset(plan: PolicyPlan, table = POLICY_TABLE): Ruleset {
  const t = `inet ${table}`;
  const out: string[] = [`add table ${t}`, `delete table ${t}`, `table ${t} {`];
  let rules = 0;
  let elements = 0;
  for (const c of plan.counters) out.push(`  ${counterDecl(c)}`);
  for (const s of plan.sets) {
    elements += s.elements.length;
    out.push(`  ${setDecl(s)}`);
  }
  for (const m of plan.maps) {
    elements += m.elements.length;
    const type = m.family === 4 ? "ipv4_addr" : "ipv6_addr";
    out.push(`  map ${m.name} { type ${type} : verdict;${elementsClause(m.elements.map(([ip, chain]) => `${ip} : jump ${chain}`))} }`);
  }
  for (const b of BASE_CHAINS) {
    const side = b.direction === "ingress" ? "daddr" : "saddr";
    const base = [
      "ct state established,related accept",
      `icmpv6 type { ${ND_TYPES} } accept`,
      `ip ${side} vmap @${b.direction}4`,
      `ip6 ${side} vmap @${b.direction}6`,
    ];
    rules += base.length;
    out.push(`  chain ${b.name} {`, `    type filter hook ${b.hook} priority filter; policy accept;`, ...base.map((r) => `    ${r}`), "  }");
  }
  for (const c of plan.chains) {
    rules += c.rules.length;
    out.push(`  chain ${c.name} {`, `    comment "${c.comment}"`, ...c.rules.map((r) => `    ${r}`), "  }");
  }
  out.push("}");
  const script = out.join("\n") + "\n";
  return { script, rules, elements, bytes: Buffer.byteLength(script) };
}

/** The transaction that turns the table from `prev` (what the kernel holds) into `next`. */
export function renderUpdate(prev: PolicyPlan, next: PolicyPlan, table = POLICY_TABLE): Ruleset {
  const t = `inet ${table}`;
  const out: string[] = [];
  let rules = 0;
  let elements = 0;
  const prevSets = new Set(prev.sets.map((s) => s.name));
  const nextSets = new Set(next.sets.map((s) => s.name));
  const prevCounters = new Set(prev.counters.map((c) => c.name));
  const nextCounters = new Set(next.counters.map((c) => c.name));
  const prevChains = new Map(prev.chains.map((c) => [c.name, c]));
  const nextChains = new Set(next.chains.map((c) => c.name));

  // What rules will use must exist first: sets, counters, chains (jumps name them).
  for (const s of next.sets) {
    if (prevSets.has(s.name)) continue;
    elements += s.elements.length;
    out.push(`add ${setDecl(s, t)}`);
  }
  for (const c of next.counters) if (!prevCounters.has(c.name)) out.push(`add ${counterDecl(c, t)}`);
  const rewrite = next.chains.filter((c) => {
    const old = prevChains.get(c.name);
    return !old || old.comment !== c.comment || old.rules.join("\n") !== c.rules.join("\n");
  });
  for (const c of rewrite) {
    if (prevChains.has(c.name)) out.push(`flush chain ${t} ${c.name}`);
    else out.push(`add chain ${t} ${c.name} { comment "${c.comment}"; }`);
  }
  for (const c of rewrite) {
    rules += c.rules.length;
    for (const r of c.rules) out.push(`add rule ${t} ${c.name} ${r}`);
  }
  for (const m of next.maps) {
    const old = prev.maps.find((x) => x.name === m.name);
    if (old && old.elements.map((e) => e.join()).join() === m.elements.map((e) => e.join()).join()) continue;
    elements += m.elements.length;
    out.push(`flush map ${t} ${m.name}`);
    if (m.elements.length > 0) out.push(`add element ${t} ${m.name} { ${m.elements.map(([ip, chain]) => `${ip} : jump ${chain}`).join(", ")} }`);
  }
  // Then what nothing uses any more: rules first (a referenced chain or set cannot go).
  const gone = prev.chains.filter((c) => !nextChains.has(c.name));
  for (const c of gone) out.push(`flush chain ${t} ${c.name}`);
  for (const c of gone) out.push(`delete chain ${t} ${c.name}`);
  for (const s of prev.sets) if (!nextSets.has(s.name)) out.push(`delete set ${t} ${s.name}`);
  for (const c of prev.counters) if (!nextCounters.has(c.name)) out.push(`delete counter ${t} ${c.name}`);
  const script = out.length === 0 ? "" : out.join("\n") + "\n";
  return { script, rules, elements, bytes: Buffer.byteLength(script) };
}

const setDecl = (s: NftSet, table?: string): string =>
  `set ${table ? `${table} ` : ""}${s.name} { type ${s.type};${s.interval ? " flags interval;" : ""}${elementsClause(s.elements)} }`;

const counterDecl = (c: DropCounter, table?: string): string => `counter ${table ? `${table} ` : ""}${c.name} { comment "${c.comment}"; }`;

function elementsClause(elements: readonly string[]): string {
  return elements.length === 0 ? "" : ` elements = { ${elements.join(", ")} };`;
}
