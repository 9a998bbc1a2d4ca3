import type { Backend, NetworkConfig } from "../types.js";
import { Datapath, type BackendDeps, type CarrierConfig } from "./datapath.js";
import { autoPath, hostGwPath, vxlanPath } from "./paths.js";

export type { BackendDeps } from "./datapath.js";
export { TWILL_ROUTE_PROTO } from "../../shared/kernel/routes.js";

const CARRIERS: Record<NetworkConfig["backend"]["type"], CarrierConfig> = {
  vxlan: { type: "vxlan", find: vxlanPath, vtep: true },
  "host-gw": { type: "host-gw", find: hostGwPath, vtep: false },
  auto: { type: "auto", find: autoPath, vtep: true },
};

/** The datapath for the cluster's backend type (masquerade for pod->outside included). */
export function createBackend(network: NetworkConfig, deps: BackendDeps): Backend {
  const carrier = CARRIERS[network.backend.type];
  if (!carrier) throw new Error(`unknown backend type ${JSON.stringify(network.backend.type)} (want vxlan, host-gw or auto)`);
  return new Datapath(network, carrier, deps);
}
