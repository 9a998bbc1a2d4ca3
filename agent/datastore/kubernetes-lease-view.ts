import { canonicalCidrOrSelf, formatCidr, parseCidr, parseCidrOrNull, type Cidr } from "../../shared/net/cidr.js";
import { oncePer } from "../../shared/memo.js";
import { timeOf, type NodeView, type RawMeta } from "./kubernetes-node-view.js";

/**
 * A subnet Lease as the `kubernetes` datastore reads it, as plain data and pure functions: one
 * `coordination.k8s.io/v1` Lease per leased subnet, named after it, held by the node
 * (holderIdentity) and renewed (renewTime); who may claim it; and how Leases an older twilld
 * left in kube-system are carried over.
 */

/** On each subnet Lease: the subnet in CIDR form (the name cannot hold "/" or ":"). */
export const LEASE_SUBNET_ANNOTATION = "twill.dev/subnet";
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "twilld";
export const LEASE_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;

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

/** The view of a watch cache's Lease (it keeps an API object while it is unchanged), the same view for the same object. */
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
