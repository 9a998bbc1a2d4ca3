import { nodeAnnotations, type NodeView } from "../../agent/datastore/kubernetes-node-view.js";
import { leaseName, type LeaseView } from "../../agent/datastore/kubernetes-lease-view.js";

/**
 * Node and Lease views as plain data, as the kubernetes datastore's pure functions take them:
 * a node that published twill's annotations, a twill Lease held by a node.
 */

export const NOW = 1_000_000;
export const backend = { type: "vxlan", vtepMAC: "02:00:00:00:00:01", vni: 1 };

/** A node that published backend, with its leased subnets listed when given. */
export const node = (name: string, extra: Partial<NodeView> = {}, leased?: string[]): NodeView => ({
  name,
  podCIDRs: [],
  annotations: { ...(nodeAnnotations("192.0.2.1", backend, leased ?? null) as Record<string, string>) },
  ...extra,
});
// nodeAnnotations gives null for "no leased subnets"; a Node never shows a null annotation.
export const clean = (n: NodeView): NodeView => ({
  ...n,
  annotations: Object.fromEntries(Object.entries(n.annotations).filter(([, v]) => v !== null)),
});

/** A twill Lease of `subnet` held by `holder`, renewed at `renewTime`. */
export const lease = (subnet: string, holder: string | undefined, renewTime = NOW - 1_000, durationSeconds = 60): LeaseView => ({
  name: leaseName(subnet),
  subnet,
  managed: true,
  ...(holder ? { holder } : {}),
  durationSeconds,
  renewTime,
  acquireTime: renewTime - 5_000,
  transitions: 0,
});
