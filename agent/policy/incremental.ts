import { podChain, podChainName, podCounter, type CompileOptions } from "./compile.js";
import { emptyDelta, type DropCounter, type EnforcedPod, type NftChain, type NftSet, type PlanDelta, type PodMap, type PolicyPlan } from "./plan.js";
import { BASE_RULE_COUNT } from "./ruleset.js";
import { DIRECTIONS, FAMILIES, compilePolicy, type CompiledPolicy, type SetDef } from "./policy-chains.js";
import { byKey, firstByKey, fixedElements, likelierOwner, policySelects, readPod, setElementsOf, setNamespaces, setReadsNamespaces, type ReadPod } from "./set-members.js";
import { podKey, type Direction, type NetworkPolicy, type PodInfo, type PolicySnapshot } from "./types.js";

/**
 * The incremental compile (issue 26): the compiled table kept between snapshots, and on each
 * snapshot only what its changes touch recomputed. A pod that starts, stops or is relabelled
 * changes the elements of the sets that select it, and, if it is one of this node's, its own
 * chains, counters and map entries, and the selection of the policies of its namespace; a
 * namespace relabelled changes the sets that select by namespace; a policy changes its own
 * chains and the sets it uses. The result is a {@link PlanDelta} carrying only that.
 *
 * Pure, like the whole compile, and held to it: after any sequence of snapshots, plan() is
 * exactly compilePolicies() of the last one (incremental.test.ts checks it over random
 * clusters and event sequences). Both take a pod's set elements, a policy's rules and a pod's
 * chain from the same functions (set-members.ts, policy-chains.ts, compile.ts); what is here
 * is which of them an event touches. After update() throws, the state is unknown: the caller
 * drops the compiler and compiles whole.
 */
export class IncrementalPolicyCompiler {
  /** The inputs as last given, to tell what a snapshot changes. */
  private readonly given = { pods: new Map<string, PodInfo>(), policies: new Map<string, NetworkPolicy>() };
  private nsLabels = new Map<string, Record<string, string>>();

  private readonly pods = new Map<string, ReadPod>();
  private readonly podsByNamespace = new Map<string, Map<string, ReadPod>>();
  private readonly policies = new Map<string, PolicyState>();
  private readonly policiesByNamespace = new Map<string, Map<string, PolicyState>>();
  /** Sets some active policy uses; one with no user left is removed at the end of update(). */
  private readonly sets = new Map<string, SetState>();
  private readonly chains = new Map<string, NftChain>();
  private readonly counters = new Map<string, DropCounter>();
  /** Address (addressKey) -> this node's pods listing it. */
  private readonly claims = new Map<string, Set<string>>();
  /** Verdict map -> address (addressKey) -> [address as its owner lists it, pod chain]. */
  private readonly maps = new Map<PodMap["name"], Map<string, [string, string]>>();
  /** This node's pods some policy isolates, with the policies per direction, in order, and their counters. */
  private readonly isolated = new Map<string, Isolation>();
  private journal = newJournal();

  constructor(private readonly opts: CompileOptions) {
    for (const d of DIRECTIONS) for (const f of FAMILIES) this.maps.set(`${d}${f}`, new Map());
  }

  /** Brings the state to `snapshot`; what the table must change by. */
  update(snapshot: PolicySnapshot): PlanDelta {
    this.journal = newJournal();
    const namespaces = new Map(snapshot.namespaces.map((n) => [n.name, n.labels]));
    const changedNamespaces = [...new Set([...this.nsLabels.keys(), ...namespaces.keys()])].filter((n) => !samePlain(this.nsLabels.get(n), namespaces.get(n)));
    this.nsLabels = namespaces;
    if (changedNamespaces.length > 0) {
      const bySelector = [...this.sets.values()].filter((s) => setReadsNamespaces(s.def));
      for (const n of changedNamespaces) for (const pod of this.podsByNamespace.get(n)?.values() ?? []) for (const s of bySelector) this.refreshMember(s, pod.key, pod);
    }
    // Pods before policies: a policy that comes fills its sets from the pods once.
    const pods = firstByKey(snapshot.pods);
    for (const key of this.given.pods.keys()) if (!pods.has(key)) this.setPod(key, undefined);
    for (const [key, p] of pods) if (!samePlain(this.given.pods.get(key), p)) this.setPod(key, p);
    const policies = firstByKey(snapshot.policies);
    for (const key of this.given.policies.keys()) if (!policies.has(key)) this.setPolicy(key, undefined);
    for (const [key, p] of policies) if (!samePlain(this.given.policies.get(key), p)) this.setPolicy(key, p);
    for (const [name, s] of this.sets) {
      if (s.refs > 0) continue;
      this.touchSet(name);
      this.sets.delete(name);
    }
    return this.delta();
  }

  /** The whole table as the incremental state holds it: for a whole-table apply, and tests. */
  plan(): PolicyPlan {
    const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    const chains = [...this.chains.values()];
    const maps = [...this.maps].map(([name, entries]): PodMap => ({
      name,
      family: name.endsWith("4") ? 4 : 6,
      elements: [...entries.values()].map(([ip, chain]): [string, string] => [ip, chain]).sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)),
    }));
    return {
      sets: [...this.sets.values()].map(setOf).sort(byName),
      chains: [...chains.filter((c) => c.name.startsWith("pol_")).sort(byName), ...chains.filter((c) => !c.name.startsWith("pol_")).sort(byName)],
      maps,
      ...this.inForce(),
    };
  }

  /** What is enforced, without the table: for the report, the metrics and the drop counters. */
  inForce(): Pick<PolicyPlan, "counters" | "pods" | "policies" | "refused"> {
    const local = [...this.isolated.keys()].map((k) => this.pods.get(k)!).sort((a, b) => byKey(a.info, b.info));
    const counters: DropCounter[] = [];
    const pods: EnforcedPod[] = [];
    for (const p of local) {
      const by = this.isolated.get(p.key)!;
      const owned = p.info.ips.filter((_, i) => this.ownerOf(p.keys[i]!) === p);
      const enforced: EnforcedPod = { pod: p.key, ips: owned };
      for (const d of DIRECTIONS) {
        if (by[d].length === 0) continue;
        counters.push(by.counters[d]!);
        enforced[d] = by[d].map((s) => s.compiled.key);
      }
      pods.push(enforced);
    }
    const active = [...this.policies.values()].filter((s) => s.selected.size > 0).sort((a, b) => byKey(a.policy, b.policy));
    return {
      counters,
      pods,
      policies: active.map((s) => ({ policy: s.compiled.key, types: s.compiled.types, pods: this.selectedKeys(s) })),
      refused: this.summary().refused,
    };
  }

  /** What the engine needs after every update, cheaply: inForce() lists every pod. */
  summary(): { policies: number; isolatedPods: number; refused: PolicyPlan["refused"] } {
    let policies = 0;
    const refused: PolicyState[] = [];
    for (const s of this.policies.values()) {
      if (s.selected.size === 0) continue;
      policies++;
      if (s.compiled.refusal !== undefined) refused.push(s);
    }
    refused.sort((a, b) => byKey(a.policy, b.policy));
    return { policies, isolatedPods: this.isolated.size, refused: refused.map((s) => ({ policy: s.compiled.key, reason: s.compiled.refusal!, pods: this.selectedKeys(s) })) };
  }

  private selectedKeys(s: PolicyState): string[] {
    return [...s.selected].map((k) => this.pods.get(k)!.info).sort(byKey).map(podKey);
  }

  /** The table's size as renderRuleset counts it (the base chains' rules included). */
  size(): { rules: number; elements: number } {
    let rules = BASE_RULE_COUNT;
    let elements = 0;
    for (const c of this.chains.values()) rules += c.rules.length;
    for (const s of this.sets.values()) elements += s.counts.size + fixedElements(s.def).length;
    for (const m of this.maps.values()) elements += m.size;
    return { rules, elements };
  }

  private setPod(key: string, given: PodInfo | undefined): void {
    if (given) this.given.pods.set(key, given);
    else this.given.pods.delete(key);
    const old = this.pods.get(key);
    const next = given ? readPod(given, this.opts.nodeName) : null;
    if (old) {
      this.pods.delete(key);
      this.podsByNamespace.get(old.info.namespace)!.delete(key);
    }
    if (next) {
      this.pods.set(key, next);
      const inNamespace = this.podsByNamespace.get(next.info.namespace) ?? new Map<string, ReadPod>();
      inNamespace.set(key, next);
      this.podsByNamespace.set(next.info.namespace, inNamespace);
    }
    if (!old && !next) return;
    for (const s of this.sets.values()) this.refreshMember(s, key, next);

    const addresses = new Set<string>();
    if (old?.local) {
      for (const k of old.keys) {
        this.claims.get(k)!.delete(key);
        if (this.claims.get(k)!.size === 0) this.claims.delete(k);
        addresses.add(k);
      }
    }
    if (next?.local) {
      for (const k of next.keys) {
        this.claims.set(k, (this.claims.get(k) ?? new Set()).add(key));
        addresses.add(k);
      }
    }
    // The policies of its namespace (its old and new one, the same unless a test says otherwise).
    for (const namespace of new Set([old?.info.namespace, next?.info.namespace])) {
      for (const s of this.policiesByNamespace.get(namespace!)?.values() ?? []) {
        const was = s.selected.has(key);
        const now = next !== null && policySelects(s.compiled, next);
        if (was === now) continue;
        if (now) {
          s.selected.add(key);
          if (s.selected.size === 1) this.activate(s);
        } else {
          s.selected.delete(key);
          if (s.selected.size === 0) this.deactivate(s);
        }
      }
    }
    this.refreshIsolation(key);
    for (const k of addresses) this.refreshMapEntries(k);
  }

  private setPolicy(key: string, given: NetworkPolicy | undefined): void {
    const affected = new Set<string>();
    const old = this.policies.get(key);
    if (old) {
      if (old.selected.size > 0) this.deactivate(old);
      for (const k of old.selected) affected.add(k);
      this.policies.delete(key);
      this.policiesByNamespace.get(old.policy.namespace)!.delete(key);
      this.given.policies.delete(key);
    }
    if (given) {
      this.given.policies.set(key, given);
      const compiled = compilePolicy(given);
      const s: PolicyState = { policy: given, compiled, selected: new Set() };
      for (const p of this.podsByNamespace.get(given.namespace)?.values() ?? []) {
        if (policySelects(compiled, p)) s.selected.add(p.key);
      }
      this.policies.set(key, s);
      const inNamespace = this.policiesByNamespace.get(given.namespace) ?? new Map<string, PolicyState>();
      inNamespace.set(key, s);
      this.policiesByNamespace.set(given.namespace, inNamespace);
      if (s.selected.size > 0) this.activate(s);
      for (const k of s.selected) affected.add(k);
    }
    for (const k of affected) this.refreshIsolation(k);
  }

  /** A policy selecting one of this node's pods: its chains in the table, its sets in use. */
  private activate(s: PolicyState): void {
    for (const c of s.compiled.chains) this.setChain(c.name, c);
    // Its named-port sets take the pods it selects, and no other: the rest need not be asked.
    for (const def of s.compiled.sets) this.acquireSet(def, def.kind === "named-in" ? s.selected : undefined);
  }

  private deactivate(s: PolicyState): void {
    for (const c of s.compiled.chains) this.setChain(c.name, undefined);
    for (const def of s.compiled.sets) this.sets.get(def.name)!.refs--;
  }

  /** Puts the set in use; a new one is filled from `only` (pod keys) if given, else from every pod it may take. */
  private acquireSet(def: SetDef, only?: ReadonlySet<string>): void {
    let s = this.sets.get(def.name);
    if (!s) {
      this.touchSet(def.name);
      s = { def, refs: 0, members: new Map(), counts: new Map() };
      this.sets.set(def.name, s);
      const candidates = only ? [...only].map((k) => this.pods.get(k)!) : this.candidatesOf(def);
      for (const p of candidates) this.refreshMember(s, p.key, p);
    }
    s.refs++;
  }

  /** The pods that may put elements in the set: those of the namespaces it takes pods from, or all. */
  private candidatesOf(def: SetDef): Iterable<ReadPod> {
    const namespaces = setNamespaces(def, this.nsLabels);
    return namespaces ? [...namespaces].flatMap((n) => [...(this.podsByNamespace.get(n)?.values() ?? [])]) : this.pods.values();
  }

  /** Puts the pod's elements in the set, or takes them out, as the pod now is. */
  private refreshMember(s: SetState, key: string, pod: ReadPod | null): void {
    const before = s.members.get(key) ?? NONE;
    const after = pod ? setElementsOf(s.def, pod, this.nsLabels) : NONE;
    if (before.length === after.length && before.every((e, i) => e === after[i])) return;
    for (const e of after) {
      const n = s.counts.get(e) ?? 0;
      if (n === 0) this.touchElement(s.def.name, e, false);
      s.counts.set(e, n + 1);
    }
    for (const e of before) {
      const n = s.counts.get(e)!;
      if (n === 1) {
        this.touchElement(s.def.name, e, true);
        s.counts.delete(e);
      } else {
        s.counts.set(e, n - 1);
      }
    }
    if (after.length > 0) s.members.set(key, after);
    else s.members.delete(key);
  }

  /** The pod's chains and counters, from the policies that now select it. */
  private refreshIsolation(key: string): void {
    const pod = this.pods.get(key);
    const by: Isolation = { ingress: [], egress: [], counters: {} };
    if (pod?.local) {
      const selecting = [...(this.policiesByNamespace.get(pod.info.namespace)?.values() ?? [])].filter((s) => s.selected.has(key)).sort((a, b) => byKey(a.policy, b.policy));
      for (const d of DIRECTIONS) by[d] = selecting.filter((s) => s.compiled.types.includes(d));
    }
    const was = this.isolated.get(key);
    for (const d of DIRECTIONS) {
      if (by[d].length > 0) {
        const counter = was?.counters[d] ?? podCounter(key, d);
        by.counters[d] = counter;
        this.setChain(podChainName(key, d), podChain(key, d, by[d].map((s) => s.compiled), this.opts));
        if (!this.counters.has(counter.name)) this.setCounter(counter.name, counter);
      } else if (was?.counters[d]) {
        this.setChain(podChainName(key, d), undefined);
        this.setCounter(was.counters[d].name, undefined);
      }
    }
    if (by.ingress.length > 0 || by.egress.length > 0) this.isolated.set(key, by);
    else this.isolated.delete(key);
    if (pod?.local) for (const k of pod.keys) this.refreshMapEntries(k);
  }

  private ownerOf(address: string): ReadPod | undefined {
    let owner: ReadPod | undefined;
    for (const k of this.claims.get(address) ?? []) {
      const p = this.pods.get(k)!;
      owner = owner ? likelierOwner(owner, p) : p;
    }
    return owner;
  }

  /** The verdict map entries of one address: its owner's chains, if the owner is isolated. */
  private refreshMapEntries(address: string): void {
    const owner = this.ownerOf(address);
    const family = address.startsWith("4/") ? 4 : 6;
    const by = owner && this.isolated.get(owner.key);
    for (const d of DIRECTIONS) {
      const name: PodMap["name"] = `${d}${family}`;
      const entry: [string, string] | undefined =
        owner && by && by[d].length > 0 ? [owner.info.ips[owner.keys.indexOf(address)]!, podChainName(owner.key, d)] : undefined;
      const now = this.maps.get(name)!.get(address);
      if (now?.[0] === entry?.[0] && now?.[1] === entry?.[1]) continue;
      const j = this.journal.maps.get(name) ?? new Map<string, [string, string] | undefined>();
      if (!j.has(address)) j.set(address, now);
      this.journal.maps.set(name, j);
      if (entry) this.maps.get(name)!.set(address, entry);
      else this.maps.get(name)!.delete(address);
    }
  }

  private setChain(name: string, chain: NftChain | undefined): void {
    if (!this.journal.chains.has(name)) this.journal.chains.set(name, this.chains.get(name));
    if (chain) this.chains.set(name, chain);
    else this.chains.delete(name);
  }

  private setCounter(name: string, counter: DropCounter | undefined): void {
    if (!this.journal.counters.has(name)) this.journal.counters.set(name, this.counters.has(name));
    if (counter) this.counters.set(name, counter);
    else this.counters.delete(name);
  }

  private touchSet(name: string): void {
    if (!this.journal.sets.has(name)) this.journal.sets.set(name, { existed: this.sets.has(name), elements: new Map() });
  }

  private touchElement(set: string, element: string, present: boolean): void {
    this.touchSet(set);
    const j = this.journal.sets.get(set)!;
    if (j.existed && !j.elements.has(element)) j.elements.set(element, present);
  }

  /** The journal against the state: what the table must change by since update() began. */
  private delta(): PlanDelta {
    const d = emptyDelta();
    for (const [name, j] of this.journal.sets) {
      const now = this.sets.get(name);
      if (!j.existed) {
        if (now) d.addSets.push(setOf(now));
      } else if (!now) {
        d.deleteSets.push(name);
      } else {
        const changed = [...j.elements].filter(([e, was]) => was !== now.counts.has(e));
        const add = changed.filter(([, was]) => !was).map(([e]) => e);
        const del = changed.filter(([, was]) => was).map(([e]) => e);
        if (add.length > 0 || del.length > 0) d.setElements.push({ name, add, delete: del });
      }
    }
    for (const [name, was] of this.journal.counters) {
      const now = this.counters.get(name);
      if (!was && now) d.addCounters.push(now);
      else if (was && !now) d.deleteCounters.push(name);
    }
    for (const [name, was] of this.journal.chains) {
      const now = this.chains.get(name);
      if (!was && now) d.addChains.push(now);
      else if (was && !now) d.deleteChains.push(name);
      else if (was && now && (was.comment !== now.comment || was.rules.join("\n") !== now.rules.join("\n"))) d.changeChains.push(now);
    }
    for (const [name, j] of this.journal.maps) {
      const entries = this.maps.get(name)!;
      const add: [string, string][] = [];
      const del: string[] = [];
      for (const [address, was] of j) {
        const now = entries.get(address);
        if (was?.[0] === now?.[0] && was?.[1] === now?.[1]) continue;
        if (was) del.push(was[0]);
        if (now) add.push(now);
      }
      if (add.length > 0 || del.length > 0) d.mapElements.push({ name, add, delete: del });
    }
    return d;
  }
}

interface PolicyState {
  policy: NetworkPolicy;
  compiled: CompiledPolicy;
  /** This node's pods it selects; it is active (its chains and sets in the table) while any. */
  selected: Set<string>;
}

interface Isolation extends Record<Direction, PolicyState[]> {
  counters: Partial<Record<Direction, DropCounter>>;
}

interface SetState {
  def: SetDef;
  /** Active policies' uses. */
  refs: number;
  /** Pod -> the elements it puts in the set. */
  members: Map<string, readonly string[]>;
  /** Element -> how many pods put it there (two pods may list one address). The blocks aside. */
  counts: Map<string, number>;
}

/** What update() changed, each object as it was before its first change. */
interface Journal {
  sets: Map<string, { existed: boolean; elements: Map<string, boolean> }>;
  chains: Map<string, NftChain | undefined>;
  counters: Map<string, boolean>;
  maps: Map<PodMap["name"], Map<string, [string, string] | undefined>>;
}

const newJournal = (): Journal => ({ sets: new Map(), chains: new Map(), counters: new Map(), maps: new Map() });

const NONE: readonly string[] = [];


const setOf = (s: SetState): NftSet => ({
  name: s.def.name,
  type: s.def.type,
  interval: s.def.interval,
  elements: [...fixedElements(s.def), ...s.counts.keys()].sort(),
});

/** Deep equality of plain data (the snapshot's shapes: objects, arrays, strings, numbers, booleans). */
export function samePlain(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((x, i) => samePlain(x, (b as unknown[])[i]));
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && samePlain((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
