import type { V1LabelSelector, V1Namespace, V1NetworkPolicy, V1NetworkPolicyPeer, V1NetworkPolicyPort, V1Pod } from "@kubernetes/client-node";
import { readPodIp } from "./addresses.js";
import type { Direction, LabelSelector, NamespaceInfo, NetworkPolicy, PodInfo, PolicyPeer, PolicyPort, PolicyRule, Protocol } from "./types.js";

/**
 * The API's objects as the compiler's plain shapes. Pure. Only what enforcement needs is
 * kept, so an update that leaves it alone (a pod's status conditions) changes nothing.
 */

export function policyView(obj: V1NetworkPolicy): NetworkPolicy {
  const spec = obj.spec ?? {};
  const egress = (spec.egress ?? []).map((r) => rule(r.to, r.ports));
  // A listed object comes through the client's model (`_from`); a watch event is the API's
  // JSON as sent (`from`).
  const ingress = (spec.ingress ?? []).map((r) => rule(r._from ?? (r as { from?: V1NetworkPolicyPeer[] }).from, r.ports));
  // The API's default: Ingress always, Egress when the policy has egress rules.
  const declared = (spec.policyTypes ?? []).map((t) => t.toLowerCase()).filter((t): t is Direction => t === "ingress" || t === "egress");
  const policyTypes: Direction[] = declared.length > 0 ? declared : egress.length > 0 ? ["ingress", "egress"] : ["ingress"];
  return {
    namespace: obj.metadata?.namespace ?? "default",
    name: obj.metadata?.name ?? "",
    podSelector: selector(spec.podSelector) ?? {},
    policyTypes,
    ingress,
    egress,
  };
}

/** A pod on the pod network, or null: hostNetwork pods and finished pods take no part. */
export function podView(obj: V1Pod): PodInfo | null {
  if (obj.spec?.hostNetwork) return null;
  const phase = obj.status?.phase;
  // A finished pod's address may already belong to a new pod.
  if (phase === "Succeeded" || phase === "Failed") return null;
  const listed = (obj.status?.podIPs ?? []).map((p) => p.ip);
  if (listed.length === 0 && obj.status?.podIP) listed.push(obj.status.podIP);
  // The apiserver validates pod addresses as it does ipBlocks (ParseIPSloppy); what is no
  // address at all is left out here, before it can reach the ruleset's text.
  const ips = [...new Set(listed.map((ip) => readPodIp(ip as string)).filter((ip): ip is string => ip !== undefined))];
  const deleted = obj.metadata?.deletionTimestamp;
  const created = obj.metadata?.creationTimestamp ? new Date(obj.metadata.creationTimestamp).getTime() : NaN;
  return {
    namespace: obj.metadata?.namespace ?? "default",
    name: obj.metadata?.name ?? "",
    ...(obj.metadata?.uid ? { uid: obj.metadata.uid } : {}),
    ...(obj.spec?.nodeName ? { nodeName: obj.spec.nodeName } : {}),
    labels: { ...(obj.metadata?.labels ?? {}) },
    ips,
    ports: (obj.spec?.containers ?? []).flatMap((c) =>
      (c.ports ?? []).map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.containerPort, protocol: protocol(p.protocol) })),
    ),
    // A listed object's dates are Dates (the client's model), a watch event's are strings.
    ...(deleted ? { terminating: true } : {}),
    ...(Number.isFinite(created) ? { createdAt: created } : {}),
  };
}

export function namespaceView(obj: V1Namespace): NamespaceInfo {
  return { name: obj.metadata?.name ?? "", labels: { ...(obj.metadata?.labels ?? {}) } };
}

function rule(peers: V1NetworkPolicyPeer[] | undefined, ports: V1NetworkPolicyPort[] | undefined): PolicyRule {
  const out: PolicyRule = {};
  if (peers && peers.length > 0) out.peers = peers.map(peer);
  if (ports && ports.length > 0) out.ports = ports.map(port);
  return out;
}

function peer(p: V1NetworkPolicyPeer): PolicyPeer {
  const out: PolicyPeer = {};
  const pods = selector(p.podSelector);
  const namespaces = selector(p.namespaceSelector);
  if (pods) out.podSelector = pods;
  if (namespaces) out.namespaceSelector = namespaces;
  if (p.ipBlock) out.ipBlock = { cidr: p.ipBlock.cidr, ...(p.ipBlock.except?.length ? { except: p.ipBlock.except } : {}) };
  return out;
}

function port(p: V1NetworkPolicyPort): PolicyPort {
  const out: PolicyPort = { protocol: protocol(p.protocol) };
  if (p.port !== undefined && p.port !== null) out.port = p.port as number | string;
  if (p.endPort !== undefined && p.endPort !== null) out.endPort = p.endPort;
  return out;
}

function selector(s: V1LabelSelector | undefined): LabelSelector | undefined {
  if (!s) return undefined;
  const out: LabelSelector = {};
  if (s.matchLabels) out.matchLabels = { ...s.matchLabels };
  if (s.matchExpressions) {
    out.matchExpressions = s.matchExpressions.map((e) => ({
      key: e.key,
      operator: e.operator as NonNullable<LabelSelector["matchExpressions"]>[number]["operator"],
      ...(e.values ? { values: [...e.values] } : {}),
    }));
  }
  return out;
}

const protocol = (p: string | undefined): Protocol => (p === "UDP" || p === "SCTP" ? p : "TCP");
