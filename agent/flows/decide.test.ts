import { describe, expect, it } from "vitest";
import { formatIp, parseIp } from "../../shared/net/cidr.js";
import { NODE, allPods, client, namespaces, policy, remoteClient, remoteOther, runChain, stranger, web, webOnly, type Packet } from "../../testkit/policy.js";
import { randomCluster, rng } from "../../testkit/random-cluster.js";
import { compilePolicies } from "../policy/compile.js";
import { policyChainName } from "../policy/policy-chains.js";
import { firstByKey, readPod } from "../policy/set-members.js";
import type { NetworkPolicy, PodInfo, PolicySnapshot, PolicyPort, PolicyRule } from "../policy/types.js";
import { podKey } from "../policy/types.js";
import { decide, decider, type FlowQuery } from "./decide.js";
import type { FlowProtocol } from "../../shared/kernel/netlink/flow-events.js";

const snapshot = (...policies: NetworkPolicy[]): PolicySnapshot => ({ policies, pods: allPods, namespaces });
const ingress = (...rules: PolicyRule[]) => policy("default", "p", { ...webOnly, ingress: rules });
const egress = (...rules: PolicyRule[]) => policy("default", "p", { podSelector: { matchLabels: { app: "client" } }, policyTypes: ["egress"], egress: rules });
const toWeb = (from: PodInfo | string, port: number | null = 80, protocol: FlowProtocol = "TCP"): FlowQuery => ({
  direction: "ingress",
  pod: web,
  peerIp: typeof from === "string" ? from : from.ips[0]!,
  peerPod: typeof from === "string" ? null : from,
  protocol,
  port,
});
const fromClient = (to: PodInfo | string, port: number | null = 80, protocol: FlowProtocol = "TCP"): FlowQuery => ({ ...toWeb(to, port, protocol), direction: "egress", pod: client });
const ports = (...list: PolicyPort[]): Pick<PolicyRule, "ports"> => ({ ports: list });

const ADMITTED = { isolated: true, admittedBy: ["default/p"] };
const DENIED = { isolated: true, admittedBy: [] };
const OPEN = { isolated: false, admittedBy: [] };

describe("decide: which policies admit a connection", () => {
  const cases: [string, PolicySnapshot, FlowQuery, { isolated: boolean; admittedBy: string[] }][] = [
    ["no policy: open", snapshot(), toWeb(client), OPEN],
    ["a policy with no rules isolates and admits nothing", snapshot(ingress()), toWeb(client), DENIED],
    ["an ingress policy leaves egress open", snapshot(ingress()), { ...toWeb(client), direction: "egress" }, OPEN],
    ["a policy selecting other pods leaves this one open", snapshot(policy("default", "p", { podSelector: { matchLabels: { app: "client" } } })), toWeb(client), OPEN],
    ["a policy of another namespace selects none of this one's pods", snapshot(policy("team-x", "p", {})), toWeb(client), OPEN],
    ["policyTypes decide, not the rules present", snapshot(policy("default", "p", { ...webOnly, policyTypes: ["ingress"], egress: [{}] })), { ...toWeb(client), direction: "egress" }, OPEN],
    ["an empty rule admits anything", snapshot(ingress({})), toWeb("192.0.2.1", null, "ICMP"), ADMITTED],
    ["podSelector alone: the policy's namespace", snapshot(ingress({ peers: [{ podSelector: { matchLabels: { app: "client" } } }] })), toWeb(client), ADMITTED],
    ["podSelector alone: not another namespace's pod", snapshot(ingress({ peers: [{ podSelector: { matchLabels: { app: "client" } } }] })), toWeb(remoteClient), DENIED],
    ["podSelector: over IPv6 too", snapshot(ingress({ peers: [{ podSelector: { matchLabels: { app: "client" } } }] })), { ...toWeb(client), peerIp: "fd00::11" }, ADMITTED],
    ["podSelector: a non-pod address is no pod", snapshot(ingress({ peers: [{ podSelector: {} }] })), toWeb("10.0.0.99"), DENIED],
    ["podSelector: the pod must hold the address", snapshot(ingress({ peers: [{ podSelector: {} }] })), { ...toWeb(client), peerIp: "10.0.0.99" }, DENIED],
    ["namespaceSelector: pods of matching namespaces", snapshot(ingress({ peers: [{ namespaceSelector: { matchLabels: { team: "x" } } }] })), toWeb(remoteClient), ADMITTED],
    ["namespaceSelector: not other namespaces", snapshot(ingress({ peers: [{ namespaceSelector: { matchLabels: { team: "x" } } }] })), toWeb(client), DENIED],
    ["both in one peer: both must match", snapshot(ingress({ peers: [{ namespaceSelector: { matchLabels: { team: "x" } }, podSelector: { matchLabels: { app: "other" } } }] })), toWeb(remoteOther), ADMITTED],
    ["both in one peer: a pod of the namespace without the labels", snapshot(ingress({ peers: [{ namespaceSelector: { matchLabels: { team: "x" } }, podSelector: { matchLabels: { app: "other" } } }] })), toWeb(remoteClient), DENIED],
    ["namespaceSelector {}: every namespace", snapshot(ingress({ peers: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: "client" } } }] })), toWeb(remoteClient), ADMITTED],
    ["matchExpressions NotIn", snapshot(ingress({ peers: [{ podSelector: { matchExpressions: [{ key: "app", operator: "NotIn", values: ["stranger"] }] } }] })), toWeb(stranger), DENIED],
    ["ipBlock: an address inside", snapshot(ingress({ peers: [{ ipBlock: { cidr: "10.0.1.0/24", except: ["10.0.1.21/32"] } }] })), toWeb("10.0.1.20"), ADMITTED],
    ["ipBlock: an address in except", snapshot(ingress({ peers: [{ ipBlock: { cidr: "10.0.1.0/24", except: ["10.0.1.21/32"] } }] })), toWeb(remoteOther), DENIED],
    ["ipBlock: the other family", snapshot(ingress({ peers: [{ ipBlock: { cidr: "10.0.1.0/24" } }] })), { ...toWeb(remoteClient), peerIp: "fd00:1::20" }, DENIED],
    ["ipBlock: read as the apiserver reads it (decimal, host bits)", snapshot(ingress({ peers: [{ ipBlock: { cidr: "010.0.1.7/24" } }] })), toWeb("10.0.1.200"), ADMITTED],
    ["ipBlock covers a pod no selector takes", snapshot(ingress({ peers: [{ ipBlock: { cidr: "10.0.0.0/24" } }] })), toWeb(stranger), ADMITTED],
    ["port: the number and protocol", snapshot(ingress(ports({ port: 80 }))), toWeb(client, 80), ADMITTED],
    ["port: another number", snapshot(ingress(ports({ port: 80 }))), toWeb(client, 81), DENIED],
    ["port: TCP when no protocol is given", snapshot(ingress(ports({ port: 53 }))), toWeb(client, 53, "UDP"), DENIED],
    ["port: no port (ICMP) matches no port number", snapshot(ingress(ports({ port: 80 }))), toWeb(client, null, "ICMP"), DENIED],
    ["endPort: the last port of the range", snapshot(ingress(ports({ port: 8000, endPort: 8100 }))), toWeb(client, 8100), ADMITTED],
    ["endPort: past the range", snapshot(ingress(ports({ port: 8000, endPort: 8100 }))), toWeb(client, 8101), DENIED],
    ["endPort below port: the port alone", snapshot(ingress(ports({ port: 8000, endPort: 7000 }))), toWeb(client, 7500), DENIED],
    ["protocol alone: any port of it", snapshot(ingress(ports({ protocol: "UDP" }))), toWeb(client, 9999, "UDP"), ADMITTED],
    ["protocol alone: not another protocol", snapshot(ingress(ports({ protocol: "UDP" }))), toWeb(client, 9999, "TCP"), DENIED],
    ["SCTP by number", snapshot(ingress(ports({ protocol: "SCTP", port: 80 }))), toWeb(client, 80, "SCTP"), ADMITTED],
    ["peers and ports: both must match", snapshot(ingress({ peers: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ port: 80 }] })), toWeb(stranger, 80), DENIED],
    ["named port, ingress: on the selected pod", snapshot(ingress(ports({ port: "http" }))), toWeb(client, 8080), ADMITTED],
    ["named port, ingress: another port", snapshot(ingress(ports({ port: "http" }))), toWeb(client, 80), DENIED],
    ["named port, ingress: the name with another protocol", snapshot(ingress(ports({ protocol: "UDP", port: "http" }))), toWeb(client, 8080, "UDP"), DENIED],
    ["named port, ingress: UDP", snapshot(ingress(ports({ protocol: "UDP", port: "dns" }))), toWeb(client, 5353, "UDP"), ADMITTED],
    ["named port, ingress: the peer must be among the peers", snapshot(ingress({ peers: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ port: "http" }] })), toWeb(stranger, 8080), DENIED],
    ["named port, egress: on the destination pod", snapshot(egress(ports({ port: "http" }))), fromClient(web, 8080), ADMITTED],
    ["named port, egress: a pod without the name", snapshot(egress(ports({ port: "http" }))), fromClient(stranger, 8080), DENIED],
    ["named port, egress: a non-pod address has no names", snapshot(egress(ports({ port: "http" }))), fromClient("192.0.2.1", 8080), DENIED],
    ["named port, egress: a destination the peers do not take", snapshot(egress({ peers: [{ podSelector: { matchLabels: { app: "stranger" } } }], ports: [{ port: "http" }] })), fromClient(web, 8080), DENIED],
    ["named port, egress: a destination the peers take by ipBlock", snapshot(egress({ peers: [{ ipBlock: { cidr: "10.0.0.10/32" } }], ports: [{ port: "http" }] })), fromClient(web, 8080), ADMITTED],
    ["egress: by numeric port to an address", snapshot(egress({ peers: [{ ipBlock: { cidr: "0.0.0.0/0" } }], ports: [{ port: 443 }] })), fromClient("192.0.2.1", 443), ADMITTED],
    ["a refused policy (bad CIDR) isolates and admits nothing", snapshot(ingress({ peers: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }, {})), toWeb(client), DENIED],
    [
      "an unreadable podSelector selects the whole namespace, refused",
      snapshot(policy("default", "p", { podSelector: { matchExpressions: [{ key: "app", operator: "In", values: 5 as never }] }, ingress: [{}] })),
      { ...toWeb(client), pod: stranger },
      DENIED,
    ],
    ["a pod with no readable address is not isolated", snapshot(policy("default", "p", {})), { ...toWeb(client), pod: { ...web, ips: ["bad"] } }, OPEN],
    [
      "policies add up: the admitting ones, by namespace and name",
      snapshot(policy("default", "z-deny", webOnly), policy("default", "b-http", { ...webOnly, ingress: [ports({ port: 80 })] }), policy("default", "a-any", { ingress: [{}] })),
      toWeb(client, 80),
      { isolated: true, admittedBy: ["default/a-any", "default/b-http"] },
    ],
  ];
  it.each(cases)("%s", (_, s, q, want) => {
    expect(decide(s, q)).toEqual(want);
  });
});

// decide() against the compiled plan, on random clusters: for every pod of this node and every
// peer address (pods' and others), protocol and port, the policies decide() says admit a
// connection are those whose compiled chain accepts its first packet, and it is isolated exactly
// when the plan gives the pod a chain in that direction.
describe("decide against the compiled plan", () => {
  const PROBES: { proto: Packet["proto"]; protocol: FlowProtocol; port: number | null }[] = [
    { proto: "tcp", protocol: "TCP", port: 80 },
    { proto: "tcp", protocol: "TCP", port: 8080 },
    { proto: "tcp", protocol: "TCP", port: 8050 },
    { proto: "tcp", protocol: "TCP", port: 9090 },
    { proto: "udp", protocol: "UDP", port: 53 },
    { proto: "udp", protocol: "UDP", port: 80 },
    { proto: "sctp", protocol: "SCTP", port: 80 },
    { proto: "icmp", protocol: "ICMP", port: null },
  ];
  const OTHERS = ["10.0.0.1", "10.0.0.5", "10.0.0.9", "10.0.0.200", "192.0.2.1", "fd00::5", "fd00:1::1"];

  it("agrees with the plan's chains on random clusters", () => {
    const tally = { queries: 0, isolated: 0, admitted: 0, refusedIsolating: 0 };
    for (let seed = 1; seed <= 150; seed++) {
      const s = randomCluster(rng(seed));
      const plan = compilePolicies(s, { nodeName: NODE });
      const decideHere = decider(s);
      // Pods as the compiler sees them; an address two pods list is left out (which pod a
      // flow is then is the caller's guess, and the plan holds both).
      const pods = [...firstByKey(s.pods).values()];
      const holders = new Map<string, PodInfo[]>();
      for (const p of pods) for (const a of readPod(p, NODE)?.info.ips ?? []) holders.set(canonical(a), [...(holders.get(canonical(a)) ?? []), p]);
      const peers = [...new Set([...holders.keys(), ...OTHERS])].filter((a) => (holders.get(a)?.length ?? 0) <= 1);
      for (const local of pods.filter((p) => p.nodeName === NODE)) {
        const enforced = plan.pods.find((e) => e.pod === podKey(local));
        for (const own of (readPod(local, NODE)?.info.ips ?? []).map(canonical).filter((a) => holders.get(a)?.length === 1)) {
          for (const peerIp of peers.filter((a) => a.includes(":") === own.includes(":"))) {
            const peerPod = holders.get(peerIp)?.[0] ?? null;
            for (const { proto, protocol, port } of PROBES) {
              for (const direction of ["ingress", "egress"] as const) {
                const pkt: Packet = direction === "ingress" ? { src: peerIp, dst: own, proto } : { src: own, dst: peerIp, proto };
                if (port !== null) pkt.port = port;
                const isolating = enforced?.[direction] ?? [];
                const want = { isolated: isolating.length > 0, admittedBy: isolating.filter((key) => runChain(plan, policyChainName(key, direction), pkt) === "accept") };
                const got = decideHere({ direction, pod: local, peerIp, peerPod, protocol, port });
                expect(got, `seed ${seed}: ${direction} ${podKey(local)} ${JSON.stringify(pkt)}`).toEqual(want);
                tally.queries++;
                if (want.isolated) tally.isolated++;
                if (want.admittedBy.length > 0) tally.admitted++;
                if (isolating.some((key) => plan.refused.some((r) => r.policy === key))) tally.refusedIsolating++;
              }
            }
          }
        }
      }
    }
    // The clusters exercise isolation, admission and refusal, not only open pods.
    expect(tally.isolated).toBeGreaterThan(tally.queries / 4);
    expect(tally.admitted).toBeGreaterThan(tally.isolated / 10);
    expect(tally.admitted).toBeLessThan(tally.isolated);
    expect(tally.refusedIsolating).toBeGreaterThan(0);
  }, 120_000);
});

const canonical = (ip: string): string => {
  const p = parseIp(ip);
  return formatIp(p.family, p.value);
};
