import { parseIp } from "../shared/net/cidr.js";
import type { PolicyPlan } from "../agent/policy/plan.js";

/**
 * A model of the policy table as the kernel holds it, changed by the text of an update
 * transaction (ruleset.ts renderDelta) the way nft changes it, and refusing what nft refuses
 * (an element deleted that is not there, a rule naming a set or chain that does not exist, a
 * chain or set deleted while something uses it), and more strictly (an object added twice):
 * tests check the transactions the engine sends, not only the plans they come from.
 */
export class NftTableModel {
  readonly sets = new Map<string, { type: string; interval: boolean; elements: Set<string> }>();
  /** Map -> address (as a value, whatever its spelling) -> the chain it jumps to. */
  readonly maps = new Map<string, Map<string, string>>();
  readonly chains = new Map<string, { comment: string; rules: string[] }>();
  readonly counters = new Map<string, string>();

  /** The table a whole-table apply of `plan` leaves. */
  static of(plan: PolicyPlan): NftTableModel {
    const m = new NftTableModel();
    for (const s of plan.sets) m.sets.set(s.name, { type: s.type, interval: s.interval, elements: new Set(s.elements) });
    for (const c of plan.counters) m.counters.set(c.name, c.comment);
    for (const c of plan.chains) m.chains.set(c.name, { comment: c.comment, rules: [...c.rules] });
    for (const map of plan.maps) m.maps.set(map.name, new Map(map.elements.map(([ip, chain]) => [addressOf(ip), chain])));
    return m;
  }

  /** Applies an update transaction's text, line by line; throws where nft would refuse it. */
  apply(script: string, table: string): void {
    const t = `inet ${table}`;
    for (const line of script.split("\n").filter((l) => l !== "")) {
      const fail = (why: string): never => {
        throw new Error(`nft would refuse "${line.slice(0, 200)}": ${why}`);
      };
      let m: RegExpExecArray | null;
      if ((m = new RegExp(`^add set ${t} (\\S+) \\{ type ([^;]+);( flags interval;)?(?: elements = \\{ (.*) \\};)? \\}$`).exec(line))) {
        if (this.sets.has(m[1]!)) fail("set exists");
        this.sets.set(m[1]!, { type: m[2]!, interval: Boolean(m[3]), elements: new Set(m[4] ? m[4].split(", ") : []) });
      } else if ((m = new RegExp(`^add counter ${t} (\\S+) \\{ comment "([^"]*)"; \\}$`).exec(line))) {
        if (this.counters.has(m[1]!)) fail("counter exists");
        this.counters.set(m[1]!, m[2]!);
      } else if ((m = new RegExp(`^add chain ${t} (\\S+) \\{ comment "([^"]*)"; \\}$`).exec(line))) {
        if (this.chains.has(m[1]!)) fail("chain exists");
        this.chains.set(m[1]!, { comment: m[2]!, rules: [] });
      } else if ((m = new RegExp(`^(add|delete) element ${t} (\\S+) \\{ (.*) \\}$`).exec(line))) {
        this.element(m[1] as "add" | "delete", m[2]!, m[3]!.split(", "), fail);
      } else if ((m = new RegExp(`^flush chain ${t} (\\S+)$`).exec(line))) {
        (this.chains.get(m[1]!) ?? fail("no such chain")).rules = [];
      } else if ((m = new RegExp(`^add rule ${t} (\\S+) (.*)$`).exec(line))) {
        const chain = this.chains.get(m[1]!) ?? fail("no such chain");
        for (const [, set] of m[2]!.matchAll(/@(\S+)/g)) if (!this.sets.has(set!) && !this.maps.has(set!)) fail(`no such set ${set}`);
        for (const [, target] of m[2]!.matchAll(/jump (\S+)/g)) if (!this.chains.has(target!)) fail(`no such chain ${target}`);
        for (const [, counter] of m[2]!.matchAll(/counter name "([^"]+)"/g)) if (!this.counters.has(counter!)) fail(`no such counter ${counter}`);
        chain.rules.push(m[2]!);
      } else if ((m = new RegExp(`^delete chain ${t} (\\S+)$`).exec(line))) {
        const chain = this.chains.get(m[1]!) ?? fail("no such chain");
        if (chain.rules.length > 0) fail("chain not empty");
        if (this.uses(`jump ${m[1]}`) || [...this.maps.values()].some((x) => [...x.values()].includes(m![1]!))) fail("chain in use");
        this.chains.delete(m[1]!);
      } else if ((m = new RegExp(`^delete set ${t} (\\S+)$`).exec(line))) {
        if (!this.sets.has(m[1]!)) fail("no such set");
        if (this.uses(`@${m[1]}`)) fail("set in use");
        this.sets.delete(m[1]!);
      } else if ((m = new RegExp(`^delete counter ${t} (\\S+)$`).exec(line))) {
        if (!this.counters.has(m[1]!)) fail("no such counter");
        if (this.uses(`counter name "${m[1]}"`)) fail("counter in use");
        this.counters.delete(m[1]!);
      } else {
        fail("not a command this model knows");
      }
    }
  }

  /** Plain data to compare two tables by. */
  dump(): unknown {
    const sorted = <T>(m: Map<string, T>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return {
      sets: sorted(this.sets).map(([name, s]) => ({ name, type: s.type, interval: s.interval, elements: [...s.elements].sort() })),
      maps: sorted(this.maps).map(([name, m]) => ({ name, elements: sorted(m) })),
      chains: sorted(this.chains),
      counters: sorted(this.counters),
    };
  }

  private element(op: "add" | "delete", name: string, items: string[], fail: (why: string) => never): void {
    const map = this.maps.get(name);
    if (map) {
      for (const item of items) {
        const [ip, chain] = op === "add" ? (/^(\S+) : jump (\S+)$/.exec(item) ?? fail(`not a map element: ${item}`)).slice(1) : [item];
        const key = addressOf(ip!);
        if (op === "delete") {
          if (!map.delete(key)) fail(`no element ${item}`);
        } else {
          if (map.has(key)) fail(`element ${item} exists`);
          if (!this.chains.has(chain!)) fail(`no such chain ${chain}`);
          map.set(key, chain!);
        }
      }
      return;
    }
    const set = this.sets.get(name) ?? fail("no such set or map");
    for (const item of items) {
      if (op === "delete") {
        if (!set.elements.delete(item)) fail(`no element ${item}`);
      } else {
        if (set.interval && [...set.elements].some((e) => overlaps(e, item))) fail(`element ${item} overlaps`);
        set.elements.add(item);
      }
    }
  }

  private uses(text: string): boolean {
    return [...this.chains.values()].some((c) => c.rules.some((r) => r.includes(text + " ") || r.endsWith(text) || r.includes(text + "\"")));
  }
}

const addressOf = (ip: string): string => {
  const p = parseIp(ip);
  return `${p.family}/${p.value}`;
};

/** Two elements of an interval set (`a` or `a-b`) that share an address. */
function overlaps(x: string, y: string): boolean {
  const range = (e: string) => {
    const [a, b] = e.split("-") as [string, string | undefined];
    return [parseIp(a).value, parseIp(b ?? a).value] as const;
  };
  const [[xa, xb], [ya, yb]] = [range(x), range(y)];
  return xa <= yb && ya <= xb;
}
