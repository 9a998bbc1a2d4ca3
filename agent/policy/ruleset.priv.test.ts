import { afterEach, describe, expect, it } from "vitest";
import type { IpRoute } from "../../testkit/iproute.js";
import { addNetns, ipIn, removeNetns } from "../../testkit/netns.js";
import { applyNftScript } from "../../shared/kernel/nft.js";
import { change, randomCluster, rng } from "../../testkit/random-cluster.js";
import { NODE } from "../../testkit/policy.js";
import { compilePolicies } from "./compile.js";
import { IncrementalPolicyCompiler } from "./incremental.js";
import type { PolicyPlan } from "./plan.js";
import { POLICY_TABLE, renderDelta, renderRuleset, renderUpdate } from "./ruleset.js";
import type { NetworkPolicy, PodInfo, PolicySnapshot } from "./types.js";

// The transactions against the real nft: a chain of in-place updates must leave the kernel
// with exactly the table a fresh apply of the last plan gives.

const made: string[] = [];
afterEach(async () => {
  for (const ns of made.splice(0)) await removeNetns(ns);
});
async function netns(tag: string): Promise<IpRoute> {
  const name = `twpol${process.pid.toString(36)}-${tag}`;
  made.push(name);
  await addNetns(name);
  return ipIn(name);
}

/** The table as nft lists it, without what differs between equal tables (handles, order of listing). */
async function listing(ip: IpRoute): Promise<string[]> {
  const text = await ip.nft(["-j", "list", "table", "inet", POLICY_TABLE], "list the policy table");
  const items = (JSON.parse(text) as { nftables: Record<string, Record<string, unknown>>[] }).nftables.filter((i) => !("metainfo" in i));
  return items
    .map((i) => {
      const [[kind, body]] = Object.entries(i) as [[string, Record<string, unknown>]];
      const { handle: _h, packets: _p, bytes: _b, ...rest } = body;
      return `${kind} ${JSON.stringify(rest)}`;
    })
    .sort();
}

const pods = (n: number, webLabel: string): PodInfo[] =>
  Array.from({ length: n }, (_, i) => ({
    namespace: "d",
    name: `p${i}`,
    nodeName: i % 2 ? "n1" : "n2",
    labels: { app: i % 3 ? webLabel : "x" },
    ips: [`10.0.0.${i + 1}`, `fd00::${i + 1}`],
    ports: [{ name: "http", port: 80, protocol: "TCP" }],
  }));
const policy = (name: string, peers: NetworkPolicy["ingress"][number]["peers"], types: NetworkPolicy["policyTypes"] = ["ingress", "egress"]): NetworkPolicy => ({
  namespace: "d",
  name,
  podSelector: { matchLabels: { app: "web" } },
  policyTypes: types,
  ingress: [{ ...(peers ? { peers } : {}), ports: [{ port: "http" }, { port: 8000, endPort: 8100 }, { protocol: "UDP" }] }],
  egress: [{ peers: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }] }],
});
const namespaces = [{ name: "d", labels: {} }];
const fromX = [{ podSelector: { matchLabels: { app: "x" } } }];
const steps: PolicySnapshot[] = [
  { policies: [policy("a", fromX)], pods: pods(10, "web"), namespaces },
  { policies: [policy("a", fromX)], pods: pods(12, "web"), namespaces },
  { policies: [policy("a", fromX), policy("b", [{ namespaceSelector: {} }])], pods: pods(12, "web"), namespaces },
  { policies: [policy("b", [{ namespaceSelector: {} }], ["ingress"])], pods: pods(6, "web"), namespaces },
  { policies: [], pods: pods(6, "web"), namespaces },
  { policies: [policy("c", undefined)], pods: pods(6, "api"), namespaces },
  { policies: [policy("c", undefined), policy("a", fromX)], pods: pods(9, "web"), namespaces },
];

describe("NetworkPolicy transactions on the real nft", () => {
  it("a chain of updates ends with the table a fresh apply makes", async () => {
    const updated = await netns("u");
    let prev: PolicyPlan | null = null;
    for (const [i, s] of steps.entries()) {
      const plan = compilePolicies(s, { nodeName: "n1", logDropsPerSecond: 3 });
      await applyNftScript(updated, prev ? renderUpdate(prev, plan).script || "\n" : renderRuleset(plan).script, `apply step ${i}`);
      const fresh = await netns(`f${i}`);
      await applyNftScript(fresh, renderRuleset(plan).script, `apply step ${i} whole`);
      expect(await listing(updated), `step ${i}`).toEqual(await listing(fresh));
      prev = plan;
    }
  });

  it("incremental updates of random clusters (elements in and out of hash, interval and tuple sets, map entries moving) leave the table a fresh apply makes", async () => {
    const updated = await netns("inc");
    const fresh = await netns("inc-f");
    let elementUpdates = 0;
    for (const seed of [3, 7, 11, 19]) {
      const r = rng(seed);
      const opts = { nodeName: NODE, logDropsPerSecond: 2 };
      const compiler = new IncrementalPolicyCompiler(opts);
      await applyNftScript(updated, renderRuleset(compiler.plan()).script, `seed ${seed}: apply an empty table`);
      let s = randomCluster(r);
      for (let step = 0; step < 12; step++) {
        if (step > 0) s = change(r, s);
        const delta = compiler.update(s);
        if (delta.setElements.length > 0) elementUpdates++;
        const script = renderDelta(delta).script;
        if (script !== "") await applyNftScript(updated, script, `seed ${seed}, step ${step}: update`);
        await applyNftScript(fresh, renderRuleset(compilePolicies(s, opts)).script, `seed ${seed}, step ${step}: whole`);
        expect(await listing(updated), `seed ${seed}, step ${step}`).toEqual(await listing(fresh));
      }
    }
    expect(elementUpdates).toBeGreaterThan(0);
  });

  it("takes the longest names the API allows, sloppy ipBlocks and a policy that cannot be compiled, in one transaction", async () => {
    // A namespace is a DNS label (63), a policy or pod name a DNS subdomain (253).
    const ns = "n".repeat(63);
    const long = (tail: string) => `${"a".repeat(240)}.${tail}`.padEnd(253, "z");
    const pod = (name: string, ip: string, nodeName = "n1"): PodInfo => ({ namespace: ns, name, nodeName, labels: { app: "web" }, ips: [ip], ports: [] });
    const deny = (name: string, extra: Partial<NetworkPolicy> = {}): NetworkPolicy => ({
      namespace: ns,
      name,
      podSelector: {},
      policyTypes: ["ingress", "egress"],
      ingress: [{ peers: [{ ipBlock: { cidr: "010.0.0.0/8", except: ["010.001.0.0/16"] } }] }],
      egress: [{ peers: [{ ipBlock: { cidr: "10.1.2.3/16" } }] }],
      ...extra,
    });
    const snapshot: PolicySnapshot = {
      policies: [deny(long("one")), deny(long("two")), deny(long("bad"), { egress: [{ peers: [{ ipBlock: { cidr: "10.0.0.0/40" } }] }] })],
      pods: [pod(long("pod-1"), "10.0.0.1"), pod(long("pod-2"), "10.0.0.2"), pod(long("old"), "10.0.0.2"), pod(long("remote"), "10.0.1.1", "n2")],
      namespaces: [{ name: ns, labels: {} }],
    };
    const plan = compilePolicies(snapshot, { nodeName: "n1", logDropsPerSecond: 3 });
    expect(plan.refused.map((r) => r.policy)).toEqual([`${ns}/${long("bad")}`]);
    const ip = await netns("long");
    await applyNftScript(ip, renderRuleset(plan).script, "apply the ruleset with the longest names");
    // The JSON listing leaves chain comments out; the text one has them all.
    const text = await ip.nft(["list", "table", "inet", POLICY_TABLE], "list the policy table");
    const comments = [...text.matchAll(/comment "([^"]*)"/g)].map((m) => m[1]!);
    expect(comments.length).toBe(plan.chains.length + plan.counters.length);
    expect(comments.every((c) => c.length <= 128)).toBe(true);
    expect(comments).toContain(plan.chains.find((c) => c.name.startsWith("pol_"))!.comment);
    // And as an update from a table that had none of it.
    const empty = compilePolicies({ policies: [], pods: [], namespaces: [] }, { nodeName: "n1" });
    const updated = await netns("long-u");
    await applyNftScript(updated, renderRuleset(empty).script, "apply an empty ruleset");
    await applyNftScript(updated, renderUpdate(empty, plan).script, "update to the ruleset with the longest names");
    expect(await listing(updated)).toEqual(await listing(ip));
  });
});
