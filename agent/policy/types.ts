/**
 * NetworkPolicy enforcement works on these plain shapes, not on the API's objects: the
 * compiler is a pure function of them, and tests (and the privileged testbed) feed them
 * directly through the same seam the Kubernetes watch uses (PolicyEngine.update).
 */

export interface LabelSelectorRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values?: string[];
}

/** metav1.LabelSelector: both parts must match; an empty selector matches everything. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export type Protocol = "TCP" | "UDP" | "SCTP";

export interface PolicyPort {
  /** Default TCP. */
  protocol?: Protocol;
  /** A number, or the name of a container port; absent: every port of the protocol. */
  port?: number | string;
  /** With a numeric port: the last port of a range. */
  endPort?: number;
}

export interface PolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

/** One `ingress[]` (peers = from) or `egress[]` (peers = to) rule. */
export interface PolicyRule {
  /** Absent or empty: any peer. */
  peers?: PolicyPeer[];
  /** Absent or empty: any port and protocol. */
  ports?: PolicyPort[];
}

export type Direction = "ingress" | "egress";

export interface NetworkPolicy {
  namespace: string;
  name: string;
  podSelector: LabelSelector;
  /** Resolved: the API's default (Ingress, plus Egress when there are egress rules) applied. */
  policyTypes: Direction[];
  ingress: PolicyRule[];
  egress: PolicyRule[];
}

export interface ContainerPort {
  name?: string;
  port: number;
  protocol: Protocol;
}

export interface PodInfo {
  namespace: string;
  name: string;
  /** metadata.uid: what the IPAM store records for the pod's reservations. */
  uid?: string;
  /** Where it is scheduled; only this node's pods are isolated by this node. */
  nodeName?: string;
  labels: Record<string, string>;
  /**
   * status.podIPs, empty until the runtime reports them; for this node's pods also the
   * addresses the IPAM store holds for them, known from the moment of the reservation.
   */
  ips: string[];
  ports: ContainerPort[];
  /** metadata.deletionTimestamp is set: its address may already be a new pod's. */
  terminating?: boolean;
  /** metadata.creationTimestamp, Unix ms. */
  createdAt?: number;
}

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
}

/** Everything the compiler reads; the watch hands over a whole snapshot on every change. */
export interface PolicySnapshot {
  policies: NetworkPolicy[];
  /** Pods that have addresses on the pod network (no hostNetwork pods, no finished pods). */
  pods: PodInfo[];
  namespaces: NamespaceInfo[];
}

export const podKey = (p: { namespace: string; name: string }): string => `${p.namespace}/${p.name}`;
