import { describe, expect, it } from "vitest";
import { droppedRecord } from "../../testkit/flows.js";
import { NODE, allPods, client, namespaces, policy, remoteClient, webOnly } from "../../testkit/policy.js";
import { compilePolicies, podCounter } from "../policy/compile.js";
import { podKey, type PodInfo, type PolicySnapshot } from "../policy/types.js";
import { decider, type FlowQuery } from "./decide.js";
import type { ConntrackEvent, DroppedPacket } from "../../shared/kernel/netlink/flow-events.js";
import { fromConntrack, fromDropped, indexEnforced, type ConntrackContext, type DropContext } from "./record.js";

const T = Date.UTC(2026, 0, 2, 12, 3, 4, 123);
const SERVICE = "10.96.0.10";

const podOf = (ip: string): PodInfo | null => allPods.find((p) => p.ips.includes(ip)) ?? null;
const allowHttp = policy("default", "allow-client", { ...webOnly, ingress: [{ peers: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ port: 8080 }] }] });
const snapshot: PolicySnapshot = { policies: [allowHttp], pods: allPods, namespaces };
const ctx = (over: Partial<ConntrackContext> = {}): ConntrackContext => ({ nodeName: NODE, podOf, now: () => T, decide: decider(snapshot), ...over });

function conntrack(src: string, dst: string, dport: number, over: Partial<ConntrackEvent> = {}): ConntrackEvent {
  return {
    kind: "new",
    id: 7,
    family: 4,
    protocol: "TCP",
    src,
    dst,
    sport: 43210,
    dport,
    replySrc: dst,
    replyDst: src,
    replySport: dport,
    replyDport: 43210,
    packets: null,
    bytes: null,
    ...over,
  };
}

describe("fromConntrack", () => {
  it("a connection between two of this node's pods: egress for the client, ingress for the server", () => {
    const records = fromConntrack(conntrack("10.0.0.11", "10.0.0.10", 8080), ctx());
    const source = { ip: "10.0.0.11", port: 43210, pod: "default/client" };
    const destination = { ip: "10.0.0.10", port: 8080, pod: "default/web" };
    const common = { time: "2026-01-02T12:03:04.123Z", event: "start", verdict: "allowed", protocol: "TCP", source, destination };
    expect(records).toEqual([
      { ...common, direction: "egress", pod: "default/client", policies: [] },
      { ...common, direction: "ingress", pod: "default/web", policies: ["default/allow-client"] },
    ]);
  });

  it("a Service's DNAT: the backend is the destination, the Service address the client used is kept", () => {
    const e = conntrack("10.0.1.20", SERVICE, 80, { replySrc: "10.0.0.10", replySport: 8080 });
    const [r, ...rest] = fromConntrack(e, ctx());
    expect(rest).toEqual([]);
    expect(r).toMatchObject({ direction: "ingress", pod: "default/web", destination: { ip: "10.0.0.10", port: 8080, pod: "default/web" }, service: { ip: SERVICE, port: 80 } });
    expect(r!.source).toEqual({ ip: "10.0.1.20", port: 43210, pod: "team-x/client" });
    // The remote client is no policy's peer here: the ruleset would not have let it in, so an
    // allowed connection names no policy (the snapshot has changed since, say).
    expect(r!.policies).toEqual([]);
  });

  it("decides on the port after DNAT and the original source (an SNAT comes after policy)", () => {
    const asked: FlowQuery[] = [];
    const decide = (q: FlowQuery) => (asked.push(q), { isolated: true, admittedBy: ["x/y"] });
    const e = conntrack("10.0.0.11", SERVICE, 80, { replySrc: "10.0.0.10", replySport: 8080, replyDst: "192.168.0.1" });
    expect(fromConntrack(e, ctx({ decide })).map((r) => r.policies)).toEqual([["x/y"], ["x/y"]]);
    expect(asked.map(({ direction, pod, peerIp, peerPod, port }) => [direction, pod.name, peerIp, peerPod?.name, port])).toEqual([
      ["egress", "client", "10.0.0.10", "web", 8080],
      ["ingress", "web", "10.0.0.11", "client", 8080],
    ]);
  });

  it("a pod of another node is named but gets no record of its own", () => {
    const records = fromConntrack(conntrack("10.0.0.11", "10.0.1.20", 443), ctx());
    expect(records.map((r) => [r.direction, r.pod, r.destination.pod])).toEqual([["egress", "default/client", "team-x/client"]]);
  });

  it("an address that is no pod's: the address alone", () => {
    const [r] = fromConntrack(conntrack("10.0.0.11", "192.0.2.1", 443), ctx());
    expect(r!.destination).toEqual({ ip: "192.0.2.1", port: 443, pod: null });
    expect(r!.service).toBeUndefined();
  });

  it("the host's own connections give nothing", () => {
    expect(fromConntrack(conntrack("192.168.0.1", "192.0.2.1", 443), ctx())).toEqual([]);
    expect(fromConntrack(conntrack("192.168.0.1", remoteClient.ips[0]!, 443), ctx())).toEqual([]);
  });

  it("an end carries both directions' packets and bytes, when counted", () => {
    const e = conntrack("10.0.0.11", "192.0.2.1", 443, { kind: "end", packets: [3, 2], bytes: [300, 1200] });
    expect(fromConntrack(e, ctx())[0]).toMatchObject({ event: "end", packets: 5, bytes: 1500 });
    const uncounted = fromConntrack({ ...e, packets: null, bytes: null }, ctx())[0]!;
    expect("packets" in uncounted || "bytes" in uncounted).toBe(false);
  });

  it("ICMP has no ports", () => {
    const e = conntrack("10.0.0.11", "192.0.2.1", 0, { protocol: "ICMP", sport: null, dport: null, replySport: null, replyDport: null });
    const [r] = fromConntrack(e, ctx());
    expect([r!.source.port, r!.destination.port, r!.service]).toEqual([null, null, undefined]);
  });

  it("records keep the fields in the record's order, for the JSON line", () => {
    const e = conntrack("10.0.0.11", SERVICE, 80, { kind: "end", replySrc: "10.0.0.10", replySport: 8080, packets: [1, 1], bytes: [1, 1] });
    expect(Object.keys(fromConntrack(e, ctx())[0]!)).toEqual(["time", "event", "verdict", "direction", "pod", "protocol", "source", "destination", "service", "policies", "packets", "bytes"]);
  });
});

describe("fromDropped", () => {
  const denyWeb = policy("default", "deny-all", webOnly);
  const plan = compilePolicies({ policies: [denyWeb], pods: allPods, namespaces }, { nodeName: NODE });
  const dctx: DropContext = { enforced: indexEnforced(plan), podOf, now: () => T };
  const packet = (prefix: string): DroppedPacket => ({ prefix, family: 4, protocol: "TCP", src: "10.0.0.11", dst: "10.0.0.10", sport: 43210, dport: 80, inIfindex: 3, outIfindex: 4 });

  it("the prefix is the pod's counter: pod, direction and the policies isolating it", () => {
    // droppedRecord: a drop at T, ingress to default/web, by default/deny-all, over TCP.
    const want = droppedRecord({ source: { ip: "10.0.0.11", port: 43210, pod: "default/client" }, destination: { ip: "10.0.0.10", port: 80, pod: "default/web" } });
    expect(want).toMatchObject({ time: new Date(T).toISOString(), direction: "ingress", pod: "default/web", policies: ["default/deny-all"] });
    expect(fromDropped(packet(podCounter("default/web", "ingress").name), dctx)).toEqual(want);
  });

  it("a prefix the plan does not know is null", () => {
    expect(fromDropped(packet(podCounter("default/web", "egress").name), dctx)).toBeNull();
    expect(fromDropped(packet("twill-policy drop"), dctx)).toBeNull();
  });

  it("egress: the destination that is no pod is an address", () => {
    const egressPlan = compilePolicies({ policies: [policy("default", "no-egress", { podSelector: {}, policyTypes: ["egress"] })], pods: allPods, namespaces }, { nodeName: NODE });
    const r = fromDropped({ ...packet(podCounter(podKey(client), "egress").name), dst: "192.0.2.1" }, { ...dctx, enforced: indexEnforced(egressPlan) });
    expect(r).toMatchObject({ direction: "egress", pod: "default/client", destination: { ip: "192.0.2.1", port: 80, pod: null }, policies: ["default/no-egress"] });
  });
});
