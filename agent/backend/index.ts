import type { Backend, NetworkConfig } from "../types.js";
import { auto } from "./auto.js";
import { Datapath, type BackendDeps } from "./datapath.js";
import { hostGw } from "./host-gw.js";
import type { BackendKind } from "./kind.js";
import { vxlan } from "./vxlan.js";

export type { BackendDeps } from "./datapath.js";
export { TWILL_ROUTE_PROTO } from "../../shared/kernel/routes.js";

const BACKENDS: Record<NetworkConfig["backend"]["type"], BackendKind> = { vxlan, "host-gw": hostGw, auto };

/** The peer datapath for the cluster's backend type (masquerade is agent/masquerade.ts). */
export function createBackend(network: NetworkConfig, deps: BackendDeps): Backend {
  const kind = BACKENDS[network.backend.type];
  if (!kind) throw new Error(`unknown backend type ${JSON.stringify(network.backend.type)} (want vxlan, host-gw or auto)`);
  return new Datapath(network, kind, deps);
}
