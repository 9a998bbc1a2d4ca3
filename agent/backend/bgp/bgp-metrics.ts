import { Gauge, type Registry } from "prom-client";
import type { BgpReport } from "./bgp-report.js";

/**
 * The bgp backend's Prometheus metrics, per session (one per peer node in a mesh, one per
 * router and family otherwise: bounded by the cluster's size) and per family. Set whole from
 * each poll's report, so a session that went away leaves no series behind.
 */
export class BgpMetrics {
  private readonly up: Gauge<"peer">;
  private readonly since: Gauge<"peer">;
  private readonly prefixes: Gauge<"peer" | "family" | "direction">;
  readonly refusedRoutes: Gauge;
  private readonly refusedConfig: Gauge;
  private readonly birdUp: Gauge;
  private readonly birdRestarts: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.up = new Gauge({ name: "twill_bgp_session_up", help: "1 while the BGP session with the peer (node or router) is established", labelNames: ["peer"], registers });
    this.since = new Gauge({ name: "twill_bgp_session_state_seconds", help: "How long the BGP session has been in its current state", labelNames: ["peer"], registers });
    this.prefixes = new Gauge({
      name: "twill_bgp_prefixes",
      help: "Prefixes per session and family: received (accepted), filtered (refused by the import filter) or announced",
      labelNames: ["peer", "family", "direction"],
      registers,
    });
    this.refusedRoutes = new Gauge({ name: "twill_bgp_routes_refused", help: "Routes BIRD learned that twilld did not install (not leased to the node they came from, outside the cluster)", registers });
    this.refusedConfig = new Gauge({ name: "twill_bgp_config_refusals", help: "Leases, routers or local values left out of bird.conf", registers });
    this.birdUp = new Gauge({ name: "twill_bird_up", help: "1 while this node's BIRD answers on its control socket", registers });
    this.birdRestarts = new Gauge({ name: "twill_bird_restarts", help: "Times twilld restarted BIRD since it started", registers });
  }

  update(r: BgpReport, answering: boolean): void {
    this.up.reset();
    this.since.reset();
    this.prefixes.reset();
    for (const s of r.sessions) {
      this.up.set({ peer: s.peer }, s.up ? 1 : 0);
      if (s.sinceMs !== null) this.since.set({ peer: s.peer }, s.sinceMs / 1000);
      for (const c of s.channels) {
        const family = `ipv${c.family}`;
        this.prefixes.set({ peer: s.peer, family, direction: "received" }, c.received);
        this.prefixes.set({ peer: s.peer, family, direction: "filtered" }, c.filtered);
        this.prefixes.set({ peer: s.peer, family, direction: "announced" }, c.announced);
      }
    }
    this.refusedRoutes.set(r.refusedRoutes.length);
    this.refusedConfig.set(r.refusedConfig.length);
    this.birdUp.set(answering ? 1 : 0);
    this.birdRestarts.set(r.bird.restarts);
  }
}
