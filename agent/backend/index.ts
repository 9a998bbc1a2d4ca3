import type { Registry } from "prom-client";
import type { Backend, NetworkConfig } from "../types.js";
import { auto } from "./auto.js";
import { BgpBackend, type BgpNodeOptions } from "./bgp/bgp-backend.js";
import { Datapath, type BackendDeps } from "./datapath.js";
import { hostGw } from "./host-gw.js";
import type { BackendKind } from "./kind.js";
import { vxlan } from "./vxlan.js";
import { WireguardBackend, type WireguardNodeOptions } from "./wireguard/wireguard-backend.js";

export type { BackendDeps } from "./datapath.js";
export type { BgpNodeOptions } from "./bgp/bgp-backend.js";
export type { WireguardNodeOptions } from "./wireguard/wireguard-backend.js";
export { TWILL_ROUTE_PROTO } from "../../shared/kernel/routes.js";

const BACKENDS: Record<Exclude<NetworkConfig["backend"]["type"], "bgp" | "wireguard">, BackendKind> = { vxlan, "host-gw": hostGw, auto };

/** What the bgp and wireguard backends need beyond the others: this node's settings and the metrics registry. */
export interface CreateBackendDeps extends BackendDeps {
  bgp?: BgpNodeOptions;
  wireguard?: WireguardNodeOptions;
  registry?: Registry;
}

/** The peer datapath for the cluster's backend type (masquerade is agent/masquerade.ts). */
export function createBackend(network: NetworkConfig, deps: CreateBackendDeps): Backend {
  const type = network.backend.type;
  if (type === "bgp") {
    if (!deps.bgp) throw new Error("bgp backend: no BIRD directory given");
    return new BgpBackend(network, deps.bgp, deps);
  }
  if (type === "wireguard") {
    if (!deps.wireguard) throw new Error("wireguard backend: no key file given");
    return new WireguardBackend(network, deps.wireguard, deps);
  }
  const kind = BACKENDS[type];
  if (!kind) throw new Error(`unknown backend type ${JSON.stringify(type)} (want vxlan, host-gw, auto, bgp or wireguard)`);
  return new Datapath(network, kind, deps);
}
