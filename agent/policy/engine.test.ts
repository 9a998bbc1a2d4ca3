import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { ExecResult } from "../../shared/kernel/exec.js";
import { IpRoute } from "../../testkit/iproute.js";
import { createLogger } from "../../shared/log.js";
import { NftTableModel } from "../../testkit/nft-table.js";
import { compilePolicies } from "./compile.js";
import { PolicyEngine, type PolicyEngineOptions } from "./engine.js";
import { IncrementalPolicyCompiler } from "./incremental.js";
import { createPolicyMetrics } from "./metrics.js";
import type { PolicySnapshot } from "./types.js";

/** A kernel that records the commands it is given and keeps the counters nft would hold. */
function fakeKernel() {
  const calls: string[][] = [];
  const state = { packets: 0, failApply: false, failNext: false, counters: null as Set<string> | null };
  const runner = async (argv: readonly string[], opts?: { input?: string }): Promise<ExecResult> => {
    calls.push([...argv, ...(opts?.input ? [opts.input] : [])]);
    if (argv[0] === "nft" && argv[1] === "-f") {
      if (state.failApply || state.failNext) {
        state.failNext = false;
        return { code: 1, stdout: "", stderr: "Error: Could not process rule: No such file or directory" };
      }
      const script = opts!.input!;
      if (script.includes("delete table")) state.counters = new Set();
      for (const m of script.matchAll(/^\s*(?:add )?counter (?:inet \S+ )?(\S+) \{/gm)) state.counters!.add(m[1]!);
      for (const m of script.matchAll(/^delete counter inet \S+ (\S+)/gm)) state.counters!.delete(m[1]!);
      return { code: 0, stdout: "", stderr: "" };
    }
    if (argv[0] === "nft" && argv.includes("counters")) {
      if (!state.counters) return { code: 1, stdout: "", stderr: "Error: No such file or directory" };
      return { code: 0, stdout: JSON.stringify({ nftables: [...state.counters].map((name) => ({ counter: { name, packets: state.packets } })) }), stderr: "" };
    }
    return { code: 0, stdout: "", stderr: "" };
  };
  return { ip: new IpRoute(null, runner), calls, state };
}

const snapshot = (labels: Record<string, string>): PolicySnapshot => ({
  policies: [{ namespace: "default", name: "deny", podSelector: { matchLabels: { app: "web" } }, policyTypes: ["ingress"], ingress: [], egress: [] }],
  pods: [{ namespace: "default", name: "web", nodeName: "n1", labels, ips: ["10.0.0.2"], ports: [] }],
  namespaces: [{ name: "default", labels: {} }],
});

function engine(extra: Partial<PolicyEngineOptions> = {}) {
  const k = fakeKernel();
  const registry = new Registry();
  const metrics = createPolicyMetrics(registry);
  const logs: Record<string, unknown>[] = [];
  const e = new PolicyEngine({ nodeName: "n1", ip: k.ip, bridge: "cni0", resyncMs: 60_000, logger: createLogger((line) => logs.push(JSON.parse(line) as Record<string, unknown>), "debug"), metrics, ...extra });
  return { e, k, registry, logs };
}
const applies = (calls: string[][]) => calls.filter((c) => c[0] === "nft" && c[1] === "-f").length;

describe("PolicyEngine", () => {
  it("applies a changed snapshot once, skips an unchanged one, and turns on netfilter for the bridge first", async () => {
    const { e, k } = engine();
    e.update(snapshot({ app: "web" }));
    e.update(snapshot({ app: "web" }));
    await e.settled();
    e.update(snapshot({ app: "web", other: "label" }));
    await e.settled();
    expect(applies(k.calls)).toBe(1);
    const bridgeCall = k.calls.findIndex((c) => c.join(" ").includes("nf_call_iptables 1"));
    const applyCall = k.calls.findIndex((c) => c[1] === "-f");
    expect(bridgeCall).toBeGreaterThanOrEqual(0);
    expect(bridgeCall).toBeLessThan(applyCall);
    expect(e.report().policies).toEqual([{ policy: "default/deny", types: ["ingress"], pods: ["default/web"] }]);
    e.update(snapshot({ app: "api" }));
    await e.settled();
    expect(applies(k.calls)).toBe(2);
    expect(e.report().policies).toEqual([]);
  });

  it("keeps the previous ruleset and reports the error when an apply fails", async () => {
    const { e, k } = engine();
    e.update(snapshot({ app: "web" }));
    await e.settled();
    k.state.failApply = true;
    e.update(snapshot({ app: "api" }));
    await e.settled();
    const r = e.report();
    expect(r.error).toMatch(/apply the NetworkPolicy ruleset .*No such file/);
    expect(r.policies.map((p) => p.policy)).toEqual(["default/deny"]);
  });

  it("updates the table in place after the first apply, touching only what changed", async () => {
    const { e, k } = engine();
    e.update(snapshot({ app: "web" }));
    await e.settled();
    const moved = snapshot({ app: "web" });
    moved.pods[0]!.ips = ["10.0.0.3"];
    e.update(moved);
    await e.settled();
    const scripts = k.calls.filter((c) => c[1] === "-f").map((c) => c[c.length - 1]!);
    expect(scripts).toHaveLength(2);
    expect(scripts[0]).toContain("delete table inet twill-policy");
    // Only the address map's entry changes: the pod's chain and counter stay.
    expect(scripts[1]!.trim().split("\n")).toEqual([
      "delete element inet twill-policy ingress4 { 10.0.0.2 }",
      `add element inet twill-policy ingress4 { 10.0.0.3 : jump ${chainOf(scripts[0]!)} }`,
    ]);
  });

  it("counts drops from the kernel's counters into the metrics, also those of a pod that stops being isolated", async () => {
    const { e, k, registry } = engine();
    e.update(snapshot({ app: "web" }));
    await e.settled();
    k.state.packets = 5;
    e.update(snapshot({ app: "api" }));
    await e.settled();
    expect(k.state.counters!.size).toBe(0);
    const text = await registry.metrics();
    expect(text).toContain('twill_policy_dropped_packets_total{namespace="default",pod="web",direction="ingress"} 5');
  });

  it("applies every other policy when one cannot be compiled, and says so once, in the log, the report and a metric", async () => {
    const { e, k, registry, logs } = engine();
    const withBad = (labels: Record<string, string>): PolicySnapshot => {
      const s = snapshot(labels);
      s.policies.push({ namespace: "default", name: "bad", podSelector: { matchLabels: { app: "db" } }, policyTypes: ["egress"], ingress: [], egress: [{ peers: [{ ipBlock: { cidr: "10.0.0.0/99" } }] }] });
      s.pods.push({ namespace: "default", name: "db", nodeName: "n1", labels: { app: "db" }, ips: ["10.0.0.3"], ports: [] });
      return s;
    };
    e.update(withBad({ app: "web" }));
    await e.settled();
    e.update(withBad({ app: "web", v: "2" }));
    await e.settled();
    e.update(withBad({ app: "api" }));
    await e.settled();
    expect(applies(k.calls)).toBe(2);
    const r = e.report();
    expect(r.error).toBeUndefined();
    expect(r.policies.map((p) => p.policy)).toEqual(["default/bad"]);
    expect(r.refused).toEqual([{ policy: "default/bad", reason: 'egress[0]: invalid CIDR "10.0.0.0/99"', pods: ["default/db"] }]);
    expect(logs.filter((l) => l.policy === "default/bad")).toHaveLength(1);
    expect(await registry.metrics()).toContain("twill_policy_refused_policies 1");
    const first = k.calls.find((c) => c[1] === "-f")!.at(-1)!;
    expect(first).toMatch(/map egress4 \{ type ipv4_addr : verdict; elements = \{ 10\.0\.0\.3 : jump pod_\w+_eg \}/);
    expect(first).toMatch(/10\.0\.0\.2 : jump pod_\w+_in/);
  });
});

describe("PolicyEngine: incremental and whole", () => {
  const web = (i: number, labels: Record<string, string>) => ({ namespace: "default", name: `web-${i}`, nodeName: i % 2 ? "n1" : "n2", labels, ips: [`10.0.0.${i + 10}`], ports: [] });
  const cluster = (n: number, peers: string): PolicySnapshot => ({
    policies: [{ namespace: "default", name: "from-client", podSelector: { matchLabels: { app: "web" } }, policyTypes: ["ingress"], ingress: [{ peers: [{ podSelector: { matchLabels: { app: peers } } }] }], egress: [] }],
    pods: Array.from({ length: n }, (_, i) => web(i, { app: i % 3 ? "web" : "client" })),
    namespaces: [{ name: "default", labels: {} }],
  });
  const scripts = (calls: string[][]) => calls.filter((c) => c[1] === "-f").map((c) => c.at(-1)!);
  /** Hands the engine each snapshot in turn, each in force before the next. */
  async function apply(e: PolicyEngine, ...snapshots: PolicySnapshot[]) {
    for (const s of snapshots) {
      e.update(s);
      await e.settled();
    }
  }
  /**
   * The table the engine's transactions left, from its last whole table (compiled from
   * `wholeFrom`) on, against the whole compile of `s`.
   */
  function expectTable(calls: string[][], wholeFrom: PolicySnapshot, s: PolicySnapshot) {
    const all = scripts(calls);
    const table = NftTableModel.of(compilePolicies(wholeFrom, { nodeName: "n1" }));
    for (const x of all.slice(all.findLastIndex((t) => t.includes("delete table")) + 1)) table.apply(x, "twill-policy");
    expect(table.dump()).toEqual(NftTableModel.of(compilePolicies(s, { nodeName: "n1" })).dump());
  }

  it("writes the whole table once, then each change as an update of what it changed, as a whole compile would", async () => {
    const { e, k, registry } = engine();
    const first = cluster(12, "client");
    e.update(first);
    await e.settled();
    expect(e.lastStats).toMatchObject({ path: "whole", applied: true });
    // A peer relabelled: one element leaves the peers' set, nothing else.
    const relabelled = { ...first, pods: first.pods.map((p, i) => (i === 0 ? { ...p, labels: { app: "other" } } : p)) };
    e.update(relabelled);
    await e.settled();
    expect(e.lastStats).toMatchObject({ path: "incremental", applied: true });
    expect(scripts(k.calls).at(-1)!.trim().split("\n")).toEqual([expect.stringMatching(/^delete element inet twill-policy set_\w+ \{ 10\.0\.0\.10 \}$/)]);
    // A policy changed: its chain, its sets.
    const changed = cluster(12, "web");
    changed.pods = relabelled.pods;
    e.update(changed);
    await e.settled();
    expect(e.lastStats!.path).toBe("incremental");
    expectTable(k.calls, first, changed);
    expect(e.report().policies[0]!.pods).toEqual(["default/web-1", "default/web-11", "default/web-5", "default/web-7"]);
    expect(await registry.metrics()).toContain('twill_policy_whole_compiles_total{reason="start"} 1');
  });

  it("compiles whole and replaces the table when the incremental compile fails, then goes on incrementally", async () => {
    let failures = 1;
    /** Fails its second update, once. */
    class Unsure extends IncrementalPolicyCompiler {
      private updates = 0;
      override update(s: PolicySnapshot) {
        if (this.updates++ === 1 && failures-- > 0) throw new Error("unsure");
        return super.update(s);
      }
    }
    const newCompiler = (o: ConstructorParameters<typeof IncrementalPolicyCompiler>[0]) => new Unsure(o);
    const { e, k, registry, logs } = engine({ newCompiler });
    const [s1, s2] = [cluster(6, "client"), cluster(8, "client")];
    await apply(e, s1, s2);
    expect(e.lastStats).toMatchObject({ path: "whole", applied: true });
    expect(scripts(k.calls).at(-1)).toContain("delete table inet twill-policy");
    expect(logs.some((l) => l.msg === "The incremental NetworkPolicy compile failed; compiling whole" && l.error === "unsure")).toBe(true);
    // The next change makes a compiler anew from the snapshot, and updates from the whole plan.
    const s3 = cluster(10, "client");
    e.update(s3);
    await e.settled();
    expect(e.lastStats).toMatchObject({ path: "whole", applied: true });
    expect(scripts(k.calls).at(-1)).not.toContain("delete table");
    const s4 = cluster(12, "client");
    e.update(s4);
    await e.settled();
    expect(e.lastStats).toMatchObject({ path: "incremental", applied: true });
    expectTable(k.calls, s2, s4);
    const text = await registry.metrics();
    expect(text).toContain('twill_policy_whole_compiles_total{reason="incremental-failed"} 2');
    expect(text).toContain("twill_policy_apply_errors_total 0");
  });

  it("replaces the table from the compiler when an update fails, then goes on incrementally", async () => {
    const { e, k, registry } = engine();
    const s1 = cluster(6, "client");
    e.update(s1);
    await e.settled();
    k.state.failNext = true;
    const s2 = cluster(8, "client");
    e.update(s2);
    await e.settled();
    expect(scripts(k.calls).at(-1)).toContain("delete table");
    expect(e.report().error).toBeUndefined();
    const s3 = cluster(10, "client");
    e.update(s3);
    await e.settled();
    expect(e.lastStats).toMatchObject({ path: "incremental", applied: true });
    expectTable(k.calls, s2, s3);
    expect(await registry.metrics()).not.toContain('reason="apply-failed"');
  });

  it("compiles every change whole when told to, applying the difference", async () => {
    const { e, k } = engine({ incremental: false });
    const [s1, s2] = [cluster(6, "client"), cluster(10, "client")];
    await apply(e, s1, s2);
    expect(e.lastStats).toMatchObject({ path: "whole", applied: true });
    expect(scripts(k.calls)).toHaveLength(2);
    expectTable(k.calls, s1, s2);
  });
});

const chainOf = (script: string): string => /jump (pod_\w+_in)/.exec(script)![1]!;
