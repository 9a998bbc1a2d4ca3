import { describe, expect, it } from "vitest";
import { NODE, allPods, client, namespaces, ns, pod, policy, remoteClient, remoteOther, simulate, stranger, tcp, web, webOnly } from "../../testkit/policy.js";
import { compilePolicies } from "./compile.js";
import { renderRuleset } from "./ruleset.js";
import type { PodInfo } from "./types.js";

describe("NetworkPolicy compiler: what tenants and the API may hand it", () => {
  // The longest names the API accepts: a namespace is a DNS label (63), a policy or pod name a
  // DNS subdomain (253).
  const longNs = "n".repeat(63);
  const longName = (tail: string) => `${"p".repeat(240)}-${tail}`.slice(0, 253).padEnd(253, "x");
  const nftTexts = (script: string) => [...script.matchAll(/(comment|prefix) "([^"\n]*)"/g)].map((m) => ({ kind: m[1]!, text: m[2]! }));

  it("fits every comment to nft's limit, and keeps names out of log prefixes, readable when short, unique when long", () => {
    const a = policy(longNs, longName("a"), { ingress: [{ peers: [{ podSelector: {} }] }], policyTypes: ["ingress", "egress"] });
    const b = policy(longNs, longName("b"), { policyTypes: ["ingress", "egress"] });
    const pods = [pod(longNs, longName("pod-1"), ["10.0.0.30"]), pod(longNs, longName("pod-2"), ["10.0.0.31"]), web];
    const plan = compilePolicies({ policies: [a, b, policy("default", "deny-web", webOnly)], pods: [...allPods, ...pods], namespaces: [...namespaces, ns(longNs)] }, { nodeName: NODE, logDropsPerSecond: 2 });
    const { script } = renderRuleset(plan);
    const texts = nftTexts(script);
    expect(texts.length).toBeGreaterThan(10);
    for (const t of texts) {
      expect(Buffer.byteLength(t.text), t.text).toBeLessThanOrEqual(t.kind === "comment" ? 128 : 127);
      expect(t.text).toMatch(/^[A-Za-z0-9._/,:~ -]*$/);
    }
    const comments = plan.chains.map((c) => c.comment);
    expect(new Set(comments).size).toBe(comments.length);
    // Short names stay as they are; long ones keep their beginning and their direction.
    expect(comments).toContain("default/deny-web ingress");
    expect(comments).toContain("default/web ingress");
    expect(comments.filter((c) => c.startsWith(`${longNs}/ppp`) && c.endsWith(" egress"))).toHaveLength(4);
    expect(plan.counters.every((c) => c.comment.length <= 128)).toBe(true);
    // A drop's log prefix is its counter's name, which no tenant chose.
    const prefixes = texts.filter((t) => t.kind === "prefix").map((t) => t.text);
    expect(prefixes.length).toBeGreaterThan(0);
    for (const p of prefixes) expect(p).toMatch(/^drop_[0-9a-f]{16}_(in|eg)$/);
  });

  it("keeps quotes, dollars and newlines of a name out of the ruleset's text", () => {
    const odd = policy("default", 'x" } ; flush ruleset ; $y\n', webOnly);
    const plan = compilePolicies({ policies: [odd], pods: allPods, namespaces }, { nodeName: NODE, logDropsPerSecond: 1 });
    const { script } = renderRuleset(plan);
    expect(script).not.toContain("flush ruleset ;");
    expect(script).not.toContain("$");
    for (const t of nftTexts(script)) expect(t.text).toMatch(/^[A-Za-z0-9._/,:~ -]*$/);
    expect(simulate(plan, tcp(client, web, 80))).toBe("drop");
  });

  it("reads ipBlocks as the apiserver does: leading zeros are decimal, host bits are masked", () => {
    const allow = policy("default", "sloppy", {
      ...webOnly,
      ingress: [{ peers: [{ ipBlock: { cidr: "010.0.0.0/8", except: ["010.000.001.000/24"] } }, { ipBlock: { cidr: "192.168.7.9/16" } }, { ipBlock: { cidr: "fd00:0000:00000::/064" } }] }],
    });
    const plan = compilePolicies({ policies: [allow], pods: allPods, namespaces }, { nodeName: NODE });
    expect(plan.refused).toEqual([]);
    const v = Object.fromEntries(
      Object.entries({
        ten: tcp("10.9.9.9", web, 80),
        except: tcp("10.0.1.20", web, 80),
        // Octal would make 010 the 8.0.0.0/8 block.
        octal: tcp("8.1.2.3", web, 80),
        hostBits: tcp("192.168.200.1", web, 80),
        outside: tcp("192.169.0.1", web, 80),
        v6: tcp("fd00::99", web, 80, 6),
      }).map(([k, pkt]) => [k, simulate(plan, pkt)]),
    );
    expect(v).toEqual({ ten: "accept", except: "drop", octal: "drop", hostBits: "accept", outside: "drop", v6: "accept" });
  });

  it("a policy that cannot be compiled denies for its own pods alone; every other policy and pod is enforced", () => {
    const good = policy("default", "web-from-client", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "client" } } }] }] });
    const badBlock = policy("default", "client-out", { podSelector: { matchLabels: { app: "client" } }, policyTypes: ["egress"], egress: [{ peers: [{ ipBlock: { cidr: "10.0.0.0/8x" } }] }] });
    const badPort = policy("default", "stranger-in", { podSelector: { matchLabels: { app: "stranger" } }, ingress: [{ ports: [{ port: 70000 }] }] });
    const plan = compilePolicies({ policies: [good, badBlock, badPort], pods: allPods, namespaces }, { nodeName: NODE });
    expect(plan.refused).toEqual([
      { policy: "default/client-out", reason: 'egress[0]: invalid CIDR "10.0.0.0/8x"', pods: ["default/client"] },
      { policy: "default/stranger-in", reason: "ingress[0]: invalid port 70000", pods: ["default/stranger"] },
    ]);
    const v = Object.fromEntries(
      Object.entries({
        clientToWeb: tcp(client, web, 80),
        strangerToWeb: tcp(stranger, web, 80),
        clientOut: tcp(client, "10.1.1.1", 80),
        clientIn: tcp(remoteClient, client, 80),
        strangerIn: tcp(client, stranger, 80),
        strangerOut: tcp(stranger, remoteOther, 80),
      }).map(([k, pkt]) => [k, simulate(plan, pkt)]),
    );
    // web's policy as written; client's egress and stranger's ingress denied, their other direction open.
    expect(v).toEqual({ clientToWeb: "drop", strangerToWeb: "drop", clientOut: "drop", clientIn: "accept", strangerIn: "drop", strangerOut: "accept" });
    expect(simulate(plan, tcp(client, web, 80))).toBe("drop");
    expect(renderRuleset(plan).script).not.toContain("undefined");
    // The good policy alone gives web the same chain as with the bad ones beside it.
    const alone = compilePolicies({ policies: [good], pods: allPods, namespaces }, { nodeName: NODE });
    expect(plan.chains.find((c) => c.comment === "default/web-from-client ingress")).toEqual(alone.chains.find((c) => c.comment === "default/web-from-client ingress"));
    expect(plan.sets).toEqual(alone.sets);
  });

  it("refuses an unknown protocol and an unreadable selector for the policy alone; bad pod addresses for the pod alone", () => {
    const badProto = policy("default", "proto", { ...webOnly, ingress: [{ ports: [{ protocol: "ICMP" as never, port: 1 }] }] });
    const badSelector = policy("default", "selector", { podSelector: { matchExpressions: [{ key: "app", operator: "In", values: 5 as never }] } });
    const broken = pod("default", "broken", ["10.0.0.300", "not-an-ip", "10.0.0.40"], { app: "broken" });
    const plan = compilePolicies({ policies: [badProto, badSelector], pods: [...allPods, broken], namespaces }, { nodeName: NODE });
    expect(plan.refused.map((r) => r.policy)).toEqual(["default/proto", "default/selector"]);
    // An unreadable podSelector isolates the whole namespace's local pods: fail closed.
    expect(plan.refused[1]!.pods).toEqual(["default/broken", "default/client", "default/stranger", "default/web"]);
    expect(plan.pods.find((p) => p.pod === "default/broken")!.ips).toEqual(["10.0.0.40"]);
    expect(renderRuleset(plan).script).not.toMatch(/10\.0\.0\.300|not-an-ip/);
  });

  it("refuses a malformed peer selector from the policy alone, whether or not a pod meets it", () => {
    const odd = policy("default", "odd-peer", { ...webOnly, ingress: [{ peers: [{ namespaceSelector: { matchLabels: { team: "nobody" } }, podSelector: { matchExpressions: [{ key: "app", operator: "In", values: "client" as never }] } }] }] });
    for (const pods of [allPods, [web]]) {
      const plan = compilePolicies({ policies: [odd], pods, namespaces }, { nodeName: NODE });
      expect(plan.refused).toEqual([{ policy: "default/odd-peer", reason: "ingress[0]: matchExpressions[0].values is not a list", pods: ["default/web"] }]);
    }
  });

  it("gives one address claimed by two local pods one verdict: the pod not being deleted, then the newest", () => {
    const old = pod("default", "old", ["10.0.0.50"], { app: "web" }, { terminating: true, createdAt: 2_000 });
    const fresh = pod("default", "new", ["10.0.0.50", "fd00::50", "fd00:0::0050"], { app: "client" }, { createdAt: 1_000 });
    const older = pod("default", "older", ["10.0.0.60"], { app: "web" }, { createdAt: 1_000 });
    const newer = pod("default", "newer", ["10.0.0.60"], { app: "client" }, { createdAt: 3_000 });
    const policies = [policy("default", "deny-web", webOnly), policy("default", "client-in", { podSelector: { matchLabels: { app: "client" } }, ingress: [{ ports: [{ port: 80 }] }] })];
    const plan = compilePolicies({ policies, pods: [old, fresh, older, newer], namespaces }, { nodeName: NODE });
    const ingress4 = plan.maps.find((m) => m.name === "ingress4")!.elements;
    const ingress6 = plan.maps.find((m) => m.name === "ingress6")!.elements;
    for (const m of plan.maps) expect(new Set(m.elements.map(([ip]) => ip)).size).toBe(m.elements.length);
    const chainOf = (p: PodInfo) => plan.chains.find((c) => c.comment === `default/${p.name} ingress`)!.name;
    expect(ingress4).toEqual([
      ["10.0.0.50", chainOf(fresh)],
      ["10.0.0.60", chainOf(newer)],
    ]);
    expect(ingress6).toEqual([["fd00::50", chainOf(fresh)]]);
    expect(simulate(plan, tcp(client, "10.0.0.50", 80))).toBe("accept");
    expect(simulate(plan, tcp(client, "10.0.0.60", 22))).toBe("drop");
  });
});
