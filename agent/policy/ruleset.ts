import type { PolicyPlan } from "./compile.js";

/**
 * A compiled plan as one `nft -f` transaction that replaces the whole table: create it (so the
 * delete cannot fail), delete it, define it anew. The kernel commits a transaction at once,
 * so packets see either the old ruleset or the new one: no moment where a pod is
 * unprotected, none where it is cut off.
 */

export const POLICY_TABLE = "twill-policy";

/** Neighbour discovery to a pod address must pass whatever the pod's policy says (RFC 4861). */
const ND_TYPES = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert";

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
  for (const c of plan.counters) out.push(`  counter ${c.name} { comment "${c.pod} ${c.direction}" }`);
  for (const s of plan.sets) {
    elements += s.elements.length;
    out.push(`  set ${s.name} { type ${s.type};${s.interval ? " flags interval;" : ""}${elementsClause(s.elements)} }`);
  }
  for (const m of plan.maps) {
    elements += m.elements.length;
    const type = m.family === 4 ? "ipv4_addr" : "ipv6_addr";
    out.push(`  map ${m.name} { type ${type} : verdict;${elementsClause(m.elements.map(([ip, chain]) => `${ip} : jump ${chain}`))} }`);
  }
  for (const d of ["ingress", "egress"] as const) {
    const side = d === "ingress" ? "daddr" : "saddr";
    const base = [
      "ct state established,related accept",
      `icmpv6 type { ${ND_TYPES} } accept`,
      `ip ${side} vmap @${d}4`,
      `ip6 ${side} vmap @${d}6`,
    ];
    rules += base.length;
    out.push(`  chain ${d} {`, `    type filter hook forward priority filter; policy accept;`, ...base.map((r) => `    ${r}`), "  }");
  }
  for (const c of plan.chains) {
    rules += c.rules.length;
    out.push(`  chain ${c.name} {`, `    comment "${c.comment}"`, ...c.rules.map((r) => `    ${r}`), "  }");
  }
  out.push("}");
  const script = out.join("\n") + "\n";
  return { script, rules, elements, bytes: Buffer.byteLength(script) };
}

function elementsClause(elements: readonly string[]): string {
  return elements.length === 0 ? "" : ` elements = { ${elements.join(", ")} };`;
}
