import { canonicalCidrOrSelf, covers, formatCidr, parseCidr, parseCidrOrNull } from "../../shared/net/cidr.js";
import { AS_MAX } from "../config.js";
import { oncePer } from "../../shared/memo.js";
import { DatastoreError } from "../errors.js";
import type { BackendData, NetworkConfig } from "../types.js";

/**
 * A Node as the `kubernetes` datastore reads and writes it, as plain data and pure functions:
 * the view of a Node twill works from, the annotations a node publishes (one patch, so peers
 * see the old data or the new, never a mix), the backend data checked field by field where it
 * is decoded, and where a node's subnets come from: its `spec.podCIDRs` when
 * kube-controller-manager allocates them, otherwise Leases (kubernetes-lease-view.ts).
 */

export const ANNOTATIONS = {
  publicIP: "twill.dev/public-ip",
  backendType: "twill.dev/backend-type",
  /** The whole BackendData as JSON (VTEP MAC, VNI, port, underlay MTU). */
  backendData: "twill.dev/backend-data",
  /** Comma-separated; set only when the subnets are leased, absent when they are spec.podCIDRs. */
  subnets: "twill.dev/subnets",
} as const;

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

// The client returns typed objects from list calls and plain JSON from watch streams; both
// have the same field names, so these read either through a structural view.
export interface RawMeta {
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

/** The view of a watch cache's Node (it keeps an API object while it is unchanged), the same view for the same object. */
export const cachedNodeView = oncePer(nodeView);

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
export const backendOf = oncePer((node: NodeView) => decodeBackend(node.annotations));

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
  as: { ok: (v) => intIn(v, 1, AS_MAX), want: `an AS number from 1 to ${AS_MAX}` },
  // The key's form is checked at admission (agent/peers.ts), where the reason is the peer's.
  wgPublicKey: { ok: (v) => typeof v === "string", want: "a string" },
  wgPort: { ok: (v) => intIn(v, 1, 65535), want: "an integer from 1 to 65535" },
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

/** The subnets a Node's annotation lists, canonical; parsed once per view. */
export const leasedSubnetsOf = oncePer((node: NodeView) => (node.annotations[ANNOTATIONS.subnets] ?? "").split(",").filter(Boolean).map(canonicalCidrOrSelf));

/** Why a Node's twill.dev/subnets annotation is ignored, when it lists other subnets than its spec.podCIDRs. */
export function ignoredSubnets(node: NodeView): string | undefined {
  const listed = node.annotations[ANNOTATIONS.subnets];
  if (listed === undefined || node.podCIDRs.length === 0) return undefined;
  if ([...leasedSubnetsOf(node)].sort().join() === [...node.podCIDRs].sort().join()) return undefined;
  return `${ANNOTATIONS.subnets} ${shown(listed)} ignored: the Node's spec.podCIDRs ${node.podCIDRs.join(",")} are its subnets`;
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

