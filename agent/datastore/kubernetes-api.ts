import { ApiException, KubeConfig, PatchStrategy, ServerConfiguration, createConfiguration, setHeaderOptions } from "@kubernetes/client-node";
import { DatastoreError } from "../errors.js";

/**
 * Reaching the Kubernetes API: the kubeconfig, clients with a deadline on every request, and
 * what an error answered. The datastore, the NetworkPolicy watch and the IPAM pod source share
 * these.
 */

/**
 * Longest wait for one API call. The client sets no deadline, so an apiserver that stops
 * answering without closing the connection would stall renewals until the lease lapsed.
 */
export const REQUEST_TIMEOUT_MS = 30_000;

/** API clients like KubeConfig.makeApiClient's, with a deadline on every request. */
export function apiClient<T>(kc: KubeConfig, api: new (config: ReturnType<typeof createConfiguration>) => T, timeoutMs: number): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new DatastoreError("use the kubeconfig", "it has no current cluster");
  return new api(
    createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: kc },
      promiseMiddleware: [
        {
          pre: async (ctx) => {
            ctx.setSignal(AbortSignal.timeout(timeoutMs));
            return ctx;
          },
          post: async (res) => res,
        },
      ],
    }),
  );
}

/** Loads a kubeconfig file, or else KUBECONFIG / ~/.kube/config / the in-cluster service account. */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

export const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
export const strategicMergePatch = setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch);

/** The HTTP status of an API error; undefined for a network failure or a timeout. */
export const statusCode = (err: unknown): number | undefined => (err instanceof ApiException ? err.code : undefined);
