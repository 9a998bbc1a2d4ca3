import { TORN_ADD_GRACE_MS, podText, type PodRef } from "../../ipam/store.js";
import type { ReservationView } from "./store-view.js";

/**
 * Which reservations are leaked, as a pure function of the reservations, the pods the API says
 * run on this node, and the clock. A runtime that never sends CNI GC (containerd before 2.0)
 * leaks an address for ever when a sandbox dies between ADD and DEL: host-local users then
 * read "no IP addresses available in range set" and clear the store by hand (flannel#1416,
 * k3s#5885). Calico's kube-controllers recover them after a grace period; so does this.
 *
 * A reservation is leaked when it predates the last boot (no network namespace survives a
 * reboot), or when the pod recorded with it is not running on this node: gone, moved to
 * another node, or restarted under a new UID. Only after it has looked leaked for the grace
 * period, so a pod being created or a lagging view never costs an address. Never leaked:
 * an address a live pod on this node lists in status.podIPs, one whose pod UID is live
 * (from this boot), and one of a static pod the API does not show (its mirror pod refused)
 * unless its sandbox is shown gone (its veth, sandbox.ts).
 * When the API cannot be read, or the node name is not shown to be this node's
 * (node-identity.ts), nothing is leaked, whatever the rule. Without the Kubernetes datastore
 * there are no pods to ask: only the boot rule and the torn-ADD rule apply.
 *
 * What an ADD killed half-way left (an empty file, or an owner without its index entry) was
 * never handed to the runtime: it is leaked once older than a short grace, which no live ADD
 * takes between creating the file and writing its index entry (an owner without its entry
 * only where pods can be asked, as a twill-ipam without the index left those too).
 */

/** A pod on this node that is not finished (Pending, Running, Unknown), from the API. */
export interface LivePod {
  namespace: string;
  name: string;
  uid: string;
  /**
   * A mirror pod's static pod UID (annotation kubernetes.io/config.mirror): kubelet names the
   * static pod's own UID in CNI_ARGS, not the mirror's.
   */
  staticUid?: string;
  /** status.podIPs. */
  ips: string[];
}

/** On a mirror pod: the UID of the static pod it stands for (kubelet's config hash). */
const MIRROR_ANNOTATION = "kubernetes.io/config.mirror";

export interface RawPod {
  metadata?: { namespace?: string; name?: string; uid?: string; annotations?: Record<string, string> };
  status?: { phase?: string; podIP?: string; podIPs?: { ip?: string }[] };
}

/** A pod's view, or null when it is finished (Succeeded, Failed): its sandbox is gone or going. */
export function livePod(raw: RawPod): LivePod | null {
  const phase = raw.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") return null;
  const ips = new Set<string>();
  if (raw.status?.podIP) ips.add(raw.status.podIP);
  for (const p of raw.status?.podIPs ?? []) if (p.ip) ips.add(p.ip);
  const staticUid = raw.metadata?.annotations?.[MIRROR_ANNOTATION];
  return {
    namespace: raw.metadata?.namespace ?? "",
    name: raw.metadata?.name ?? "",
    uid: raw.metadata?.uid ?? "",
    ...(staticUid ? { staticUid } : {}),
    ips: [...ips],
  };
}

export type PodsView =
  /** The API listed this node's pods. */
  | { kind: "listed"; pods: LivePod[] }
  /** The API was slow or unreachable: nothing can be shown to be unused. */
  | { kind: "unavailable"; reason: string }
  /** The datastore has no pods (etcd, local): reservations from before the last boot only. */
  | { kind: "none"; reason: string }
  /** The node name is not shown to be this node: its pods are not this node's, nothing is released. */
  | { kind: "unverified"; reason: string };

export type LeakReason = "earlier-boot" | "pod-not-on-node" | "torn-add";

export type Verdict =
  /** In use: by a live pod (`by`), or by a static pod's sandbox still up on this node. */
  | { state: "held"; by?: PodRef; why: string }
  | { state: "leaked"; reason: LeakReason; why: string }
  /** Looks leaked, inside the grace period: released at `releaseAt` if it still does. */
  | { state: "pending"; reason: LeakReason; why: string; releaseAt: number }
  /** Not shown to be unused (no pod recorded, the API unreadable, no pods in this datastore). */
  | { state: "kept"; cause: KeptCause; why: string };

/**
 * Why a reservation cannot be judged: the API unreadable, the node name not this node's, no
 * pods in the datastore, no pod recorded, a static pod the API does not show.
 */
export type KeptCause = "pods-unavailable" | "node-unverified" | "no-pods" | "no-pod-recorded" | "static-pod";

export interface Judged {
  reservation: ReservationView;
  verdict: Verdict;
}

export interface LeakOptions {
  now: number;
  graceMs: number;
  /**
   * Since when the reservation has looked leaked (the agent remembers from its sweeps); the
   * later of this and the reservation's creation starts the grace period. Undefined: from now.
   */
  suspectSince: (r: ReservationView) => number | undefined;
  /** How old a torn ADD's reservation must be to be leaked; {@link TORN_ADD_GRACE_MS} unless set. */
  tornGraceMs?: number;
}

export { TORN_ADD_GRACE_MS };

export function judgeReservations(reservations: readonly ReservationView[], pods: PodsView, o: LeakOptions): Judged[] {
  return reservations.map((reservation) => ({ reservation, verdict: judge(reservation, pods, o) }));
}

/** The reservations to release now. */
export const leaked = (judged: readonly Judged[]): Judged[] => judged.filter((j) => j.verdict.state === "leaked");

/** Reservations that look leaked, released now or later: the ones whose suspicion is remembered. */
export const suspected = (judged: readonly Judged[]): Judged[] =>
  judged.filter((j) => j.verdict.state === "leaked" || j.verdict.state === "pending");

function judge(r: ReservationView, pods: PodsView, o: LeakOptions): Verdict {
  if (pods.kind === "unavailable") return { state: "kept", cause: "pods-unavailable", why: `pods cannot be read (${pods.reason}): nothing is released` };
  if (pods.kind === "unverified") return { state: "kept", cause: "node-unverified", why: `${pods.reason}: nothing is released` };
  if (pods.kind === "listed") {
    const byAddress = pods.pods.find((p) => p.ips.includes(r.ip));
    if (byAddress) return { state: "held", by: refOf(byAddress), why: `pod ${podText(byAddress)} lists it in status.podIPs` };
  }
  // An owner without its index entry is also what a twill-ipam without the index left: only
  // the pods' own addresses show that nobody uses it, so not without pods to ask.
  if (r.torn === "empty" || (r.torn === "no-index" && pods.kind === "listed")) {
    const releaseAt = (r.createdAt ?? o.now) + (o.tornGraceMs ?? TORN_ADD_GRACE_MS);
    const why = r.torn === "empty" ? "an empty reservation file: its ADD was killed before writing it" : "no index entry: its ADD was killed before finishing";
    return releaseAt <= o.now ? { state: "leaked", reason: "torn-add", why } : { state: "pending", reason: "torn-add", why, releaseAt };
  }
  let suspicion: { reason: LeakReason; why: string } | null = null;
  if (r.predatesBoot) {
    suspicion = { reason: "earlier-boot", why: "reserved before the last boot" };
  } else if (pods.kind === "none") {
    return { state: "kept", cause: "no-pods", why: pods.reason };
  } else if (!r.pod) {
    return { state: "kept", cause: "no-pod-recorded", why: "no pod recorded with it (made by host-local, or the runtime named none): only a reboot shows it unused" };
  } else {
    const pod = r.pod;
    const live = pods.pods.find((p) => (pod.uid ? p.uid === pod.uid || p.staticUid === pod.uid : p.namespace === pod.namespace && p.name === pod.name));
    if (live) return { state: "held", by: refOf(live), why: `pod ${podText(live)} runs on this node` };
    // A static pod is in the API only through its mirror pod, which the API may refuse (a
    // namespace that does not exist, an admission webhook): its absence proves nothing, and
    // only its sandbox's veth going does. Not for other pods: a sandbox the runtime lost
    // leaves its network namespace (and veth) mounted with nothing in it, the very leak this
    // recovers, and an API pod's absence for the grace period is the better proof.
    if (pod.uid && !isApiUid(pod.uid)) {
      if (r.sandbox === "up") return { state: "held", why: `static pod ${podText(pod)}: its sandbox ${r.containerID} still has its veth on this node` };
      if (r.sandbox !== "gone") {
        return { state: "kept", cause: "static-pod", why: `static pod ${podText(pod)} (${pod.uid}) has no mirror pod in the API: only its sandbox going shows it stopped` };
      }
    }
    const sameName = pods.pods.find((p) => p.namespace === pod.namespace && p.name === pod.name);
    const why = sameName
      ? `pod ${podText(pod)} runs on this node under a new UID ${sameName.uid} (was ${pod.uid})`
      : `pod ${podText(pod)}${pod.uid ? ` (${pod.uid})` : ""} is not running on this node`;
    suspicion = { reason: "pod-not-on-node", why };
  }
  const since = Math.max(o.suspectSince(r) ?? o.now, r.createdAt ?? 0);
  const releaseAt = since + o.graceMs;
  return releaseAt <= o.now ? { state: "leaked", ...suspicion } : { state: "pending", ...suspicion, releaseAt };
}

const refOf = (p: LivePod): PodRef => ({ namespace: p.namespace, name: p.name, uid: p.uid });

/**
 * A UID the apiserver generated (RFC 4122 text). kubelet gives a static pod (from a manifest
 * file or URL) the hex digest of its manifest instead, and names that in CNI_ARGS.
 */
export const isApiUid = (uid: string): boolean => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uid);

/** The key the agent remembers a suspicion under: one attachment's one address. */
export const reservationKey = (r: ReservationView): string => `${r.ip} ${r.containerID} ${r.ifname}`;
