import type { PodRef } from "../../ipam/store.js";
import type { PodInfo, PolicySnapshot } from "./types.js";

/**
 * A new pod's policy in force before its first packet: its addresses taken from the IPAM store
 * before the API has them, and what the plugin waits on before it answers ADD.
 */

/**
 * This node's pods' addresses as soon as they are reserved. The API learns a pod's address
 * when kubelet reports it, after the pod's containers have started; the IPAM store has it from
 * the ADD on, with the pod named (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID). Joining both
 * lets a new pod's policy be in force before its first packet. Pure.
 *
 * A reservation counts for a pod of this node with the same UID (or, when the runtime passed no
 * UID, the same namespace and name). An address some pod's status already lists stays that
 * pod's: the API is the authority once it knows.
 */
export function withReservedAddresses(
  snapshot: PolicySnapshot,
  nodeName: string,
  reservations: readonly { ip: string; pod?: PodRef }[],
): PolicySnapshot {
  if (reservations.length === 0) return snapshot;
  const reported = new Set(snapshot.pods.flatMap((p) => p.ips));
  const byUid = new Map<string, string[]>();
  const byName = new Map<string, string[]>();
  for (const r of reservations) {
    if (!r.pod || reported.has(r.ip)) continue;
    const [map, key] = r.pod.uid ? [byUid, r.pod.uid] : [byName, `${r.pod.namespace}/${r.pod.name}`];
    map.set(key, [...(map.get(key) ?? []), r.ip]);
  }
  if (byUid.size === 0 && byName.size === 0) return snapshot;
  const pods = snapshot.pods.map((p): PodInfo => {
    if (p.nodeName !== nodeName) return p;
    const extra = [...((p.uid && byUid.get(p.uid)) || []), ...(byName.get(`${p.namespace}/${p.name}`) ?? [])];
    return extra.length === 0 ? p : { ...p, ips: [...p.ips, ...extra.filter((ip) => !p.ips.includes(ip))] };
  });
  return { ...snapshot, pods };
}

/**
 * All of the reservations withReservedAddresses reads: equal keys join alike. An ADD changes the
 * store several times (the address file, then the index entry naming its pod); only the change
 * that names the pod changes the key. Pure.
 */
export function reservedAddressesKey(reservations: readonly { ip: string; pod?: PodRef }[]): string {
  return JSON.stringify(reservations.flatMap((r) => (r.pod ? [[r.ip, r.pod.uid, r.pod.namespace, r.pod.name]] : [])));
}

/** What the plugin waits on: namespaces with policies, this node's pod addresses in the snapshot. Pure. */
export function policyReadyOf(snapshot: PolicySnapshot, nodeName: string): { namespaces: string[]; ips: string[] } {
  const namespaces = [...new Set(snapshot.policies.map((p) => p.namespace))].sort();
  const ips = snapshot.pods.filter((p) => p.nodeName === nodeName).flatMap((p) => p.ips).sort();
  return { namespaces, ips };
}
