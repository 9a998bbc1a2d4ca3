import { canonicalCidrOrSelf, covers, formatCidr, parseCidr, type Cidr } from "../../shared/net/cidr.js";
import { DatastoreError } from "../errors.js";
import { oncePer } from "../../shared/memo.js";
import type { BackendData, NetworkConfig, NodeLease, UnreadableRecord } from "../types.js";

/**
 * What the `kubernetes` datastore reads from and writes to the API, as plain data and pure
 * functions: Node and Lease objects reduced to what twill uses, the annotations a node
 * publishes, who holds a subnet Lease, and the peer set every watcher computes from the two.
 *
 * A node's subnets are its `spec.podCIDRs` when kube-controller-manager allocates them;
 * otherwise one `coordination.k8s.io/v1` Lease per subnet, named after it, held by the node
 * (holderIdentity) and renewed (renewTime). Peers are the Nodes that carry twill's annotations
 * and a subnet: a leased one only while its Leases are live and name it.
 */

export const ANNOTATIONS = {
  publicIP: "twill.dev/public-ip",
  backendType: "twill.dev/backend-type",
  /** The whole BackendData as JSON (VTEP MAC, VNI, port, underlay MTU). */
  backendData: "twill.dev/backend-data",
  /** Comma-separated; set only when the subnets are leased, absent when they are spec.podCIDRs. */
  subnets: "twill.dev/subnets",
} as const;

/** On each subnet Lease: the subnet in CIDR form (the name cannot hold "/" or ":"). */
export const LEASE_SUBNET_ANNOTATION = "twill.dev/subnet";
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "twilld";
export const LEASE_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;

export const NETWORK_UNAVAILABLE = "NetworkUnavailable";
export const NETWORK_UP_REASON = "TwillIsUp";

/** A Node as twill sees it; never changed once made (what is decoded from it is remembered per view). */
export interface NodeView {
  name: string;
  uid?: string;
  /** Canonical CIDR texts from spec.podCIDRs (or the older single spec.podCIDR). */
  podCIDRs: string[];
  annotations: Record<string, string>;
  createdAt?: number;
  /** status of the NetworkUnavailable condition and its reason, when the Node has one. */
  networkUnavailable?: { status: string; reason?: string };
}

/** A subnet Lease as twill sees it; times in Unix ms. */
export interface LeaseView {
  name: string;
  subnet?: string;
  managed: boolean;
  holder?: string;
  durationSeconds: number;
  acquireTime?: number;
  renewTime?: number;
  transitions: number;
  resourceVersion?: string;
  /**
   * Why a twill-managed Lease cannot be read (its subnet annotation missing, not a CIDR, or not
   * the subnet its name says): such a Lease is never free and never taken over.
   */
  unreadable?: string;
}

/** `twill-10-244-3-0-24`: a DNS subdomain for every canonical subnet text of either family. */
export const leaseName = (subnet: string): string => `twill-${formatCidr(parseCidr(subnet)).replace(/[.:/]/g, "-")}`;

// The client returns typed objects from list calls and plain JSON from watch streams; both
// have the same field names, so these read either through a structural view.
interface RawMeta {
  name?: string;
  uid?: string;
  resourceVersion?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  creationTimestamp?: unknown;
}
export interface RawNode {
  metadata?: RawMeta;
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { conditions?: { type?: string; status?: string; reason?: string }[] };
}
export interface RawLease {
  metadata?: RawMeta;
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: unknown;
    renewTime?: unknown;
    leaseTransitions?: number;
  };
}

/** A time field as Unix ms: a Date from typed objects, an RFC 3339 string from the wire. */
export function timeOf(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === "string") {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

export function nodeView(raw: RawNode): NodeView {
  const spec = raw.spec ?? {};
  const cidrs = spec.podCIDRs && spec.podCIDRs.length > 0 ? spec.podCIDRs : spec.podCIDR ? [spec.podCIDR] : [];
  const condition = raw.status?.conditions?.find((c) => c.type === NETWORK_UNAVAILABLE);
  const view: NodeView = {
    name: raw.metadata?.name ?? "",
    podCIDRs: cidrs.map(canonicalCidrOrSelf),
    annotations: { ...(raw.metadata?.annotations ?? {}) },
  };
  if (raw.metadata?.uid) view.uid = raw.metadata.uid;
  const created = timeOf(raw.metadata?.creationTimestamp);
  if (created !== undefined) view.createdAt = created;
  if (condition?.status) {
    view.networkUnavailable = { status: condition.status, ...(condition.reason ? { reason: condition.reason } : {}) };
  }
  return view;
}

export function leaseView(raw: RawLease): LeaseView {
  const spec = raw.spec ?? {};
  const subnet = raw.metadata?.annotations?.[LEASE_SUBNET_ANNOTATION];
  const view: LeaseView = {
    name: raw.metadata?.name ?? "",
    managed: raw.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY,
    durationSeconds: spec.leaseDurationSeconds ?? 0,
    transitions: spec.leaseTransitions ?? 0,
  };
  if (subnet) view.subnet = canonicalCidrOrSelf(subnet);
  if (spec.holderIdentity) view.holder = spec.holderIdentity;
  const acquired = timeOf(spec.acquireTime);
  if (acquired !== undefined) view.acquireTime = acquired;
  const renewed = timeOf(spec.renewTime);
  if (renewed !== undefined) view.renewTime = renewed;
  if (raw.metadata?.resourceVersion) view.resourceVersion = raw.metadata.resourceVersion;
  if (view.managed) {
    const why = leaseProblem(view.name, subnet);
    if (why) view.unreadable = why;
  }
  return view;
}

/** The views of a watch cache's objects (it keeps an API object while it is unchanged), the same view for the same object. */
export const cachedNodeView = oncePer(nodeView);
export const cachedLeaseView = oncePer(leaseView);

function leaseProblem(name: string, subnet: string | undefined): string | undefined {
  if (subnet === undefined) return `no ${LEASE_SUBNET_ANNOTATION} annotation`;
  const c = parseCidrOrNull(subnet);
  if (!c) return `${LEASE_SUBNET_ANNOTATION} ${JSON.stringify(subnet)} is not a CIDR`;
  if (leaseName(formatCidr(c)) !== name) return `${LEASE_SUBNET_ANNOTATION} ${formatCidr(c)} is not the subnet of Lease ${name}`;
  return undefined;
}

/** The subnet a Lease name stands for, when it is an IPv4 one (`twill-10-244-3-0-24`). */
function ipv4SubnetOfLeaseName(name: string): string | undefined {
  const m = /^twill-(\d+)-(\d+)-(\d+)-(\d+)-(\d+)$/.exec(name);
  if (!m) return undefined;
  const text = `${m[1]}.${m[2]}.${m[3]}.${m[4]}/${m[5]}`;
  return parseCidrOrNull(text) ? text : undefined;
}

/**
 * When the Lease lapses: renewTime + leaseDurationSeconds, by the holder's clock against the
 * reader's. Node clocks are NTP-synchronised and TTLs are minutes to hours, so skew is noise.
 */
export const leaseExpiry = (l: LeaseView): number => (l.renewTime ?? 0) + l.durationSeconds * 1000;

export const leaseLive = (l: LeaseView, now: number): boolean => l.holder !== undefined && leaseExpiry(l) > now;

export type ClaimDecision = "ours" | "take-over" | "taken";

/**
 * What a node may do with an existing subnet Lease: renew its own (live or lapsed, as long as
 * nobody took it over), take over one that lapsed, or leave one another node holds. A Lease
 * that twilld did not create is never touched.
 */
export function claimDecision(lease: LeaseView, nodeName: string, now: number): ClaimDecision {
  if (!lease.managed || lease.unreadable) return "taken";
  if (lease.holder === nodeName) return "ours";
  return leaseLive(lease, now) ? "taken" : "take-over";
}

/** What of a Node the peer set depends on: twill's annotations, podCIDRs, creation time. */
export function nodeFingerprint(node: NodeView): string {
  const ours = Object.values(ANNOTATIONS).map((k) => node.annotations[k] ?? null);
  return JSON.stringify([node.podCIDRs, node.createdAt ?? null, ours]);
}

/**
 * The annotations a node publishes; null removes one (a JSON merge patch). Sent as one patch,
 * so a node switching backend (host-gw to vxlan) shows peers the old data or the new, never a mix.
 */
export function nodeAnnotations(publicIP: string, backend: BackendData, leasedSubnets: string[] | null): Record<string, string | null> {
  return {
    [ANNOTATIONS.publicIP]: publicIP,
    [ANNOTATIONS.backendType]: backend.type,
    [ANNOTATIONS.backendData]: JSON.stringify(backend),
    [ANNOTATIONS.subnets]: leasedSubnets ? leasedSubnets.join(",") : null,
  };
}

/** The part of `wanted` the node does not show yet: empty when nothing needs patching. */
export function annotationChanges(current: Record<string, string>, wanted: Record<string, string | null>): Record<string, string | null> {
  const changes: Record<string, string | null> = {};
  for (const [key, value] of Object.entries(wanted)) {
    if (value === null ? key in current : current[key] !== value) changes[key] = value;
  }
  return changes;
}

/** Every twill annotation set to null: what release() patches onto a Node. */
export const clearedAnnotations = (): Record<string, null> =>
  Object.fromEntries(Object.values(ANNOTATIONS).map((k) => [k, null]));

/**
 * A Node view's backend data, decoded once per view: with views remembered per API object, a
 * peer event at 5000 Nodes parses one Node's JSON, not 5000.
 */
const backendOf = oncePer((node: NodeView) => decodeBackend(node.annotations));

/** A Node's published backend data, or why it cannot be read. */
export type BackendDecode = { ok: true; backend: BackendData } | { ok: false; reason: string };

const intIn = (v: unknown, min: number, max: number): boolean => typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;

/** The fields of BackendData a peer may publish, each with its check; anything else is dropped. */
const BACKEND_FIELDS: Record<Exclude<keyof BackendData, "type">, { ok: (v: unknown) => boolean; want: string }> = {
  vtepMAC: { ok: (v) => typeof v === "string", want: "a string" },
  vni: { ok: (v) => intIn(v, 0, 0xffffff), want: "an integer from 0 to 16777215" },
  port: { ok: (v) => intIn(v, 1, 65535), want: "an integer from 1 to 65535" },
  underlayMTU: { ok: (v) => intIn(v, 68, 65535), want: "an integer from 68 to 65535" },
  underlayIPs: { ok: (v) => Array.isArray(v) && v.every((a) => typeof a === "string"), want: "a list of strings" },
};

const shown = (v: unknown): string => {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
};

/**
 * The backend annotations as a BackendData whose every field has its declared type, or a
 * reason naming the first field that does not: anyone who may patch Nodes can write them, and
 * a `"vtepMAC": 5` handed on would throw deep in the datapath, for every peer at once. The
 * meaning of the values (the MAC derived from the name, the subnets inside the cluster) is the
 * agent's peer admission; this is only their shape. Null when the Node published no backend.
 */
export function decodeBackend(annotations: Record<string, string>): BackendDecode | null {
  const type = annotations[ANNOTATIONS.backendType];
  if (!type) return null;
  const field = ANNOTATIONS.backendData;
  let data: unknown;
  try {
    data = JSON.parse(annotations[field] ?? "{}");
  } catch {
    return { ok: false, reason: `${field} is not JSON` };
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) return { ok: false, reason: `${field} is not a JSON object` };
  const raw = data as Record<string, unknown>;
  // twilld writes both annotations in one patch, and the JSON carries its own type beside the
  // VTEP MAC. Should the two disagree (written apart: by hand, by another tool), the JSON is the
  // one consistent record: a peer never reads "vxlan" beside host-gw's data (no VTEP MAC).
  if (raw.type !== undefined && (typeof raw.type !== "string" || raw.type === "")) {
    return { ok: false, reason: `${field} field "type" is ${shown(raw.type)}, not a backend name` };
  }
  const backend: BackendData = { type: (raw.type as string | undefined) ?? type };
  for (const [name, check] of Object.entries(BACKEND_FIELDS)) {
    const value = raw[name];
    if (value === undefined) continue;
    if (!check.ok(value)) return { ok: false, reason: `${field} field "${name}" is ${shown(value)}, not ${check.want}` };
    (backend as unknown as Record<string, unknown>)[name] = Array.isArray(value) ? [...(value as string[])] : value;
  }
  return { ok: true, backend };
}

/**
 * The peer set: every Node that published twill's annotations and has a subnet. A leased
 * node keeps only the subnets whose Leases are live and name it, so a lapsed, deleted or
 * taken-over Lease drops the subnet (and a node left without one) from every view.
 */
export function publishedLeases(
  nodes: Iterable<NodeView>,
  leases: Iterable<LeaseView>,
  now: number,
  lastGood = new Map<string, NodeLease>(),
): NodeLease[] {
  const live = new Map<string, LeaseView>();
  const unreadableNames = new Set<string>();
  for (const l of leases) {
    if (l.managed && l.unreadable) unreadableNames.add(l.name);
    else if (l.managed && l.subnet && leaseLive(l, now)) live.set(l.subnet, l);
  }
  const result: NodeLease[] = [];
  const seen = new Set<string>();
  for (const node of nodes) {
    const publicIP = node.annotations[ANNOTATIONS.publicIP];
    const decoded = backendOf(node);
    if (node.name && publicIP) seen.add(node.name);
    if (node.name && publicIP && decoded && !decoded.ok) {
      // Published once, unreadable now: the peer keeps its last good view.
      const last = lastGood.get(node.name);
      if (last) result.push(last);
      continue;
    }
    if (!node.name || !publicIP || !decoded?.ok) continue;
    const lease: NodeLease = { nodeName: node.name, subnets: [], publicIP, backend: decoded.backend };
    if (node.podCIDRs.length > 0) {
      // kube-controller-manager allocated them: the authority. A twill.dev/subnets annotation
      // beside them (anyone who may patch Nodes can write one) is not a claim (unreadableObjects).
      lease.subnets = node.podCIDRs;
      if (node.createdAt !== undefined) lease.acquiredAt = node.createdAt;
    } else if (node.annotations[ANNOTATIONS.subnets] !== undefined) {
      const listed = leasedSubnetsOf(node);
      const held = listed.map((s) => live.get(s)).filter((l): l is LeaseView => l !== undefined && l.holder === node.name);
      // A Lease that cannot be read cannot disprove the node's claim: it keeps the subnet.
      const unproven = listed.filter((s) => !live.has(s) && parseCidrOrNull(s) && unreadableNames.has(leaseName(s)));
      lease.subnets = [...held.map((l) => l.subnet!), ...unproven];
      if (held.length > 0) {
        lease.expiresAt = Math.min(...held.map(leaseExpiry));
        const acquired = held.map((l) => l.acquireTime).filter((t): t is number => t !== undefined);
        if (acquired.length > 0) lease.acquiredAt = Math.min(...acquired);
      }
    }
    if (lease.subnets.length > 0) {
      // The last object while nothing changed: the agent remembers leases by identity.
      const last = lastGood.get(node.name);
      const out = last !== undefined && sameLease(last, lease) ? last : lease;
      result.push(out);
      lastGood.set(node.name, out);
    }
  }
  for (const name of [...lastGood.keys()]) if (!seen.has(name)) lastGood.delete(name);
  return result;
}

/** The subnets a Node's annotation lists, canonical; parsed once per view. */
const leasedSubnetsOf = oncePer((node: NodeView) => (node.annotations[ANNOTATIONS.subnets] ?? "").split(",").filter(Boolean).map(canonicalCidrOrSelf));

/** Field by field; the backend by identity, as backendOf hands out one object per Node view. */
function sameLease(a: NodeLease, b: NodeLease): boolean {
  return (
    a.nodeName === b.nodeName &&
    a.publicIP === b.publicIP &&
    a.backend === b.backend &&
    a.expiresAt === b.expiresAt &&
    a.acquiredAt === b.acquiredAt &&
    a.subnets.length === b.subnets.length &&
    a.subnets.every((s, i) => s === b.subnets[i])
  );
}

/**
 * The twill objects that cannot be read or are refused: managed Leases that do not decode,
 * Nodes whose backend data does not, and Nodes whose twill.dev/subnets annotation names other
 * subnets than their spec.podCIDRs (ignored: the podCIDRs are the node's subnets).
 */
export function unreadableObjects(nodes: Iterable<NodeView>, leases: Iterable<LeaseView>, namespace: string): UnreadableRecord[] {
  const out: UnreadableRecord[] = [];
  for (const l of leases) {
    if (l.managed && l.unreadable) out.push({ kind: "claim", key: `Lease ${namespace}/${l.name}`, reason: l.unreadable });
  }
  for (const n of nodes) {
    const reasons: string[] = [];
    const decoded = backendOf(n);
    if (n.annotations[ANNOTATIONS.publicIP] && decoded && !decoded.ok) reasons.push(decoded.reason);
    const ignored = ignoredSubnets(n);
    if (ignored) reasons.push(ignored);
    if (reasons.length > 0) out.push({ kind: "node", key: `Node ${n.name}`, reason: reasons.join("; ") });
  }
  return out;
}

/** Why a Node's twill.dev/subnets annotation is ignored, when it lists other subnets than its spec.podCIDRs. */
function ignoredSubnets(node: NodeView): string | undefined {
  const listed = node.annotations[ANNOTATIONS.subnets];
  if (listed === undefined || node.podCIDRs.length === 0) return undefined;
  if ([...leasedSubnetsOf(node)].sort().join() === [...node.podCIDRs].sort().join()) return undefined;
  return `${ANNOTATIONS.subnets} ${shown(listed)} ignored: the Node's spec.podCIDRs ${node.podCIDRs.join(",")} are its subnets`;
}

/** The next moment a live Lease lapses (the peer set changes without any API event), if any. */
export function nextExpiry(leases: Iterable<LeaseView>, now: number): number | undefined {
  let next: number | undefined;
  for (const l of leases) {
    if (!l.managed || !leaseLive(l, now)) continue;
    const at = leaseExpiry(l);
    if (next === undefined || at < next) next = at;
  }
  return next;
}

export type SubnetSource = { kind: "podCIDRs"; subnets: string[] } | { kind: "lease" };

/**
 * Where the node's subnets come from. spec.podCIDRs win, and must lie inside the cluster
 * CIDRs, one per family the network has. A node without podCIDRs in a cluster where other
 * nodes have them waits for kube-controller-manager instead of leasing: a Lease from the same
 * range could duplicate the CIDR the controller is about to assign.
 */
export function subnetSource(node: NodeView, network: NetworkConfig, othersWithPodCIDRs: number): SubnetSource {
  const op = `acquire a subnet for node "${node.name}"`;
  if (node.podCIDRs.length === 0) {
    if (othersWithPodCIDRs > 0) {
      throw new DatastoreError(
        op,
        `it has no spec.podCIDRs yet while ${othersWithPodCIDRs} other node(s) have: waiting for kube-controller-manager to allocate one (a leased subnet could collide with it)`,
      );
    }
    return { kind: "lease" };
  }
  const clusters = network.clusterCIDRs.map(parseCidr);
  const subnets: string[] = [];
  for (const cluster of clusters) {
    const inside = node.podCIDRs.filter((text) => {
      const c = parseCidrOrNull(text);
      return c !== null && covers(cluster, c);
    });
    if (inside.length === 0) {
      throw new DatastoreError(
        op,
        `its spec.podCIDRs ${node.podCIDRs.join(",")} have none inside cluster CIDR ${formatCidr(cluster)} (net-conf "Network" must match kube-controller-manager --cluster-cidr)`,
      );
    }
    subnets.push(inside[0]!);
  }
  const outside = node.podCIDRs.filter((t) => !subnets.includes(t));
  if (outside.length > 0) {
    throw new DatastoreError(op, `its spec.podCIDRs ${outside.join(",")} lie outside the cluster CIDRs ${network.clusterCIDRs.join(",")}`);
  }
  return { kind: "podCIDRs", subnets };
}

function parseCidrOrNull(text: string): Cidr | null {
  try {
    return parseCidr(text);
  } catch {
    return null;
  }
}

/** Subnets of other nodes the claim loop must avoid: their podCIDRs and their live Leases. */
export function takenByOthers(nodeName: string, nodes: Iterable<NodeView>, leases: Iterable<LeaseView>, now: number): Cidr[] {
  const taken: Cidr[] = [];
  for (const n of nodes) {
    if (n.name === nodeName) continue;
    for (const text of n.podCIDRs) {
      const c = parseCidrOrNull(text);
      if (c) taken.push(c);
    }
  }
  for (const l of leases) {
    // One that cannot be read is never free: the subnet its name stands for is taken whoever holds it.
    if (!l.managed || (!l.unreadable && (l.holder === nodeName || !leaseLive(l, now)))) continue;
    const c = claimedSubnet(l);
    if (c) taken.push(c);
  }
  return taken;
}

/** The subnet a twill Lease claims: its annotation's, or the one its name stands for when it cannot be read. */
function claimedSubnet(l: LeaseView): Cidr | null {
  return parseCidrOrNull((l.unreadable ? ipv4SubnetOfLeaseName(l.name) : l.subnet) ?? "");
}

/**
 * Where twilld kept its subnet Leases before they had a namespace of their own. A cluster
 * upgraded from such a manifest still holds them there, read-only to the new twilld.
 */
export const LEGACY_LEASE_NAMESPACE = "kube-system";

/** What a node does with the twill Leases an older twilld left in the legacy namespace. */
export interface LegacyPlan {
  /** This node's own (readable, held by it): recreated in twill's namespace, same subnet and holder. */
  copy: LeaseView[];
  /** Every other node's: taken, live or lapsed, for as long as the Lease exists. */
  taken: Cidr[];
}

/**
 * The upgrade from Leases in the legacy namespace, decided on plain data. A node copies its own
 * Leases over unless it already holds the subnet in twill's namespace; it never takes a subnet
 * another node's old Lease names, even a lapsed one: an old twilld renews its lapsed Lease
 * where the new one cannot see it, and a node whose Node is deleted loses its Lease to the
 * garbage collector (ownerReferences), so nothing is held for ever.
 */
export function legacyPlan(nodeName: string, legacy: Iterable<LeaseView>, current: Iterable<LeaseView>): LegacyPlan {
  const ownNow = new Set<string>();
  for (const l of current) if (l.managed && !l.unreadable && l.holder === nodeName && l.subnet) ownNow.add(l.subnet);
  const plan: LegacyPlan = { copy: [], taken: [] };
  for (const l of legacy) {
    if (!l.managed) continue;
    if (!l.unreadable && l.holder === nodeName) {
      if (l.subnet && !ownNow.has(l.subnet)) plan.copy.push(l);
      continue;
    }
    const c = claimedSubnet(l);
    if (c) plan.taken.push(c);
  }
  return plan;
}

/**
 * The Leases the peer set honours: twill's namespace's, and the legacy namespace's where twill's
 * has no Lease of that name (a node not upgraded yet still renews its old one; a node that moved
 * its Lease is read from the new one).
 */
export function withLegacy(current: readonly LeaseView[], legacy: readonly LeaseView[]): LeaseView[] {
  if (legacy.length === 0) return current as LeaseView[];
  const names = new Set(current.filter((l) => l.managed).map((l) => l.name));
  return [...current, ...legacy.filter((l) => !names.has(l.name))];
}
