import type { DatastoreKind } from "../datastore/index.js";
import type { PodsView } from "./leaks.js";

/**
 * The pods running on this node, as the leak decision needs them: the API's (pods.ts, the
 * kubernetes datastore only), or none.
 */
export interface PodSource {
  view(): Promise<PodsView>;
}

/** etcd and local datastores: no pods to ask. */
export function noPods(kind: DatastoreKind): PodSource {
  const reason = `the ${kind} datastore has no pods: only reservations from before the last boot are released`;
  return { view: async () => ({ kind: "none", reason }) };
}
