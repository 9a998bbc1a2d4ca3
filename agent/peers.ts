import { stableVtepMac } from "../shared/kernel/vxlan.js";
import { AS_MAX } from "./config.js";
import { canonicalCidrOrSelf, contains, covers, formatCidr, isLinkLocal6, parseCidr, parseIp, type Cidr, type Family, type Ip } from "../shared/net/cidr.js";
import { isNodeName } from "./leases.js";
import { checkPublicKey } from "./backend/wireguard/keys.js";
import type { NetworkConfig, NodeLease, PeerError } from "./types.js";

/**
 * Peer admission: the trust boundary between what the datastore holds and what this node
 * programs. Any node (or anyone holding a node's credentials, or a hand edit) can write a peer
 * record; a record that does not describe a sound peer is refused for that peer alone, with
 * the reason, and never reaches the datapath. Every other peer keeps being programmed.
 *
 * A peer is admitted when:
 * - its name is a node name, its public IP a unicast address outside the cluster network;
 * - each subnet is canonical, lies inside the cluster CIDR of its family, has that family's
 *   node subnet length (this node's own subnet's, which kube-controller-manager or the pool
 *   chose; the net-conf SubnetLen where this node has none of that family), one per family;
 * - its backend data has the right types and ranges, and a VTEP MAC, when it has one, is the
 *   one derived from its name and VNI: a forged MAC would take over another node's FDB entry;
 * - none of its subnets is claimed by this node or by a peer that claimed it earlier: the
 *   earliest claim wins (ties by name), so a forged record never unseats the real owner.
 */

export interface Admission {
  admitted: NodeLease[];
  /** Records refused, one per peer, with the reason. */
  refused: PeerError[];
}

interface Rules {
  clusters: Cidr[];
  lengths: Partial<Record<Family, number>>;
  vni: number;
}

export class PeerAdmission {
  private rulesKey = "";
  private rules: Rules | null = null;
  /** A record's own problem (everything but overlaps), remembered per lease object. */
  private problems = new WeakMap<NodeLease, string | null>();

  constructor(private readonly network: NetworkConfig) {}

  /** The peers of `own` (the node's lease) in `leases` that may be programmed, and those refused. */
  admit(leases: readonly NodeLease[], own: NodeLease): Admission {
    const rules = this.rulesFor(own);
    const refused: PeerError[] = [];
    const sound: NodeLease[] = [];
    for (const lease of leases) {
      if (lease.nodeName === own.nodeName) continue;
      let problem = this.problems.get(lease);
      if (problem === undefined) {
        problem = recordProblem(lease, rules);
        this.problems.set(lease, problem);
      }
      if (problem) refused.push({ peer: lease.nodeName, message: problem });
      else sound.push(lease);
    }
    const claimed = new Map<string, string>(own.subnets.map((s) => [canonicalCidrOrSelf(s), own.nodeName]));
    const admitted: NodeLease[] = [];
    for (const lease of sound.sort(claimOrder)) {
      const clash = lease.subnets.find((s) => claimed.has(s));
      if (clash !== undefined) {
        const holder = claimed.get(clash)!;
        const who = holder === own.nodeName ? "this node" : `node ${holder}, which claimed it earlier`;
        refused.push({ peer: lease.nodeName, message: `subnet ${clash} is claimed by ${who}` });
        continue;
      }
      for (const s of lease.subnets) claimed.set(s, lease.nodeName);
      admitted.push(lease);
    }
    refused.sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0));
    return { admitted, refused };
  }

  private rulesFor(own: NodeLease): Rules {
    const lengths: Partial<Record<Family, number>> = { ...this.network.subnetLen };
    for (const s of own.subnets) {
      const c = parseCidr(s);
      lengths[c.family] = c.prefix;
    }
    const key = JSON.stringify(lengths);
    if (this.rules && key === this.rulesKey) return this.rules;
    this.rulesKey = key;
    this.problems = new WeakMap();
    this.rules = { clusters: this.network.clusterCIDRs.map(parseCidr), lengths, vni: this.network.backend.vni };
    return this.rules;
  }
}

/** Earliest claim first; a record without a claim time after every one with, then by name. */
function claimOrder(a: NodeLease, b: NodeLease): number {
  const ta = a.acquiredAt ?? Infinity;
  const tb = b.acquiredAt ?? Infinity;
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.nodeName < b.nodeName ? -1 : a.nodeName > b.nodeName ? 1 : 0;
}

const quote = (v: unknown): string => {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
};

/** Why a record cannot describe a peer, by itself (overlaps aside); null when it can. */
function recordProblem(lease: NodeLease, rules: Rules): string | null {
  if (typeof lease.nodeName !== "string" || !isNodeName(lease.nodeName)) return `node name ${quote(lease.nodeName)} is not a valid node name`;
  const ipProblem = unicastProblem("public IP", lease.publicIP, rules.clusters);
  if (ipProblem) return ipProblem;
  return subnetsProblem(lease.subnets, rules) ?? backendProblem(lease, rules);
}

function subnetsProblem(subnets: unknown, rules: Rules): string | null {
  if (!Array.isArray(subnets) || subnets.length === 0) return `subnets ${quote(subnets)} is not a list of CIDRs`;
  const families = new Set<Family>();
  for (const s of subnets) {
    let c: Cidr;
    try {
      c = parseCidr(s as string);
    } catch {
      return `subnet ${quote(s)} is not a CIDR`;
    }
    if (formatCidr(c) !== s) return `subnet ${quote(s)} is not in canonical form (${formatCidr(c)})`;
    if (families.has(c.family)) return `lists two IPv${c.family} subnets`;
    families.add(c.family);
    const cluster = rules.clusters.find((n) => n.family === c.family);
    if (!cluster) return `subnet ${s} is IPv${c.family}, and the cluster network has no IPv${c.family} CIDR`;
    if (!covers(cluster, c)) return `subnet ${s} lies outside the cluster CIDR ${formatCidr(cluster)}`;
    const want = rules.lengths[c.family];
    if (want !== undefined && c.prefix !== want) return `subnet ${s} is a /${c.prefix}, node subnets of IPv${c.family} are /${want}`;
  }
  return null;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const BACKEND_TYPE = /^[a-z0-9][a-z0-9-]{0,31}$/;

const intIn = (v: unknown, min: number, max: number): boolean => typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;

function backendProblem(lease: NodeLease, rules: Rules): string | null {
  const b = lease.backend as unknown as Record<string, unknown> | null;
  if (typeof b !== "object" || b === null || Array.isArray(b)) return "backend data is not an object";
  if (typeof b.type !== "string" || !BACKEND_TYPE.test(b.type)) return `backend type ${quote(b.type)} is not a backend name`;
  if (b.vni !== undefined && !intIn(b.vni, 0, 0xffffff)) return `VNI ${quote(b.vni)} is not a number from 0 to 16777215`;
  if (b.port !== undefined && !intIn(b.port, 1, 65535)) return `VXLAN port ${quote(b.port)} is not a port number`;
  if (b.underlayMTU !== undefined && !intIn(b.underlayMTU, 68, 65535)) return `underlay MTU ${quote(b.underlayMTU)} is not an MTU`;
  if (b.as !== undefined && !intIn(b.as, 1, AS_MAX)) return `BGP AS ${quote(b.as)} is not an AS number from 1 to ${AS_MAX}`;
  if (b.wgPort !== undefined && !intIn(b.wgPort, 1, 65535)) return `WireGuard port ${quote(b.wgPort)} is not a port number`;
  if (b.wgPublicKey !== undefined) {
    const key = checkPublicKey(b.wgPublicKey);
    if (!key.ok) return key.reason;
  }
  if (b.vtepMAC !== undefined) {
    if (typeof b.vtepMAC !== "string" || !MAC.test(b.vtepMAC.toLowerCase())) return `VTEP MAC ${quote(b.vtepMAC)} is not a MAC address`;
    const vni = typeof b.vni === "number" ? b.vni : rules.vni;
    const derived = stableVtepMac(lease.nodeName, vni);
    if (b.vtepMAC.toLowerCase() !== derived) return `VTEP MAC ${b.vtepMAC} is not the one of node ${lease.nodeName} on VNI ${vni} (${derived})`;
  }
  if (b.underlayIPs !== undefined) {
    if (!Array.isArray(b.underlayIPs) || b.underlayIPs.length > 2) return `underlay addresses ${quote(b.underlayIPs)} are not a list of at most two addresses`;
    for (const a of b.underlayIPs) {
      const why = unicastProblem("underlay address", a, rules.clusters, true);
      if (why) return why;
    }
  }
  return null;
}

const SPECIAL: Record<Family, Cidr[]> = {
  4: ["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3"].map(parseCidr),
  6: ["::/127", "ff00::/8", "::ffff:0:0/96"].map(parseCidr),
};

/** Why `value` cannot be a node's underlay address; link-local IPv6 only where `linkLocal` (host-gw next hops). */
function unicastProblem(what: string, value: unknown, clusters: readonly Cidr[], linkLocal = false): string | null {
  let ip: Ip;
  try {
    ip = parseIp(value as string);
  } catch {
    return `${what} ${quote(value)} is not an IP address`;
  }
  if (SPECIAL[ip.family].some((c) => contains(c, ip))) return `${what} ${value as string} is not a unicast address`;
  if (!linkLocal && isLinkLocal6(ip)) return `${what} ${value as string} is link-local`;
  const inside = clusters.find((c) => contains(c, ip));
  if (inside) return `${what} ${value as string} lies inside the cluster CIDR ${formatCidr(inside)}`;
  return null;
}
