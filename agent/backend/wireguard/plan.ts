import { covers, formatCidr, formatIp, overlaps, parseCidrOrNull, parseIpOrNull, type Cidr } from "../../../shared/net/cidr.js";
import { checkPublicKey, type PrivateKey } from "./keys.js";
import { formatEndpoint, type PeerChange, type SetRequest, type UapiDevice, type UapiPeer } from "./uapi.js";

/**
 * What the WireGuard device should hold, from the leases, and the UAPI changes that take it
 * there from what it holds now: read (a `get`) → this pure plan → one `set`. Only what
 * differs is sent: a peer joining adds one peer, a peer leaving removes one, a changed key
 * replaces that one peer, and every other peer's session (its handshake, its counters) is
 * left alone. Each lease is admitted or refused on its own, with the reason.
 */

/** Another node's lease, as the wireguard backend reads it (its backend data unchecked). */
export interface WireguardLease {
  nodeName: string;
  /** Its underlay address: the peer's endpoint. */
  publicIP: string;
  subnets: readonly string[];
  /** BackendData.wgPublicKey, base64 as `wg pubkey` writes it. */
  publicKey: unknown;
  /** BackendData.wgPort, the peer's listen port. */
  port: unknown;
}

export interface WireguardSelf {
  nodeName: string;
  privateKey: PrivateKey;
  listenPort: number;
  /** The node's own pod subnets: no peer may be allowed to send from them. */
  subnets: readonly string[];
}

export interface PlanSettings {
  /** A peer's subnet must lie inside one of these. */
  clusterCIDRs: readonly string[];
  /** Seconds; 0 is off (net-conf PersistentKeepaliveInterval). */
  persistentKeepalive: number;
}

export interface DesiredPeer {
  nodeName: string;
  publicKey: string;
  endpoint: string;
  /** Canonical CIDRs, sorted. */
  allowedIps: string[];
  persistentKeepalive: number;
}

export interface Refusal {
  /** The node name, or `local`. */
  subject: string;
  reason: string;
}

/** The peers the device should have, one per admissible lease, and why the others are not. */
export function desiredPeers(self: WireguardSelf, leases: readonly WireguardLease[], settings: PlanSettings): { peers: DesiredPeer[]; refused: Refusal[] } {
  const refused: Refusal[] = [];
  const cluster = settings.clusterCIDRs.map((c) => parseCidrOrNull(c)).filter((c): c is Cidr => c !== null);
  const own = self.subnets.map((s) => parseCidrOrNull(s)).filter((c): c is Cidr => c !== null);
  const ownPublicKey = self.privateKey.publicKey();

  interface Candidate {
    lease: WireguardLease;
    publicKey: string;
    endpoint: string;
    subnets: Cidr[];
  }
  const candidates: Candidate[] = [];
  for (const lease of [...leases].sort((a, b) => a.nodeName.localeCompare(b.nodeName))) {
    if (lease.nodeName === self.nodeName) continue;
    const refuse = (reason: string) => refused.push({ subject: lease.nodeName, reason });
    const key = checkPublicKey(lease.publicKey);
    if (!key.ok) {
      refuse(key.reason);
      continue;
    }
    if (key.key === ownPublicKey) {
      refuse("publishes this node's own WireGuard public key");
      continue;
    }
    if (typeof lease.port !== "number" || !Number.isInteger(lease.port) || lease.port < 1 || lease.port > 65535) {
      refuse(`no valid WireGuard port published (${JSON.stringify(lease.port)})`);
      continue;
    }
    const ip = parseIpOrNull(lease.publicIP);
    if (ip === null) {
      refuse(`public IP ${JSON.stringify(lease.publicIP)} is not an address`);
      continue;
    }
    const subnets: Cidr[] = [];
    for (const text of lease.subnets) {
      const cidr = parseCidrOrNull(text);
      if (cidr === null) refuse(`subnet ${JSON.stringify(text)} is not a CIDR`);
      else if (!cluster.some((c) => covers(c, cidr))) refuse(`subnet ${formatCidr(cidr)} is outside the cluster CIDRs`);
      else if (own.some((o) => overlaps(o, cidr))) refuse(`subnet ${formatCidr(cidr)} overlaps this node's own`);
      else subnets.push(cidr);
    }
    candidates.push({ lease, publicKey: key.key, endpoint: formatEndpoint(formatIp(ip.family, ip.value), lease.port), subnets });
  }

  // A key is one peer on the device, and an allowed IP belongs to one peer (adding it to a
  // second moves it there): what two leases both claim is refused for both, as nothing here
  // says which of them is right.
  const byKey = new Map<string, string[]>();
  for (const c of candidates) byKey.set(c.publicKey, [...(byKey.get(c.publicKey) ?? []), c.lease.nodeName]);
  const peers: DesiredPeer[] = [];
  for (const c of candidates) {
    const sharing = byKey.get(c.publicKey)!.filter((n) => n !== c.lease.nodeName);
    if (sharing.length > 0) {
      refused.push({ subject: c.lease.nodeName, reason: `publishes the same WireGuard public key as ${sharing.join(", ")}` });
      continue;
    }
    const allowed: string[] = [];
    for (const cidr of c.subnets) {
      const rival = candidates.find((o) => o !== c && o.subnets.some((s) => overlaps(s, cidr)));
      if (rival) refused.push({ subject: c.lease.nodeName, reason: `subnet ${formatCidr(cidr)} overlaps ${rival.lease.nodeName}'s` });
      else allowed.push(formatCidr(cidr));
    }
    if (allowed.length === 0) {
      refused.push({ subject: c.lease.nodeName, reason: "no admissible subnet" });
      continue;
    }
    peers.push({ nodeName: c.lease.nodeName, publicKey: c.publicKey, endpoint: c.endpoint, allowedIps: allowed.sort(), persistentKeepalive: settings.persistentKeepalive });
  }
  return { peers, refused };
}

/**
 * The one set request that makes `current` hold `self`'s key and port and exactly `desired`'s
 * peers: removals first, then new peers whole, then for a peer that stays only its differing
 * fields (with `update_only`). An empty request means the device is in sync.
 */
export function planDevice(self: Pick<WireguardSelf, "privateKey" | "listenPort">, desired: readonly DesiredPeer[], current: UapiDevice): SetRequest {
  const req: { privateKey?: PrivateKey; listenPort?: number; peers: PeerChange[] } = { peers: [] };
  if (current.privateKey === null || !current.privateKey.equals(self.privateKey)) req.privateKey = self.privateKey;
  if (current.listenPort !== self.listenPort) req.listenPort = self.listenPort;

  const wanted = new Map(desired.map((p) => [p.publicKey, p]));
  const present = new Map(current.peers.map((p) => [p.publicKey, p]));
  for (const p of current.peers) if (!wanted.has(p.publicKey)) req.peers.push({ op: "remove", publicKey: p.publicKey });
  for (const want of desired) {
    const have = present.get(want.publicKey);
    if (have === undefined) {
      req.peers.push({ op: "set", publicKey: want.publicKey, endpoint: want.endpoint, persistentKeepalive: want.persistentKeepalive, allowedIps: want.allowedIps });
      continue;
    }
    const change = peerDifference(want, have);
    if (change) req.peers.push(change);
  }
  return req;
}

function peerDifference(want: DesiredPeer, have: UapiPeer): PeerChange | null {
  const change: Extract<PeerChange, { op: "set" }> = { op: "set", publicKey: want.publicKey, updateOnly: true };
  let differs = false;
  if (have.endpoint !== want.endpoint) {
    change.endpoint = want.endpoint;
    differs = true;
  }
  if (have.persistentKeepalive !== want.persistentKeepalive) {
    change.persistentKeepalive = want.persistentKeepalive;
    differs = true;
  }
  const haveIps = have.allowedIps.map((c) => canonical(c)).sort();
  if (haveIps.join(",") !== want.allowedIps.join(",")) {
    change.allowedIps = want.allowedIps;
    differs = true;
  }
  return differs ? change : null;
}

const canonical = (text: string): string => {
  const c = parseCidrOrNull(text);
  return c === null ? text : formatCidr(c);
};
