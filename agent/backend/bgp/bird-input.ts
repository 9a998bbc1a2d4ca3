import { createHash } from "node:crypto";
import { covers, formatCidr, formatIp, lastAddress, overlaps, parseCidrOrNull, parseIp, parseIpOrNull, type Cidr, type Family } from "../../../shared/net/cidr.js";
import { AS_MAX } from "../../config.js";
import { ConfigError } from "../../errors.js";

/**
 * What bird.conf is rendered from, and the checks it passes first (bird-config.ts renders):
 * this node's values must be sound (else a configuration error), and each peer's lease is
 * admitted or refused on its own, so one bad lease never costs another peer its session.
 * The protocol names made here are the only names a peer's data turns into.
 */

/** This node, as bird.conf sees it. Invalid values are a configuration error (thrown). */
export interface BirdLocal {
  /** BIRD's router ID: an IPv4 address, unique in the cluster. */
  routerId: string;
  /** The node's underlay addresses, at most one per family (the public IP among them). */
  addresses: readonly string[];
  /** The underlay device: the only interface whose prefixes resolve BGP next hops. */
  underlayDev: string;
  /** The node's own pod subnets, announced. */
  subnets: readonly string[];
  /** mesh: the cluster's AS; routers: the node's own or its rack's AS. */
  as: number;
}

/** Another node's lease. Invalid values refuse that peer (or that subnet) alone. */
export interface BirdPeer {
  nodeName: string;
  /** Its public underlay address: the mesh session's neighbour. */
  address: string;
  subnets: readonly string[];
  /** routers: the AS its announcements originate from (their AS path's last hop). */
  as?: number;
}

export interface BirdRouter {
  address: string;
  as: number;
}

/**
 * mesh: one iBGP session per peer node over its public address, carrying every pod family.
 * routers: one session per configured router address (so one per family), no node sessions.
 */
export type BirdPeering = { mode: "mesh" } | { mode: "routers"; routers: readonly BirdRouter[] };

export interface BirdConfigInput {
  clusterCIDRs: readonly string[];
  local: BirdLocal;
  peering: BirdPeering;
  /** Every other node's lease (this node's own is ignored by name). */
  peers: readonly BirdPeer[];
  nodeName: string;
}

export interface Refusal {
  /** A node name, a router address, or `local` for what concerns this node. */
  subject: string;
  reason: string;
}

/** BIRD 2.0's SYM_MAX_LEN; a longer symbol fails the whole file ("Symbol too long"). */
const SYMBOL_MAX = 64;
const IMPORT_SUFFIX = "_import4";
/** Room a peer protocol's name leaves for its filters' suffix. */
const PROTOCOL_MAX = SYMBOL_MAX - IMPORT_SUFFIX.length;


/**
 * A mesh peer's protocol name, injective over node names so one peer can never take
 * another's: a DNS name of single-separator labels reads as itself (`node-2.rack1` →
 * `mesh_node_2__rack1`: `-` is `_`, `.` is `__`); anything else (upper case, runs of
 * separators, other characters, too long) is its plain beginning, `___` and a SHA-256 of the
 * whole name, a form the first never produces (it has no `___`).
 */
export function meshProtocolName(nodeName: string): string {
  const head = "mesh_";
  if (/^[a-z0-9]+([.-][a-z0-9]+)*$/.test(nodeName)) {
    const name = head + nodeName.replace(/\./g, "__").replace(/-/g, "_");
    if (name.length <= PROTOCOL_MAX) return name;
  }
  const hash = createHash("sha256").update(nodeName).digest("hex").slice(0, 16);
  const plain = nodeName.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
  return `${head}${plain.slice(0, PROTOCOL_MAX - head.length - 3 - hash.length)}___${hash}`;
}

/** A router session's protocol name: `tor4_10_0_0_1`, `tor6_fd00__1` (canonical text, so one name per address). */
export function routerProtocolName(address: string): string {
  const ip = parseIp(address);
  return `tor${ip.family}_${formatIp(ip.family, ip.value).replace(/[.:]/g, "_")}`;
}

export interface CheckedLocal {
  routerId: string;
  address: Partial<Record<Family, string>>;
  underlayDev: string;
  subnets: Cidr[];
  as: number;
}

export function checkLocal(local: BirdLocal): CheckedLocal {
  const id = parseIpOrNull(local.routerId);
  if (id?.family !== 4) throw new ConfigError(`BGP router ID ${JSON.stringify(local.routerId)} is not an IPv4 address`);
  const address: Partial<Record<Family, string>> = {};
  for (const text of local.addresses) {
    const ip = parseIpOrNull(text);
    if (!ip) throw new ConfigError(`underlay address ${JSON.stringify(text)} is not an IP address`);
    address[ip.family] ??= formatIp(ip.family, ip.value);
  }
  // Linux interface names: at most 15 bytes, no `/` or space; in BIRD's quoted pattern `*` `?` `"` would mean more.
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(local.underlayDev)) {
    throw new ConfigError(`underlay device ${JSON.stringify(local.underlayDev)} is not an interface name BIRD can match`);
  }
  const as = tryAs(local.as);
  if (as === null) throw new ConfigError(`BGP AS ${JSON.stringify(local.as)} of this node is not a 32-bit AS number`);
  return { routerId: formatIp(4, id.value), address, underlayDev: local.underlayDev, subnets: local.subnets.map((s) => configCidr(s, "pod subnet")), as };
}

export function configCidr(text: string, what: string): Cidr {
  const cidr = parseCidrOrNull(text);
  if (!cidr) throw new ConfigError(`${what} ${JSON.stringify(text)} is not a CIDR`);
  return cidr;
}

export interface CheckedPeer {
  nodeName: string;
  protocol: string;
  address: string;
  family: Family;
  subnets: Cidr[];
  /** As published: checked where it is used (routers mode). */
  as: unknown;
}

/**
 * Leases as the filters may use them: each subnet inside a cluster CIDR, clear of this node's
 * own and of every other peer's (two leases on one prefix: one is stale or lying, and which
 * one is not knowable here, so neither is accepted until they settle).
 */
export function admitPeers(input: BirdConfigInput, cluster: Cidr[], local: CheckedLocal, refused: Refusal[]): CheckedPeer[] {
  const out: CheckedPeer[] = [];
  for (const peer of input.peers) {
    if (peer.nodeName === input.nodeName) continue;
    const ip = parseIpOrNull(peer.address);
    if (!ip) {
      refused.push({ subject: peer.nodeName, reason: `address ${JSON.stringify(peer.address)} is not an IP address` });
      continue;
    }
    const subnets: Cidr[] = [];
    for (const text of peer.subnets) {
      const subnet = parseCidrOrNull(text);
      if (!subnet) {
        refused.push({ subject: peer.nodeName, reason: `subnet ${JSON.stringify(text)} is not a CIDR` });
        continue;
      }
      const why = !cluster.some((c) => covers(c, subnet))
        ? "is outside the cluster CIDRs"
        : local.subnets.some((own) => overlaps(own, subnet))
          ? "overlaps this node's own subnet"
          : null;
      if (why) refused.push({ subject: peer.nodeName, reason: `subnet ${formatCidr(subnet)} ${why}` });
      else subnets.push(subnet);
    }
    // Each subnet once, in one order: the filter's text must not change with the lease's.
    const unique = [...new Map(subnets.map((s) => [formatCidr(s), s])).values()].sort(byNetwork);
    const address = formatIp(ip.family, ip.value);
    out.push({ nodeName: peer.nodeName, protocol: meshProtocolName(peer.nodeName), address, family: ip.family, subnets: unique, as: peer.as });
  }
  out.sort((a, b) => (a.nodeName < b.nodeName ? -1 : a.nodeName > b.nodeName ? 1 : 0));
  // Subnets first: a lease refused for its address still claims its prefixes.
  dropOverlappingSubnets(out, refused);
  dropShared(out, (p) => p.nodeName, "node name", refused);
  dropShared(out, (p) => p.protocol, "BGP protocol name", refused);
  dropShared(out, (p) => p.address, "address", refused, Object.values(local.address));
  return out;
}

/** Removes every peer whose `key` another peer (or this node, `taken`) also has. */
function dropShared(peers: CheckedPeer[], key: (p: CheckedPeer) => string, what: string, refused: Refusal[], taken: readonly string[] = []): void {
  const count = new Map<string, number>();
  for (const p of peers) count.set(key(p), (count.get(key(p)) ?? 0) + 1);
  const kept = peers.filter((p) => {
    const k = key(p);
    const withLocal = taken.includes(k);
    if (count.get(k)! < 2 && !withLocal) return true;
    refused.push({ subject: p.nodeName, reason: `${what} ${k} is also ${withLocal ? "this node's" : "another peer's"}` });
    return false;
  });
  peers.splice(0, peers.length, ...kept);
}

/** Refuses, in every lease, each subnet that overlaps another lease's (sorted sweep per family). */
function dropOverlappingSubnets(peers: CheckedPeer[], refused: Refusal[]): void {
  const all = peers.flatMap((peer) => peer.subnets.map((subnet) => ({ peer, subnet })));
  all.sort((a, b) => byNetwork(a.subnet, b.subnet));
  const bad = new Set<(typeof all)[number]>();
  let widest: (typeof all)[number] | undefined;
  for (const item of all) {
    if (widest && widest.subnet.family === item.subnet.family && item.subnet.network <= lastAddress(widest.subnet)) {
      bad.add(widest).add(item);
      if (lastAddress(item.subnet) > lastAddress(widest.subnet)) widest = item;
    } else {
      widest = item;
    }
  }
  for (const { peer, subnet } of bad) {
    refused.push({ subject: peer.nodeName, reason: `subnet ${formatCidr(subnet)} overlaps another peer's lease` });
    peer.subnets = peer.subnets.filter((s) => s !== subnet);
  }
}

export const tryAs = (as: unknown): number | null => (typeof as === "number" && Number.isInteger(as) && as >= 1 && as <= AS_MAX ? as : null);

export const byNetwork = (a: Cidr, b: Cidr): number => a.family - b.family || (a.network < b.network ? -1 : a.network > b.network ? 1 : 0);
