import { uptime } from "node:os";
import { parseIp } from "../../shared/net/cidr.js";
import { Store, bootId, type IndexEntry, type PodRef } from "../../ipam/store.js";

/**
 * This node's address reservations as the operator and the leak recovery see them: the
 * host-local files joined with twill-ipam's index (pod, boot, creation time). A reservation
 * host-local made has no index entry: no pod, and its file's time stands for its age.
 */

export interface ReservationView {
  ip: string;
  containerID: string;
  ifname: string;
  /** The pod the runtime named on ADD; absent when it named none or host-local made it. */
  pod?: PodRef;
  /** Unix ms: the index entry's creation time, else the reservation file's. */
  createdAt?: number;
  /** Made before this kernel boot: no network namespace survives a reboot, so nothing holds it. */
  predatesBoot: boolean;
}

/** This kernel boot: its ID (/proc/sys/kernel/random/boot_id) and when it began (Unix ms). */
export interface BootInfo {
  id: string;
  startedAt: number;
}

export const currentBoot = (): BootInfo => ({ id: bootId(), startedAt: Date.now() - uptime() * 1000 });

/** Joins reservations with their index entries, given each file's time. Pure. */
export function viewReservations(
  reservations: { ip: string; containerID: string; ifname: string; reservedAt?: number }[],
  index: IndexEntry[],
  boot: BootInfo,
): ReservationView[] {
  return reservations
    .map((r) => {
      const entry = index.find((e) => e.containerID === r.containerID && e.ifname === r.ifname && e.ips.includes(r.ip));
      const created = entry ? Date.parse(entry.created) : NaN;
      const createdAt = Number.isNaN(created) ? r.reservedAt : created;
      // The boot ID decides when the entry has one; else the time against the boot's start.
      const predatesBoot = entry?.bootId ? entry.bootId !== boot.id : createdAt !== undefined && createdAt < boot.startedAt;
      const view: ReservationView = { ip: r.ip, containerID: r.containerID, ifname: r.ifname, predatesBoot };
      if (entry?.pod) view.pod = entry.pod;
      if (createdAt !== undefined) view.createdAt = createdAt;
      return view;
    })
    .sort((a, b) => compareAddresses(a.ip, b.ip));
}

/** Reads the store at `dir` (a network's directory: <dataDir>/<network>). */
export function readReservations(dir: string, boot: BootInfo = currentBoot()): ReservationView[] {
  const store = new Store(dir);
  const list = store.list().map((r) => {
    const at = store.reservedAt(r.ip);
    return at === undefined ? r : { ...r, reservedAt: at };
  });
  return viewReservations(list, store.indexEntries().entries, boot);
}

/** IPv4 before IPv6, then numerically. */
function compareAddresses(a: string, b: string): number {
  const x = parseIp(a);
  const y = parseIp(b);
  if (x.family !== y.family) return x.family - y.family;
  return x.value < y.value ? -1 : x.value > y.value ? 1 : 0;
}
