import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { nodeBgpSettings, type BgpNodeSettings } from "./bgp-node.js";
import { apiClient } from "./datastore/kubernetes-api.js";
import { describeApiError } from "./datastore/kubernetes-informer.js";

/** Reads the Node's annotations and labels through the API. */
export function kubernetesBgpSettings(kc: KubeConfig, nodeName: string): () => Promise<BgpNodeSettings> {
  return async () => {
    const core = apiClient(kc, CoreV1Api, 30_000);
    let meta: { annotations?: Record<string, string>; labels?: Record<string, string> };
    try {
      meta = (await core.readNode({ name: nodeName })).metadata ?? {};
    } catch (err) {
      throw new Error(`read Node "${nodeName}" for its BGP settings: ${describeApiError(err)}`);
    }
    return nodeBgpSettings(meta);
  };
}
