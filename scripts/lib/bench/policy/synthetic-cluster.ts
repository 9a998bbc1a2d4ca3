// The NetworkPolicy benchmarks' synthetic cluster: `pods` pods in 50 namespaces and `policies`
// policies, each selecting one app label of its namespace, admitting peers by podSelector,
// namespaceSelector, both, or an ipBlock with except, on numbered and named ports; a quarter
// also restrict egress. `local` pods are on the node under test (NODE), the rest on 100 others.
// Shared by `scripts/bench policy` and `scripts/bench cni --policies`.
import type { NetworkPolicy, PodInfo, PolicySnapshot } from "../../../../agent/policy/types.js";

export const NAMESPACES = 50;
export const APPS = 20;
export const NODE = "node-0";

export interface ClusterSize {
  pods: number;
  policies: number;
  /** Pods on NODE. */
  local: number;
}

export function syntheticCluster({ pods: podCount, policies: policyCount, local }: ClusterSize): PolicySnapshot {
  const pods: PodInfo[] = Array.from({ length: podCount }, (_, i) => ({
    namespace: `ns-${i % NAMESPACES}`,
    name: `pod-${i}`,
    // Spread so every namespace has local pods; the rest on 100 other nodes.
    nodeName: i < local ? NODE : `node-${1 + (i % 100)}`,
    labels: { app: `app-${Math.floor(i / NAMESPACES) % APPS}`, role: i % 3 === 0 ? "client" : "backend" },
    ips: [`10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, `fd00:10:244::${i.toString(16)}`],
    ports: [{ name: "http", port: 8080, protocol: "TCP" }, { name: "metrics", port: 9090, protocol: "TCP" }],
  }));
  const policies: NetworkPolicy[] = Array.from({ length: policyCount }, (_, k) => {
    const ns = `ns-${k % NAMESPACES}`;
    const kind = k % 4;
    const peer =
      kind === 0 ? { podSelector: { matchLabels: { role: "client" } } }
      : kind === 1 ? { namespaceSelector: { matchLabels: { tier: `t${k % 5}` } } }
      : kind === 2 ? { namespaceSelector: { matchLabels: { tier: `t${k % 5}` } }, podSelector: { matchLabels: { role: "client" } } }
      : { ipBlock: { cidr: "10.64.0.0/16", except: [`10.64.${k % 256}.0/24`] } };
    return {
      namespace: ns,
      name: `policy-${k}`,
      podSelector: { matchLabels: { app: `app-${Math.floor(k / NAMESPACES) % APPS}` } },
      policyTypes: k % 4 === 3 ? ["ingress", "egress"] : ["ingress"],
      ingress: [{ peers: [peer], ports: [{ port: 8080 + (k % 3) }, { port: "metrics" }, { protocol: "UDP", port: 5000, endPort: 5100 }] }],
      egress: k % 4 === 3 ? [{ peers: [{ podSelector: { matchLabels: { role: "backend" } } }], ports: [{ port: "http" }] }] : [],
    };
  });
  const namespaces = Array.from({ length: NAMESPACES }, (_, i) => ({ name: `ns-${i}`, labels: { "kubernetes.io/metadata.name": `ns-${i}`, tier: `t${i % 5}` } }));
  return { policies, pods, namespaces };
}
