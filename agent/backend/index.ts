// Placeholder so the agent builds while the backends are written; replaced by their owner.
import type { IpRoute } from "../../shared/kernel/iproute.js";
import type { Logger } from "../../shared/log.js";
import type { Backend, NetworkConfig } from "../types.js";

export interface BackendDeps {
  /** iproute2 bound to the node's namespace. */
  ip: IpRoute;
  logger: Logger;
}

/** The datapath for the cluster's backend type (masquerade for pod->outside included). */
export function createBackend(_network: NetworkConfig, _deps: BackendDeps): Backend {
  throw new Error("backends not built yet");
}
