import { describe, expect, it } from "vitest";
import { NftTableModel } from "../../testkit/nft-table.js";
import { change, randomCluster, rng } from "../../testkit/random-cluster.js";
import { NODE, allPods, client, namespaces, ns, pod, policy, remoteClient, web, webOnly } from "../../testkit/policy.js";
import { compilePolicies, type CompileOptions } from "./compile.js";
import { IncrementalPolicyCompiler } from "./incremental.js";
import { emptyDelta, type PlanDelta } from "./plan.js";
import { renderDelta, renderRuleset } from "./ruleset.js";

// The incremental compile against the whole one: after every snapshot of a random sequence,
// the incremental state is the whole compile of that snapshot, and the update transaction it
// hands on turns the previous whole table into this one (on a model of what nft does with it).

const TABLE = "twill-policy";

describe("incremental NetworkPolicy compile", () => {
  it("equals the whole compile after every snapshot of random event sequences, and its transactions turn one table into the next", () => {
    const CASES = 300;
    let steps = 0;
    let elementSteps = 0;
    for (let seed = 1; seed <= CASES; seed++) {
      const r = rng(seed);
      const opts: CompileOptions = { nodeName: NODE, ...(r.chance(0.3) ? { logDropsPerSecond: 2 } : {}), ...(r.chance(0.3) ? { deny: "drop" as const } : {}) };
      const compiler = new IncrementalPolicyCompiler(opts);
      const table = NftTableModel.of(compilePolicies({ policies: [], pods: [], namespaces: [] }, opts));
      let s = r.chance(0.2) ? { policies: [], pods: [], namespaces: [] } : randomCluster(r);
      for (let step = 0; step < 25; step++) {
        if (step > 0) for (let k = 1 + (r.chance(0.2) ? r.int(3) : 0); k > 0; k--) s = change(r, s);
        const where = `seed ${seed}, step ${step}`;
        const delta = compiler.update(s);
        const whole = compilePolicies(s, opts);
        const plan = compiler.plan();
        expect(plan, where).toEqual(whole);
        const rendered = renderRuleset(whole, TABLE);
        expect(renderRuleset(plan, TABLE).script, where).toBe(rendered.script);
        expect(compiler.size(), where).toEqual({ rules: rendered.rules, elements: rendered.elements });
        table.apply(renderDelta(delta, TABLE).script, TABLE);
        expect(table.dump(), where).toEqual(NftTableModel.of(whole).dump());
        steps++;
        if (delta.setElements.length > 0) elementSteps++;
      }
    }
    expect(steps).toBe(CASES * 25);
    // The sequences exercise elements coming and going in sets that stay, not only whole sets.
    expect(elementSteps).toBeGreaterThan(steps / 20);
  }, 300_000);

  it("a peer pod starting is one element of each set that selects it, and nothing else", () => {
    const allow = policy("default", "from-team-x", { ...webOnly, ingress: [{ peers: [{ namespaceSelector: { matchLabels: { team: "x" } } }], ports: [{ port: 80 }] }] });
    const c = new IncrementalPolicyCompiler({ nodeName: NODE });
    c.update({ policies: [allow], pods: allPods, namespaces });
    const set = c.plan().sets.find((x) => x.type === "ipv4_addr")!;
    const peer = pod("team-x", "new", ["10.0.1.40"], {}, { nodeName: "node-b" });
    expect(c.update({ policies: [allow], pods: [...allPods, peer], namespaces })).toEqual({ ...emptyDelta(), setElements: [{ name: set.name, add: ["10.0.1.40"], delete: [] }] });
  });

  it("a local pod starting is its chain, counter and map entries, and its address in the sets that select it", () => {
    const allow = policy("default", "from-client", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "client" } } }] }] });
    const c = new IncrementalPolicyCompiler({ nodeName: NODE });
    c.update({ policies: [allow], pods: allPods, namespaces });
    const web2 = pod("default", "web-2", ["10.0.0.20"], { app: "web" });
    const client2 = pod("default", "client-2", ["10.0.0.21"], { app: "client" });
    const d = c.update({ policies: [allow], pods: [...allPods, web2, client2], namespaces });
    const plan = c.plan();
    const chain = plan.chains.find((x) => x.comment === "default/web-2 ingress")!;
    expect(summary(d)).toEqual({
      addChains: [chain.name],
      addCounters: [plan.counters.find((x) => x.pod === "default/web-2")!.name],
      setElements: [["10.0.0.21"]],
      mapElements: [["ingress4", [["10.0.0.20", chain.name]], []]],
    });
  });

  it("a namespace relabelled changes the elements of the sets that select by namespace", () => {
    const allow = policy("default", "from-team-x", { ...webOnly, ingress: [{ peers: [{ namespaceSelector: { matchLabels: { team: "x" } } }] }] });
    const c = new IncrementalPolicyCompiler({ nodeName: NODE });
    c.update({ policies: [allow], pods: allPods, namespaces });
    const relabelled = namespaces.map((n) => (n.name === "team-x" ? ns("team-x", { team: "z" }) : n));
    const d = c.update({ policies: [allow], pods: allPods, namespaces: relabelled });
    expect(summary(d)).toEqual({ setElements: [["-10.0.1.20", "-10.0.1.21"], ["-fd00:1::20"]] });
  });

  it("a policy added is its chain, its pods' chains and its sets; removed, all of it goes", () => {
    const c = new IncrementalPolicyCompiler({ nodeName: NODE });
    c.update({ policies: [], pods: allPods, namespaces });
    const allow = policy("default", "from-client", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "client" } } }] }] });
    const added = c.update({ policies: [allow], pods: allPods, namespaces });
    expect(added.addSets.flatMap((x) => x.elements).sort()).toEqual(["10.0.0.11", "fd00::11"]);
    expect(added.addChains.map((x) => x.comment).sort()).toEqual(["default/from-client ingress", "default/web ingress"]);
    const removed = c.update({ policies: [], pods: allPods, namespaces });
    expect(removed.deleteSets.sort()).toEqual(added.addSets.map((x) => x.name).sort());
    expect(removed.deleteChains.sort()).toEqual(added.addChains.map((x) => x.name).sort());
    expect(removed.mapElements.map((m) => m.delete)).toEqual([web.ips.slice(0, 1), web.ips.slice(1)]);
    expect(c.plan()).toEqual(compilePolicies({ policies: [], pods: allPods, namespaces }, { nodeName: NODE }));
  });

  it("an unchanged snapshot is no change, and a pod's irrelevant field changing is none either", () => {
    const c = new IncrementalPolicyCompiler({ nodeName: NODE });
    const s = { policies: [policy("default", "deny-web", webOnly)], pods: allPods, namespaces };
    c.update(s);
    expect(c.update({ ...s, pods: [...allPods] })).toEqual(emptyDelta());
    expect(c.update({ ...s, pods: allPods.map((p) => (p === client ? { ...p, uid: "u-1" } : p === remoteClient ? { ...p } : p)) })).toEqual(emptyDelta());
  });
});

/** The parts of a delta that are there, by name or element. */
function summary(d: PlanDelta): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (d.addChains.length) out.addChains = d.addChains.map((c) => c.name);
  if (d.changeChains.length) out.changeChains = d.changeChains.map((c) => c.name);
  if (d.deleteChains.length) out.deleteChains = d.deleteChains;
  if (d.addCounters.length) out.addCounters = d.addCounters.map((c) => c.name);
  if (d.deleteCounters.length) out.deleteCounters = d.deleteCounters;
  if (d.addSets.length) out.addSets = d.addSets.map((s) => s.name);
  if (d.deleteSets.length) out.deleteSets = d.deleteSets;
  if (d.setElements.length) out.setElements = d.setElements.map((e) => [...e.add, ...e.delete.map((x) => `-${x}`)]);
  if (d.mapElements.length) out.mapElements = d.mapElements.map((m) => [m.name, m.add, m.delete]);
  return out;
}
