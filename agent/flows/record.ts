import type { DropCounter, PolicyPlan } from "../policy/plan.js";
import { podKey, type Direction, type PodInfo } from "../policy/types.js";
import type { Decider } from "./decide.js";
import type { ConntrackEvent, DroppedPacket, FlowProtocol } from "../../shared/kernel/netlink/flow-events.js";

/**
 * A flow as `twilld flows` shows it: a connection of one of this node's pods starting or
 * ending (from conntrack), or a packet policy dropped (from the pod chain's nflog rule), with
 * who talked to whom and which policies decided. Made from kernel events and the current
 * policy state, here, purely; reading the kernel and serving the records is the caller's.
 */

export interface FlowEndpoint {
  ip: string;
  port: number | null;
  /** "ns/name" when the address is a pod's. */
  pod: string | null;
}

export interface FlowRecord {
  /** ISO 8601, from the clock the caller passes in. */
  time: string;
  event: "start" | "end" | "drop";
  verdict: "allowed" | "dropped";
  /** Relative to `pod`, this node's pod. */
  direction: Direction;
  /** "ns/name". */
  pod: string;
  protocol: FlowProtocol;
  source: FlowEndpoint;
  destination: FlowEndpoint;
  /** The Service address the client used, when conntrack shows a DNAT. */
  service?: { ip: string; port: number | null };
  /**
   * ns/name of the policies that decided: allowed → those with a rule admitting it; dropped →
   * those isolating the pod in that direction (none admitted it); [] → no policy isolates the
   * pod (allowed by default).
   */
  policies: string[];
  /** On "end", when the kernel counts: both directions together. */
  packets?: number;
  bytes?: number;
}

export interface ConntrackContext {
  nodeName: string;
  /** The pod holding an address, of any node; null for any other address. */
  podOf(ip: string): PodInfo | null;
  /** Unix ms. */
  now(): number;
  /** Which policies admit a connection, under the current policy snapshot. */
  decide: Decider;
}

/**
 * A record per end of the connection that is one of this node's pods: a connection between two
 * of them gives two, egress for the client and ingress for the server. The server is the reply
 * tuple's source, which differs from the original destination when a Service's DNAT chose it;
 * `service` then says what the client asked for. Policy saw the original source (an SNAT
 * happens after the forward hook), so that is the ingress side's peer. A connection touching
 * none of this node's pods (the host's own) gives none.
 */
export function fromConntrack(e: ConntrackEvent, ctx: ConntrackContext): FlowRecord[] {
  const dnat = e.replySrc !== e.dst || e.replySport !== e.dport;
  const source: FlowEndpoint = { ip: e.src, port: e.sport, pod: null };
  const destination: FlowEndpoint = dnat ? { ip: e.replySrc, port: e.replySport, pod: null } : { ip: e.dst, port: e.dport, pod: null };
  const client = ctx.podOf(source.ip);
  const server = ctx.podOf(destination.ip);
  source.pod = client && podKey(client);
  destination.pod = server && podKey(server);

  const base = {
    time: new Date(ctx.now()).toISOString(),
    event: e.kind === "new" ? ("start" as const) : ("end" as const),
    verdict: "allowed" as const,
  };
  const service = dnat ? { service: { ip: e.dst, port: e.dport } } : {};
  const counts = {
    ...(e.kind === "end" && e.packets ? { packets: e.packets[0] + e.packets[1] } : {}),
    ...(e.kind === "end" && e.bytes ? { bytes: e.bytes[0] + e.bytes[1] } : {}),
  };
  const out: FlowRecord[] = [];
  const side = (direction: Direction, pod: PodInfo, peer: FlowEndpoint, peerPod: PodInfo | null): void => {
    const d = ctx.decide({ direction, pod, peerIp: peer.ip, peerPod, protocol: e.protocol, port: destination.port });
    out.push({ ...base, direction, pod: podKey(pod), protocol: e.protocol, source, destination, ...service, policies: d.isolated ? d.admittedBy : [], ...counts });
  };
  if (client && client.nodeName === ctx.nodeName) side("egress", client, destination, server);
  if (server && server.nodeName === ctx.nodeName) side("ingress", server, source, client);
  return out;
}

export interface DropContext {
  /** The plan in force, indexed: which counter names which pod and direction, and the policies isolating it. */
  enforced: EnforcedIndex;
  podOf(ip: string): PodInfo | null;
  now(): number;
}

/** The plan in force, looked up by a drop's prefix in constant time (thousands of counters). */
export interface EnforcedIndex {
  counter(name: string): DropCounter | undefined;
  /** The policies isolating `pod` in `direction`. */
  isolating(pod: string, direction: Direction): string[];
}

/** Indexes a plan's counters and pods, once per plan. Pure. */
export function indexEnforced(plan: Pick<PolicyPlan, "counters" | "pods">): EnforcedIndex {
  const counters = new Map(plan.counters.map((c) => [c.name, c]));
  const pods = new Map(plan.pods.map((p) => [p.pod, p]));
  return { counter: (name) => counters.get(name), isolating: (pod, d) => pods.get(pod)?.[d] ?? [] };
}

/**
 * The record of a dropped packet; its prefix is the pod chain's counter name, which the plan
 * maps to the pod and direction. Null for a prefix the plan does not know (the rule of a plan
 * since replaced, or another writer to the group): the caller counts those.
 */
export function fromDropped(p: DroppedPacket, ctx: DropContext): FlowRecord | null {
  const counter = ctx.enforced.counter(p.prefix);
  if (!counter) return null;
  const endpoint = (ip: string, port: number | null): FlowEndpoint => {
    const pod = ctx.podOf(ip);
    return { ip, port, pod: pod && podKey(pod) };
  };
  return {
    time: new Date(ctx.now()).toISOString(),
    event: "drop",
    verdict: "dropped",
    direction: counter.direction,
    pod: counter.pod,
    protocol: p.protocol,
    source: endpoint(p.src, p.sport),
    destination: endpoint(p.dst, p.dport),
    policies: ctx.enforced.isolating(counter.pod, counter.direction),
  };
}
