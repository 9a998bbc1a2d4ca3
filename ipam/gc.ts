import type { Attachment } from "../shared/cni/types.js";
import { sameAttachment, type IndexEntry, type Owner, type Reservation } from "./store.js";

/**
 * GC as a pure decision over what the store holds (SPEC.md 1.1 GC): every reservation whose
 * attachment the runtime does not list is released, whoever made it; listed ones are kept,
 * whatever their age. The boot ID in the index only tells which released reservations came
 * from before the last reboot (the leak host-local users clear with rm -rf, plugins#252), and
 * which listed ones did: a runtime that lists an attachment from an earlier boot is worth a log
 * line, but the runtime's word decides.
 */
export interface GcPlan {
  release: Reservation[];
  /** Index entries of unlisted attachments, or of listed ones that hold nothing any more. */
  dropIndex: IndexEntry[];
  /** How many released reservations were made before this boot. */
  releasedFromEarlierBoot: number;
  /** Listed attachments whose index entry is from an earlier boot: kept, and logged. */
  keptFromEarlierBoot: Owner[];
}

export function planGc(reservations: Reservation[], index: IndexEntry[], valid: Attachment[], bootId: string): GcPlan {
  const listed = (o: Owner) => valid.some((v) => sameAttachment(o, { containerID: v.containerID, ifname: v.ifname }));
  const entryOf = (r: Reservation) => index.find((e) => e.containerID === r.containerID && e.ifname === r.ifname && e.ips.includes(r.ip));
  const earlier = (e: IndexEntry | undefined) => e !== undefined && e.bootId !== "" && e.bootId !== bootId;

  const release = reservations.filter((r) => !listed(r));
  const holds = (e: IndexEntry) => reservations.some((r) => e.ips.includes(r.ip) && sameAttachment(r, e));
  return {
    release,
    dropIndex: index.filter((e) => !listed(e) || !holds(e)),
    releasedFromEarlierBoot: release.filter((r) => earlier(entryOf(r))).length,
    keptFromEarlierBoot: index.filter((e) => listed(e) && holds(e) && earlier(e)).map(({ containerID, ifname }) => ({ containerID, ifname })),
  };
}
