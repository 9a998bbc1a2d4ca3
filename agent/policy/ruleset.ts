import { emptyDelta, type DropCounter, type NftSet, type PlanDelta, type PolicyPlan } from "./plan.js";

/**
 * A compiled plan as one `nft -f` transaction. The kernel commits a transaction at once, so
 * packets see either the old ruleset or the new one: no moment where a pod is unprotected,
 * none where it is cut off.
 *
 * - renderRuleset: the whole table, replacing whatever is there (create it so the delete
 *   cannot fail, delete it, define it anew). At start-up and after a failure.
 * - renderDelta: from the table in the kernel to the next one, touching only what changed:
 *   elements of sets and maps, chains whose rules changed, objects that come or go. Names
 *   stand for what an object is (these peers, this pod), never for its contents, so a pod
 *   that starts is a few elements, and counters of pods that stay keep counting. renderUpdate
 *   is the delta between two plans.
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

function baseRules(direction: "ingress" | "egress"): string[] {
  const side = direction === "ingress" ? "daddr" : "saddr";
  return ["ct state established,related accept", `icmpv6 type { ${ND_TYPES} } accept`, `ip ${side} vmap @${direction}4`, `ip6 ${side} vmap @${direction}6`];
}

/**
 * Where a pod chain sends what it denies, in reject mode (compile.ts's denyRules), once it has
 * counted it: a TCP reset, else ICMP administratively prohibited. One chain every pod chain
 * goes to, rather than both rejects in each pod chain: a pod chain ends in one rule instead of
 * two, and with thousands of pods, rules are much of what `nft -f` spends its time on.
 */
export const REJECT_CHAIN = "reject-denied";
const REJECT_RULES = ["meta l4proto tcp reject with tcp reset", "reject with icmpx type admin-prohibited"];

/** The rules of the base chains and the reject chain, which every table has. */
export const BASE_RULE_COUNT = BASE_CHAINS.reduce((n, b) => n + baseRules(b.direction).length, 0) + REJECT_RULES.length;

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
    const base = baseRules(b.direction);
    rules += base.length;
    out.push(`  chain ${b.name} {`, `    type filter hook ${b.hook} priority filter; policy accept;`, ...base.map((r) => `    ${r}`), "  }");
  }
  rules += REJECT_RULES.length;
  out.push(`  chain ${REJECT_CHAIN} {`, ...REJECT_RULES.map((r) => `    ${r}`), "  }");
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
  return renderDelta(diffPlans(prev, next), table);
}

/** What differs between two plans, element by element. */
export function diffPlans(prev: PolicyPlan, next: PolicyPlan): PlanDelta {
  const d = emptyDelta();
  const prevSets = new Map(prev.sets.map((s) => [s.name, s]));
  const nextSets = new Set(next.sets.map((s) => s.name));
  for (const s of next.sets) {
    const old = prevSets.get(s.name);
    if (!old) {
      d.addSets.push(s);
      continue;
    }
    const [before, after] = [new Set(old.elements), new Set(s.elements)];
    const add = s.elements.filter((e) => !before.has(e));
    const del = old.elements.filter((e) => !after.has(e));
    if (add.length > 0 || del.length > 0) d.setElements.push({ name: s.name, add, delete: del });
  }
  d.deleteSets = prev.sets.filter((s) => !nextSets.has(s.name)).map((s) => s.name);
  const prevCounters = new Set(prev.counters.map((c) => c.name));
  const nextCounters = new Set(next.counters.map((c) => c.name));
  d.addCounters = next.counters.filter((c) => !prevCounters.has(c.name));
  d.deleteCounters = prev.counters.filter((c) => !nextCounters.has(c.name)).map((c) => c.name);
  const prevChains = new Map(prev.chains.map((c) => [c.name, c]));
  const nextChains = new Set(next.chains.map((c) => c.name));
  for (const c of next.chains) {
    const old = prevChains.get(c.name);
    if (!old) d.addChains.push(c);
    else if (old.comment !== c.comment || old.rules.join("\n") !== c.rules.join("\n")) d.changeChains.push(c);
  }
  d.deleteChains = prev.chains.filter((c) => !nextChains.has(c.name)).map((c) => c.name);
  for (const m of next.maps) {
    const before = new Map(prev.maps.find((x) => x.name === m.name)?.elements ?? []);
    const after = new Map(m.elements);
    const add = m.elements.filter(([ip, chain]) => before.get(ip) !== chain);
    const del = [...before].filter(([ip, chain]) => after.has(ip) ? after.get(ip) !== chain : true).map(([ip]) => ip);
    if (add.length > 0 || del.length > 0) d.mapElements.push({ name: m.name, add, delete: del });
  }
  return d;
}

/**
 * A delta as one transaction. What rules will use must exist first (sets, counters, chains a
 * jump names); what nothing uses any more goes last, rules first (a chain or set still
 * referenced cannot go). An element whose map entry changes is deleted before it is added.
 */
export function renderDelta(d: PlanDelta, table = POLICY_TABLE): Ruleset {
  const t = `inet ${table}`;
  const out: string[] = [];
  let rules = 0;
  let elements = 0;
  for (const s of d.addSets) {
    elements += s.elements.length;
    out.push(`add ${setDecl(s, t)}`);
  }
  for (const c of d.addCounters) out.push(`add ${counterDecl(c, t)}`);
  for (const c of d.addChains) out.push(`add chain ${t} ${c.name} { comment "${c.comment}"; }`);
  for (const e of d.setElements) {
    elements += e.delete.length + e.add.length;
    if (e.delete.length > 0) out.push(`delete element ${t} ${e.name} { ${e.delete.join(", ")} }`);
    if (e.add.length > 0) out.push(`add element ${t} ${e.name} { ${e.add.join(", ")} }`);
  }
  for (const c of d.changeChains) out.push(`flush chain ${t} ${c.name}`);
  for (const c of [...d.addChains, ...d.changeChains]) {
    rules += c.rules.length;
    for (const r of c.rules) out.push(`add rule ${t} ${c.name} ${r}`);
  }
  for (const m of d.mapElements) {
    elements += m.delete.length + m.add.length;
    if (m.delete.length > 0) out.push(`delete element ${t} ${m.name} { ${m.delete.join(", ")} }`);
    if (m.add.length > 0) out.push(`add element ${t} ${m.name} { ${m.add.map(([ip, chain]) => `${ip} : jump ${chain}`).join(", ")} }`);
  }
  for (const c of d.deleteChains) out.push(`flush chain ${t} ${c}`);
  for (const c of d.deleteChains) out.push(`delete chain ${t} ${c}`);
  for (const s of d.deleteSets) out.push(`delete set ${t} ${s}`);
  for (const c of d.deleteCounters) out.push(`delete counter ${t} ${c}`);
  const script = out.length === 0 ? "" : out.join("\n") + "\n";
  return { script, rules, elements, bytes: Buffer.byteLength(script) };
}

const setDecl = (s: NftSet, table?: string): string =>
  `set ${table ? `${table} ` : ""}${s.name} { type ${s.type};${s.interval ? " flags interval;" : ""}${elementsClause(s.elements)} }`;

const counterDecl = (c: DropCounter, table?: string): string => `counter ${table ? `${table} ` : ""}${c.name} { comment "${c.comment}"; }`;

function elementsClause(elements: readonly string[]): string {
  return elements.length === 0 ? "" : ` elements = { ${elements.join(", ")} };`;
}
