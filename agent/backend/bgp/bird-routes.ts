import { covers, formatCidr, overlaps, parseCidrOrNull, parseIpOrNull, type Cidr } from "../../../shared/net/cidr.js";
import type { RouteSpec } from "../../../shared/kernel/routes.js";
import type { BirdRoute, BirdStatus } from "./bird-answers.js";
import { admitPeers, byNetwork, checkLocal, configCidr, routerProtocolName, tryAs, type BirdConfigInput, type CheckedPeer } from "./bird-input.js";

/**
 * The kernel routes twilld installs (proto 150, through datapath.ts) from the routes BIRD
 * learned: `dst via <BIRD's first hop> dev <underlay device>`. BIRD resolves a peer's BGP next
 * hop to the first hop on the underlay (Linux takes no recursive `via`), so its `via … on …`
 * is what goes in the kernel.
 *
 * bird.conf's import filters already accept only leased prefixes from their owner, and every
 * route is checked here again against the same data the file was rendered from: a file BIRD
 * kept after refusing a newer one, a filter bug or a hand edit must not route another node's
 * pods to a hostile peer. A route that fails is left out and reported with its reason.
 */

export interface RefusedRoute {
  prefix: string;
  /** BIRD's protocol the route came from (`mesh_node_2`, `tor4_192_0_2_1`). */
  protocol: string;
  via: string | null;
  dev: string | null;
  reason: string;
}

export interface BirdRoutePlan {
  /** One per accepted prefix, sorted by family and network: the datapath's desired routes. */
  routes: RouteSpec[];
  refused: RefusedRoute[];
}

/** The tables BIRD's BGP sessions import into (the underlay tables hold read-only kernel routes). */
const MASTER_TABLES = new Set(["master4", "master6", ""]);
/** This node's own announcements (bird-config.ts's `static` protocols): in BIRD's table, never installed. */
const OWN_PROTOCOLS = new Set(["twill_pods4", "twill_pods6"]);

/** Who may announce what, as bird.conf's filters decide it. */
interface Owners {
  /** The lease holding a prefix, by canonical prefix. */
  byPrefix: Map<string, CheckedPeer>;
  /** mesh: protocol name → the peer node of that session. */
  meshPeer: Map<string, CheckedPeer>;
  /** routers: protocol names of the configured routers. */
  routers: Set<string>;
}

/**
 * The routes to install for `routes` (`show route all`, parsed: the AS paths are needed in
 * routers mode) given `config`, the input bird.conf was rendered from. A prefix is installed
 * only when it is leased (bird-input.ts's admission: inside the cluster CIDRs, clear of this
 * node's subnets and of other leases) to the node the route came from (mesh: the session's peer;
 * routers: the lease whose AS the AS path originates from), as a unicast route whose first hop
 * is on the underlay device and of the prefix's family. Several routes for one prefix: BIRD's
 * best one if it passes, else the first that does.
 * Throws the ConfigError of bird-config.ts when this node's own values are invalid.
 */
export function planBirdRoutes(routes: readonly BirdRoute[], config: BirdConfigInput): BirdRoutePlan {
  const cluster = config.clusterCIDRs.map((c) => configCidr(c, "cluster CIDR"));
  const local = checkLocal(config.local);
  // The leases' own refusals are bird-config.ts's to report.
  const peers = admitPeers(config, cluster, local, []);
  const owners: Owners = {
    byPrefix: new Map(peers.flatMap((p) => p.subnets.map((s) => [formatCidr(s), p] as const))),
    meshPeer: new Map(config.peering.mode === "mesh" ? peers.map((p) => [p.protocol, p] as const) : []),
    routers: new Set(config.peering.mode === "routers" ? config.peering.routers.filter((r) => parseIpOrNull(r.address)).map((r) => routerProtocolName(r.address)) : []),
  };

  const refused: RefusedRoute[] = [];
  const chosen = new Map<string, { cidr: Cidr; route: RouteSpec }>();
  const ordered = [...routes].sort((a, b) => Number(b.primary) - Number(a.primary));
  for (const route of ordered) {
    if (!MASTER_TABLES.has(route.table) || OWN_PROTOCOLS.has(route.protocol) || isEcho(route, config, local.subnets)) continue;
    const checked = checkRoute(route, config, cluster, local.subnets, owners);
    if (typeof checked === "string") {
      refused.push({ prefix: route.prefix, protocol: route.protocol, via: route.via, dev: route.dev, reason: checked });
      continue;
    }
    const dst = formatCidr(checked);
    if (!chosen.has(dst)) chosen.set(dst, { cidr: checked, route: { dst, via: route.via!, dev: route.dev!, onlink: false } });
  }
  const installed = [...chosen.values()].sort((a, b) => byNetwork(a.cidr, b.cidr)).map((c) => c.route);
  return { routes: installed, refused };
}

/**
 * A router sending this node's own subnet back (eBGP passes a route on to every peer, its
 * sender included; `allow local as` keeps BIRD from dropping it as a loop): the AS path ends
 * with this node's AS. Neither installed nor a refusal worth reporting. The same prefix from
 * any other origin is reported.
 */
function isEcho(route: BirdRoute, config: BirdConfigInput, own: Cidr[]): boolean {
  if (config.peering.mode !== "routers" || route.asPath === null || route.asPath.at(-1) !== config.local.as) return false;
  const prefix = parseCidrOrNull(route.prefix);
  return prefix !== null && own.some((s) => s.family === prefix.family && s.network === prefix.network && s.prefix === prefix.prefix);
}

/** The route's prefix when it may be installed, else why not. */
function checkRoute(route: BirdRoute, config: BirdConfigInput, cluster: Cidr[], own: Cidr[], owners: Owners): Cidr | string {
  const prefix = parseCidrOrNull(route.prefix);
  if (!prefix) return "is not a prefix";
  if (route.kind !== "unicast") return `is a ${route.kind} route, not a unicast one`;
  if (!cluster.some((c) => covers(c, prefix))) return "is outside the cluster CIDRs";
  if (own.some((s) => overlaps(s, prefix))) return "overlaps this node's own subnet";

  const lease = owners.byPrefix.get(formatCidr(prefix));
  const owner = config.peering.mode === "mesh" ? meshOwner(route, lease, owners) : routersOwner(route, lease, owners, config.local.as);
  if (owner !== null) return owner;

  if (route.via === null) return "has no first hop";
  if (route.dev !== config.local.underlayDev) return `leaves by ${route.dev ?? "no device"}, not by the underlay device ${config.local.underlayDev}`;
  const via = parseIpOrNull(route.via);
  if (!via) return `first hop ${route.via} is not an address`;
  if (via.family !== prefix.family) return `first hop ${route.via} is not IPv${prefix.family}`;
  return prefix;
}

/** Mesh: the prefix must be leased to the node the session is with. Null when it is. */
function meshOwner(route: BirdRoute, lease: CheckedPeer | undefined, owners: Owners): string | null {
  const peer = owners.meshPeer.get(route.protocol);
  if (!peer) return `came from ${route.protocol}, not a mesh session of this node`;
  if (lease !== peer) return `is not leased to ${peer.nodeName}, the session's peer${lease ? ` (it is ${lease.nodeName}'s)` : ""}`;
  return null;
}

/**
 * Routers: the prefix must be leased to the node whose AS the path originates from (its last
 * hop; an empty path is this node's own AS, iBGP within it). Null when it is.
 */
function routersOwner(route: BirdRoute, lease: CheckedPeer | undefined, owners: Owners, localAs: number): string | null {
  if (!owners.routers.has(route.protocol)) return `came from ${route.protocol}, not a router session of this node`;
  if (!lease) return "is leased to no other node";
  const leaseAs = tryAs(lease.as);
  if (leaseAs === null) return `is leased to ${lease.nodeName}, whose AS is unknown`;
  if (route.asPath === null) return "has no AS path to tell its origin by";
  const last = route.asPath.at(-1);
  const origin = last === undefined ? localAs : last;
  if (typeof origin !== "number") return `originates from an AS set, not from ${lease.nodeName}'s AS ${leaseAs}`;
  if (origin !== leaseAs) return `originates from AS ${origin}, not from AS ${leaseAs} of ${lease.nodeName}, whose lease it is`;
  return null;
}

/**
 * Whether the datapath keeps every route it installed instead of pruning what BIRD's table
 * lacks: BIRD not answering (`null`: dead, restarting, or not started yet), in graceful restart
 * recovery (0024: started with `-R`, its table still filling while the peers hold on to this
 * node's routes), or shutting down. Pruning then would cut traffic the peers still forward.
 */
export function keepInstalled(status: BirdStatus | null): boolean {
  return status === null || status.gracefulRestart || /shutdown/i.test(status.state);
}

/**
 * The routes to hand to the datapath: the plan, plus, while keepInstalled(status), every
 * installed route whose destination the plan has no route for (a planned route replaces an
 * installed one of the same destination: BIRD may have a new first hop).
 */
export function routesToInstall(planned: readonly RouteSpec[], installed: readonly RouteSpec[], status: BirdStatus | null): RouteSpec[] {
  if (!keepInstalled(status)) return [...planned];
  const dsts = new Set(planned.map((r) => r.dst));
  return [...planned, ...installed.filter((r) => !dsts.has(r.dst))];
}
