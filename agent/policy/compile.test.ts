import { describe, expect, it } from "vitest";
import { compilePolicies } from "./compile.js";
import { renderRuleset, renderUpdate } from "./ruleset.js";
import { NODE, allPods, client, namespaces, ns, pod, policy, remoteClient, remoteOther, simulate, stranger, tcp, udp, web, webOnly, type Packet } from "../../testkit/policy.js";
import type { PolicySnapshot } from "./types.js";

function verdicts(snapshot: Partial<PolicySnapshot>, packets: Record<string, Packet>, log?: number) {
  const plan = compilePolicies({ policies: [], pods: allPods, namespaces, ...snapshot }, { nodeName: NODE, ...(log ? { logDropsPerSecond: log } : {}) });
  return Object.fromEntries(Object.entries(packets).map(([k, p]) => [k, simulate(plan, p)]));
}

describe("NetworkPolicy compiler", () => {
  it("allows everything when no policy selects a pod", () => {
    const plan = compilePolicies({ policies: [policy("team-y", "deny", {})], pods: allPods, namespaces }, { nodeName: NODE });
    expect(plan.maps.every((m) => m.elements.length === 0)).toBe(true);
    expect(plan.pods).toEqual([]);
    expect(simulate(plan, tcp(client, web, 80))).toBe("accept");
  });

  it("denies all ingress to a selected pod and leaves its egress and other pods open", () => {
    const v = verdicts({ policies: [policy("default", "deny-web", webOnly)] }, {
      toWeb: tcp(client, web, 80),
      toWeb6: tcp(client, web, 80, 6),
      fromWeb: tcp(web, client, 80),
      toClient: tcp(stranger, client, 80),
    });
    expect(v).toEqual({ toWeb: "drop", toWeb6: "drop", fromWeb: "accept", toClient: "accept" });
  });

  it("isolates only this node's pods: a remote pod is the other node's business", () => {
    const plan = compilePolicies({ policies: [policy("team-x", "deny", {})], pods: allPods, namespaces }, { nodeName: NODE });
    expect(plan.pods).toEqual([]);
    expect(simulate(plan, tcp(web, remoteClient, 80))).toBe("accept");
  });

  it("podSelector peers are pods of the policy's own namespace", () => {
    const allow = policy("default", "from-client", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "client" } } }] }] });
    const v = verdicts({ policies: [allow] }, {
      client: tcp(client, web, 80),
      client6: tcp(client, web, 80, 6),
      stranger: tcp(stranger, web, 80),
      sameLabelOtherNamespace: tcp(remoteClient, web, 80),
    });
    expect(v).toEqual({ client: "accept", client6: "accept", stranger: "drop", sameLabelOtherNamespace: "drop" });
  });

  it("namespaceSelector alone admits every pod of the matching namespaces", () => {
    const allow = policy("default", "from-team-x", { ...webOnly, ingress: [{ peers: [{ namespaceSelector: { matchLabels: { team: "x" } } }] }] });
    const v = verdicts({ policies: [allow] }, { remoteClient: tcp(remoteClient, web, 80), remoteOther: tcp(remoteOther, web, 80), local: tcp(client, web, 80) });
    expect(v).toEqual({ remoteClient: "accept", remoteOther: "accept", local: "drop" });
  });

  it("namespaceSelector and podSelector in one peer must both match", () => {
    const allow = policy("default", "client-in-x", {
      ...webOnly,
      ingress: [{ peers: [{ namespaceSelector: { matchExpressions: [{ key: "team", operator: "In", values: ["x"] }] }, podSelector: { matchLabels: { app: "client" } } }] }],
    });
    const v = verdicts({ policies: [allow] }, { both: tcp(remoteClient, web, 80), wrongPod: tcp(remoteOther, web, 80), wrongNamespace: tcp(client, web, 80) });
    expect(v).toEqual({ both: "accept", wrongPod: "drop", wrongNamespace: "drop" });
  });

  it("ipBlock admits its CIDR minus the except blocks, for pods and other addresses alike", () => {
    const allow = policy("default", "block", {
      ...webOnly,
      ingress: [{ peers: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.1.0/24", "10.0.0.12/32"] } }, { ipBlock: { cidr: "fd00::/64" } }] }],
    });
    const v = verdicts({ policies: [allow] }, {
      inBlock: tcp(client, web, 80),
      outside: tcp("192.168.1.1", web, 80),
      exceptRange: tcp(remoteClient, web, 80),
      exceptHost: tcp(stranger, web, 80),
      v6: tcp(client, web, 80, 6),
      v6Outside: tcp("fd00:1::20", web, 80, 6),
    });
    expect(v).toEqual({ inBlock: "accept", outside: "drop", exceptRange: "drop", exceptHost: "drop", v6: "accept", v6Outside: "drop" });
  });

  it("ports by number, range (endPort) and protocol; a protocol without a port allows all its ports", () => {
    const allow = policy("default", "ports", {
      ...webOnly,
      ingress: [{ ports: [{ port: 80 }, { protocol: "UDP", port: 53 }, { port: 8000, endPort: 8100 }, { protocol: "SCTP" }] }],
    });
    const sctp: Packet = { ...tcp(client, web, 9999), proto: "sctp" };
    const v = verdicts({ policies: [allow] }, {
      tcp80: tcp(client, web, 80),
      udp80: udp(client, web, 80),
      udp53: udp(client, web, 53),
      tcp53: tcp(client, web, 53),
      rangeLow: tcp(remoteClient, web, 8000),
      rangeHigh: tcp(client, web, 8100),
      pastRange: tcp(client, web, 8101),
      sctp,
      v6: tcp(client, web, 80, 6),
    });
    expect(v).toEqual({ tcp80: "accept", udp80: "drop", udp53: "accept", tcp53: "drop", rangeLow: "accept", rangeHigh: "accept", pastRange: "drop", sctp: "accept", v6: "accept" });
  });

  it("resolves an ingress named port on the selected pod, and gives nothing to a pod without that name", () => {
    const noName = pod("default", "plain", ["10.0.0.13"], { app: "web" }, { ports: [{ name: "metrics", port: 9090, protocol: "TCP" }] });
    const allow = policy("default", "named", { ...webOnly, ingress: [{ ports: [{ port: "http" }, { protocol: "UDP", port: "dns" }] }] });
    const v = verdicts({ policies: [allow], pods: [...allPods, noName] }, {
      http: tcp(client, web, 8080),
      http6: tcp(client, web, 8080, 6),
      notNamed: tcp(client, web, 80),
      dns: udp(client, web, 5353),
      dnsAsTcp: tcp(client, web, 5353),
      plain8080: tcp(client, noName, 8080),
      plainMetrics: tcp(client, noName, 9090),
    });
    expect(v).toEqual({ http: "accept", http6: "accept", notNamed: "drop", dns: "accept", dnsAsTcp: "drop", plain8080: "drop", plainMetrics: "drop" });
  });

  it("egress: peers by selector, named ports resolved on the destination pod, other traffic dropped", () => {
    const remoteWeb = pod("team-x", "web", ["10.0.1.30"], { app: "web" }, { nodeName: "node-b", ports: [{ name: "http", port: 8081, protocol: "TCP" }] });
    const egress = policy("default", "client-out", {
      podSelector: { matchLabels: { app: "client" } },
      policyTypes: ["egress"],
      egress: [{ peers: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: "web" } } }], ports: [{ port: "http" }] }],
    });
    const v = verdicts({ policies: [egress], pods: [...allPods, remoteWeb] }, {
      localWeb: tcp(client, web, 8080),
      remoteWeb: tcp(client, remoteWeb, 8081),
      wrongPort: tcp(client, remoteWeb, 8080),
      notWeb: tcp(client, stranger, 8080),
      outside: tcp(client, "8.8.8.8", 53),
      ingressStillOpen: tcp(stranger, client, 22),
    });
    expect(v).toEqual({ localWeb: "accept", remoteWeb: "accept", wrongPort: "drop", notWeb: "drop", outside: "drop", ingressStillOpen: "accept" });
  });

  it("egress to an ipBlock with except; pod-to-pod on one node needs the sender's egress and the receiver's ingress", () => {
    const out = policy("default", "out", { podSelector: { matchLabels: { app: "client" } }, policyTypes: ["egress"], egress: [{ peers: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.12/32"] } }] }] });
    const into = policy("default", "in", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "stranger" } } }] }] });
    const v = verdicts({ policies: [out, into] }, {
      internet: tcp(client, "8.8.8.8", 443),
      excepted: tcp(client, stranger, 80),
      egressOkIngressNot: tcp(client, web, 80),
      v6NoRule: tcp(client, web, 80, 6),
      strangerToWeb: tcp(stranger, web, 80),
    });
    expect(v).toEqual({ internet: "accept", excepted: "drop", egressOkIngressNot: "drop", v6NoRule: "drop", strangerToWeb: "accept" });
  });

  it("several policies selecting one pod add up", () => {
    const a = policy("default", "a", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ port: 80 }] }] });
    const b = policy("default", "b", { podSelector: {}, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "stranger" } } }], ports: [{ port: 9090 }] }] });
    const c = policy("default", "c-egress-only", { ...webOnly, policyTypes: ["egress"], egress: [] });
    const plan = compilePolicies({ policies: [c, b, a], pods: allPods, namespaces }, { nodeName: NODE });
    expect(plan.pods.find((p) => p.pod === "default/web")).toEqual({ pod: "default/web", ips: web.ips, ingress: ["default/a", "default/b"], egress: ["default/c-egress-only"] });
    const v = Object.fromEntries(
      Object.entries({ a: tcp(client, web, 80), b: tcp(stranger, web, 9090), crossed: tcp(client, web, 9090), strangerOn80: tcp(stranger, web, 80), webOut: tcp(web, client, 80) }).map(
        ([k, p]) => [k, simulate(plan, p)],
      ),
    );
    expect(v).toEqual({ a: "accept", b: "accept", crossed: "drop", strangerOn80: "drop", webOut: "drop" });
    expect(plan.policies.map((p) => p.policy)).toEqual(["default/a", "default/b", "default/c-egress-only"]);
  });

  it("follows a namespace relabelled", () => {
    const allow = policy("default", "from-team-x", { ...webOnly, ingress: [{ peers: [{ namespaceSelector: { matchLabels: { team: "x" } } }] }] });
    const packets = { remote: tcp(remoteClient, web, 80) };
    expect(verdicts({ policies: [allow] }, packets)).toEqual({ remote: "accept" });
    const relabelled = namespaces.map((n) => (n.name === "team-x" ? ns("team-x", { team: "z" }) : n));
    expect(verdicts({ policies: [allow], namespaces: relabelled }, packets)).toEqual({ remote: "drop" });
  });

  it("follows a pod relabelled, as a peer and as a target", () => {
    const allow = policy("default", "from-client", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "client" } } }] }] });
    const packets = { client: tcp(client, web, 80), stranger: tcp(stranger, web, 80) };
    expect(verdicts({ policies: [allow] }, packets)).toEqual({ client: "accept", stranger: "drop" });
    const peerRelabelled = allPods.map((p) => (p === stranger ? { ...p, labels: { app: "client" } } : p === client ? { ...p, labels: {} } : p));
    expect(verdicts({ policies: [allow], pods: peerRelabelled }, packets)).toEqual({ client: "drop", stranger: "accept" });
    const targetRelabelled = allPods.map((p) => (p === web ? { ...p, labels: { app: "api" } } : p));
    expect(verdicts({ policies: [allow], pods: targetRelabelled }, packets)).toEqual({ client: "accept", stranger: "accept" });
  });

  it("matchExpressions NotIn, Exists and DoesNotExist select as the API says", () => {
    const allow = policy("default", "expr", {
      podSelector: { matchExpressions: [{ key: "app", operator: "NotIn", values: ["client", "stranger"] }, { key: "app", operator: "Exists" }] },
      ingress: [{ peers: [{ podSelector: { matchExpressions: [{ key: "tier", operator: "DoesNotExist" }, { key: "app", operator: "In", values: ["stranger"] }] } }] }],
    });
    const plan = compilePolicies({ policies: [allow], pods: allPods, namespaces }, { nodeName: NODE });
    expect(plan.pods.map((p) => p.pod)).toEqual(["default/web"]);
    expect(simulate(plan, tcp(stranger, web, 1))).toBe("accept");
    expect(simulate(plan, tcp(client, web, 1))).toBe("drop");
  });

  it("keeps the rule count constant as peers grow: peers go into sets", () => {
    const allow = policy("default", "from-team-x", { ...webOnly, ingress: [{ peers: [{ namespaceSelector: { matchLabels: { team: "x" } } }], ports: [{ port: 80 }, { port: "http" }] }] });
    const peers = (n: number) => Array.from({ length: n }, (_, i) => pod("team-x", `p${i}`, [`10.${1 + (i >> 8)}.${i & 255}.5`], {}, { nodeName: "node-b" }));
    const small = renderRuleset(compilePolicies({ policies: [allow], pods: [...allPods, ...peers(2)], namespaces }, { nodeName: NODE }));
    const large = renderRuleset(compilePolicies({ policies: [allow], pods: [...allPods, ...peers(500)], namespaces }, { nodeName: NODE }));
    expect(large.rules).toBe(small.rules);
    expect(large.elements).toBeGreaterThan(small.elements + 400);
  });

  it("renders one transaction that replaces the table, with a counter per isolated pod and direction", () => {
    const plan = compilePolicies({ policies: [policy("default", "deny-web", { ...webOnly, policyTypes: ["ingress", "egress"] })], pods: allPods, namespaces }, { nodeName: NODE });
    const { script } = renderRuleset(plan);
    const lines = script.split("\n");
    expect(lines.slice(0, 3)).toEqual(["add table inet twill-policy", "delete table inet twill-policy", "table inet twill-policy {"]);
    expect(plan.counters.map((c) => [c.pod, c.direction])).toEqual([
      ["default/web", "ingress"],
      ["default/web", "egress"],
    ]);
    for (const c of plan.counters) expect(script).toContain(`counter name "${c.name}" goto reject-denied`);
    expect(script).toContain("  chain reject-denied {\n    meta l4proto tcp reject with tcp reset\n    reject with icmpx type admin-prohibited\n  }");
    expect(script).toContain("ct state established,related accept");
    expect(script).toMatch(/10\.0\.0\.10 : jump pod_[0-9a-f]{16}_in/);
    expect(script).toMatch(/fd00::10 : jump pod_[0-9a-f]{16}_eg/);
    expect(script).not.toContain(" log ");
  });

  it("updates only what a change touches: a new peer is one element of the set its policy already uses", () => {
    const allow = policy("default", "from-client", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "client" } } }] }] });
    const before = compilePolicies({ policies: [allow], pods: allPods, namespaces }, { nodeName: NODE });
    expect(renderUpdate(before, before).script).toBe("");
    const newcomer = pod("default", "client-2", ["10.0.1.50"], { app: "client" }, { nodeName: "node-b" });
    const after = compilePolicies({ policies: [allow], pods: [...allPods, newcomer], namespaces }, { nodeName: NODE });
    expect(after.sets.map((s) => s.name)).toEqual(before.sets.map((s) => s.name));
    expect(after.chains).toEqual(before.chains);
    const set = after.sets.find((s) => s.type === "ipv4_addr")!;
    expect(set.elements).toEqual(["10.0.0.11", "10.0.1.50"]);
    expect(renderUpdate(before, after).script).toBe(`add element inet twill-policy ${set.name} { 10.0.1.50 }\n`);
    expect(renderUpdate(after, before).script).toBe(`delete element inet twill-policy ${set.name} { 10.0.1.50 }\n`);
  });

  it("keeps a rule whose selector matches no pod yet, on an empty set, and puts a pod inside an ipBlock to the block", () => {
    const allow = policy("default", "mixed", {
      ...webOnly,
      ingress: [{ peers: [{ podSelector: { matchLabels: { app: "nobody" } } }] }, { peers: [{ podSelector: { matchLabels: { app: "client" } } }, { ipBlock: { cidr: "10.0.0.0/30" } }] }],
    });
    const plan = compilePolicies({ policies: [allow], pods: allPods, namespaces }, { nodeName: NODE });
    const chain = plan.chains.find((c) => c.comment === "default/mixed ingress")!;
    expect(chain.rules).toHaveLength(4);
    const setOf = (rule: string) => plan.sets.find((s) => s.name === /@(\S+)/.exec(rule)![1])!;
    expect(chain.rules.map((r) => setOf(r).elements)).toEqual([[], [], ["10.0.0.0-10.0.0.3", "10.0.0.11"], ["fd00::11"]]);
    expect(setOf(chain.rules[2]!).interval).toBe(true);
    expect(simulate(plan, tcp(client, web, 80))).toBe("accept");
    expect(simulate(plan, tcp("10.0.0.2", web, 80))).toBe("accept");
    expect(simulate(plan, tcp(stranger, web, 80))).toBe("drop");
  });

  it("hands drops to the nflog group, rate-limited, prefixed with the pod's counter, only when asked", () => {
    const plan = compilePolicies({ policies: [policy("default", "deny-web", webOnly)], pods: allPods, namespaces }, { nodeName: NODE, logDropsPerSecond: 5 });
    const chain = plan.chains.find((c) => c.comment === "default/web ingress")!;
    const policyChain = plan.chains.find((c) => c.comment === "default/deny-web ingress")!;
    expect(chain.rules).toEqual([
      `jump ${policyChain.name}`,
      `limit rate 5/second burst 5 packets log group 1024 prefix "${plan.counters[0]!.name}"`,
      `counter name "${plan.counters[0]!.name}" goto reject-denied`,
    ]);
    expect(simulate(plan, tcp(client, web, 80))).toBe("drop");
  });

  it("rejects denied packets by default (a TCP reset, else ICMP prohibited), or drops them when asked", () => {
    const snapshot = { policies: [policy("default", "deny-web", webOnly)], pods: allPods, namespaces };
    const denyOf = (plan: ReturnType<typeof compilePolicies>) => plan.chains.find((c) => c.comment === "default/web ingress")!.rules.at(-1);
    const rejecting = compilePolicies(snapshot, { nodeName: NODE });
    const counter = rejecting.counters[0]!.name;
    // Counted once, then the table's reject chain (a TCP reset, else ICMP prohibited).
    expect(denyOf(rejecting)).toBe(`counter name "${counter}" goto reject-denied`);
    const dropping = compilePolicies(snapshot, { nodeName: NODE, deny: "drop" });
    expect(denyOf(dropping)).toBe(`counter name "${counter}" drop`);
    // Either way the same packets are denied.
    for (const plan of [rejecting, dropping]) {
      expect(simulate(plan, tcp(client, web, 80))).toBe("drop");
      expect(simulate(plan, { src: client.ips[0]!, dst: web.ips[0]!, proto: "udp", port: 53 })).toBe("drop");
    }
  });

  it("ignores pods without addresses yet", () => {
    const pending = pod("default", "pending", [], { app: "web" });
    const plan = compilePolicies({ policies: [policy("default", "deny-web", webOnly)], pods: [...allPods, pending], namespaces }, { nodeName: NODE });
    expect(plan.policies).toEqual([{ policy: "default/deny-web", types: ["ingress"], pods: ["default/web"] }]);
  });

  it("applies egress to a pod's traffic to its own node: an input chain dispatching by source, after replies", () => {
    const plan = compilePolicies({ policies: [policy("default", "deny-out", { ...webOnly, policyTypes: ["egress"] })], pods: allPods, namespaces }, { nodeName: NODE });
    const { script } = renderRuleset(plan);
    const chain = /\n  chain egress-to-node \{\n([^}]*(?:\{[^}]*\}[^}]*)*)\n  \}/.exec(script)?.[1]?.split("\n").map((l) => l.trim());
    expect(chain).toEqual([
      "type filter hook input priority filter; policy accept;",
      "ct state established,related accept",
      "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept",
      "ip saddr vmap @egress4",
      "ip6 saddr vmap @egress6",
    ]);
    // Nothing hooks output: the node reaches its pods (kubelet probes) whatever their policies.
    expect(script).not.toMatch(/hook output/);
    expect(plan.maps.find((m) => m.name === "egress4")!.elements.map(([ip]) => ip)).toEqual(["10.0.0.10"]);
  });
});
