import { uptime } from "node:os";
import { parseIp } from "../../shared/net/cidr.js";
import { Store, bootId, type IndexEntry, type PodRef, type SkippedName } from "../../ipam/store.js";
import { noSandboxProbe, type SandboxProbe, type SandboxState } from "./sandbox.js";

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
  /**
   * What an ADD killed half-way left: "empty", a file without its owner (killed between
   * creating and writing it); "no-index", an owner without its index entry where every
   * reservation has one (host-local never used the store). Either ADD failed, so the runtime
   * never got the address; a retried ADD of the same sandbox took another (leaks.ts).
   */
  torn?: "empty" | "no-index";
  /** Whether the attachment's sandbox's network namespace is up, by its veth on this node (sandbox.ts). */
  sandbox: SandboxState;
}

/** This kernel boot: its ID (/proc/sys/kernel/random/boot_id) and when it began (Unix ms). */
export interface BootInfo {
  id: string;
  startedAt: number;
}

export const currentBoot = (): BootInfo => ({ id: bootId(), startedAt: Date.now() - uptime() * 1000 });

export interface ViewOptions {
  boot: BootInfo;
  /** Every reservation twill-ipam made has an index entry: the index is usable and host-local never worked here. */
  indexComplete: boolean;
  sandbox: SandboxProbe;
}

/** Joins reservations with their index entries, given each file's time. Pure. */
export function viewReservations(
  reservations: { ip: string; containerID: string; ifname: string; reservedAt?: number }[],
  index: IndexEntry[],
  o: ViewOptions,
): ReservationView[] {
  return reservations
    .map((r) => {
      const entry = index.find((e) => e.containerID === r.containerID && e.ifname === r.ifname && e.ips.includes(r.ip));
      const created = entry ? Date.parse(entry.created) : NaN;
      const createdAt = Number.isNaN(created) ? r.reservedAt : created;
      // The boot ID decides when the entry has one; else the time against the boot's start.
      const predatesBoot = entry?.bootId ? entry.bootId !== o.boot.id : createdAt !== undefined && createdAt < o.boot.startedAt;
      const torn = r.containerID === "" ? "empty" : !entry && o.indexComplete ? "no-index" : undefined;
      const sandbox = o.sandbox({ containerID: r.containerID, ifname: r.ifname, ...(entry?.plugin ? { plugin: entry.plugin } : {}) });
      const view: ReservationView = { ip: r.ip, containerID: r.containerID, ifname: r.ifname, predatesBoot, sandbox };
      if (entry?.pod) view.pod = entry.pod;
      if (createdAt !== undefined) view.createdAt = createdAt;
      if (torn) view.torn = torn;
      return view;
    })
    .sort((a, b) => compareAddresses(a.ip, b.ip));
}

export interface StoreView {
  reservations: ReservationView[];
  /** Files named like an address but not one in canonical form: skipped, never released. */
  skipped: SkippedName[];
}

/** Reads the store at `dir` (a network's directory: <dataDir>/<network>). */
export const readReservations = (dir: string, boot: BootInfo = currentBoot()): ReservationView[] => readStoreView(dir, boot).reservations;

/** The reservations of `store` (or of the store at a directory), and the files skipped. */
export function readStoreView(store: Store | string, boot: BootInfo = currentBoot(), sandbox: SandboxProbe = noSandboxProbe): StoreView {
  const s = typeof store === "string" ? new Store(store) : store;
  const { addresses, skipped } = s.reservationNames();
  const list = addresses.flatMap((ip) => {
    const owner = s.owner(ip);
    if (!owner) return [];
    const at = s.reservedAt(ip);
    return [at === undefined ? { ip, ...owner } : { ip, ...owner, reservedAt: at }];
  });
  const indexComplete = s.indexUsable() && !s.usedByHostLocal();
  return { reservations: viewReservations(list, s.indexEntries().entries, { boot, indexComplete, sandbox }), skipped };
}

/**
 * Releases one judged-leaked reservation, as the leak recovery and `twilld ipam release
 * --leaked` do: an empty file only while it is still empty and at least `tornGraceMs` old.
 */
export function releaseReservation(store: Store, r: ReservationView, now: number, tornGraceMs: number): boolean {
  return r.torn === "empty" ? store.releaseEmpty(r.ip, now - tornGraceMs) : store.releaseAddress(r.ip, r);
}

/** IPv4 before IPv6, then numerically. */
function compareAddresses(a: string, b: string): number {
  const x = parseIp(a);
  const y = parseIp(b);
  if (x.family !== y.family) return x.family - y.family;
  return x.value < y.value ? -1 : x.value > y.value ? 1 : 0;
}
