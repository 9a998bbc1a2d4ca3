import { Store, podText, type SkippedName } from "../../ipam/store.js";
import { formatDuration } from "../durations.js";
import { renderTable } from "../table.js";
import { TORN_ADD_GRACE_MS, judgeReservations, leaked, type LeakOptions, type PodsView, type Verdict } from "./leaks.js";
import type { PodSource } from "./pod-source.js";
import { currentBoot, readStoreView, releaseReservation, type BootInfo, type ReservationView, type StoreView } from "./store-view.js";
import { noSandboxProbe, type SandboxProbe } from "./sandbox.js";

/**
 * `twilld ipam list|check|release`: this node's reservations, what the leak recovery would
 * release, and the manual release. Reading and deciding are separate from printing, so tests
 * run them on a store in a temp dir. The grace period here runs from each reservation's
 * creation (a one-shot command has no memory of earlier sweeps), and one whose creation is
 * unknown is not released at once. The pods come through the same source as the agent's, so
 * the same node check applies: under a node name that is not this node's, nothing is released.
 */

export interface IpamCliOptions {
  storeDir: string;
  pods: PodSource;
  graceMs: number;
  now?: number;
  boot?: BootInfo;
  sandbox?: SandboxProbe;
}

export type Output = "table" | "json";

export function listReservations(o: Pick<IpamCliOptions, "storeDir" | "boot" | "sandbox">): ReservationView[] {
  return readStore(o).reservations;
}

const readStore = (o: Pick<IpamCliOptions, "storeDir" | "boot" | "sandbox">): StoreView =>
  readStoreView(o.storeDir, o.boot ?? currentBoot(), o.sandbox ?? noSandboxProbe);

/** The agent's rule with the creation time for the start of suspicion (undefined: from now). */
const cliJudgeOptions = (o: IpamCliOptions): LeakOptions => ({
  now: o.now ?? Date.now(), graceMs: o.graceMs, suspectSince: (r) => r.createdAt,
});

export function renderReservations(rs: readonly ReservationView[], now: number): string {
  if (rs.length === 0) return "No reservations\n";
  const rows = [
    ["ADDRESS", "CONTAINER", "IFNAME", "POD", "AGE", "BEFORE BOOT"],
    ...rs.map((r) => [r.ip, shortId(r.containerID), r.ifname || "-", r.pod ? podText(r.pod) : "-", age(r, now), r.predatesBoot ? "yes" : "no"]),
  ];
  return renderTable(rows).join("\n") + "\n";
}

export interface CheckReport {
  pods: PodsView["kind"];
  /** Why nothing or only part can be judged (API unreachable, node name not this node's, datastore without pods). */
  note?: string;
  reservations: { reservation: ReservationView; verdict: Verdict }[];
  /** Store files skipped as no canonical address. */
  skipped?: SkippedName[];
}

export async function checkReservations(o: IpamCliOptions): Promise<CheckReport> {
  const { reservations, skipped } = readStore(o);
  const pods = await o.pods.view();
  const judged = judgeReservations(reservations, pods, cliJudgeOptions(o));
  return {
    pods: pods.kind,
    ...(pods.kind === "listed" ? {} : { note: pods.reason }),
    reservations: judged,
    ...(skipped.length > 0 ? { skipped } : {}),
  };
}

export function renderCheck(report: CheckReport, now: number): string {
  const out: string[] = [];
  if (report.pods === "unverified") out.push(`REFUSED: ${report.note}; nothing would be released.`);
  else if (report.note) out.push(`Note: ${report.note}`);
  for (const s of report.skipped ?? []) out.push(`Skipped store file ${JSON.stringify(s.name)}: ${s.why}`);
  if (report.reservations.length === 0) return [...out, "No reservations"].join("\n") + "\n";
  const rows = [
    ["ADDRESS", "POD", "AGE", "VERDICT", "WHY"],
    ...report.reservations.map(({ reservation: r, verdict: v }) => [r.ip, r.pod ? podText(r.pod) : "-", age(r, now), verdictText(v, now), whyText(v)]),
  ];
  out.push(...renderTable(rows));
  const n = leaked(report.reservations).length;
  out.push("", n === 0 ? "Nothing would be released." : `${n} address(es) would be released (twilld ipam release --leaked).`);
  return out.join("\n") + "\n";
}

export interface ReleaseOutcome {
  released: ReservationView[];
  /** Addresses not released, with why (held by a live pod, not reserved, ...). */
  refused: { ip: string; why: string }[];
}

/**
 * Releases `address`, refusing one a live pod holds, or any when that cannot be told (the API
 * unreachable, or no pods in the datastore and the reservation is from this boot), unless forced.
 */
export async function releaseAddress(o: IpamCliOptions, address: string, force: boolean): Promise<ReleaseOutcome> {
  const r = listReservations(o).find((x) => x.ip === address);
  if (!r) return { released: [], refused: [{ ip: address, why: `no reservation of ${address} in ${o.storeDir}` }] };
  const pods = await o.pods.view();
  const [j] = judgeReservations([r], pods, cliJudgeOptions(o));
  const refusal = refusalOf(j!.verdict, r);
  if (refusal && !force) return { released: [], refused: [{ ip: address, why: `${refusal}; --force releases it anyway` }] };
  const store = new Store(o.storeDir);
  // Forced or not, an empty file goes only as the empty file it was (a live ADD may be writing a new one).
  return (r.torn === "empty" ? store.releaseEmpty(r.ip, r.createdAt ?? 0) : store.releaseAddress(r.ip, r))
    ? { released: [r], refused: [] }
    : { released: [], refused: [{ ip: address, why: "it was released meanwhile" }] };
}

/** Releases what `check` shows as leaked: the agent's grace from each creation, its node check. */
export async function releaseLeaked(o: IpamCliOptions): Promise<ReleaseOutcome & { note?: string }> {
  const report = await checkReservations(o);
  const store = new Store(o.storeDir);
  const now = o.now ?? Date.now();
  const released = leaked(report.reservations).map((j) => j.reservation).filter((r) => releaseReservation(store, r, now, TORN_ADD_GRACE_MS));
  return { released, refused: [], ...(report.note ? { note: report.note } : {}) };
}

export function renderRelease(outcome: ReleaseOutcome & { note?: string }): string {
  const out: string[] = [];
  if (outcome.note) out.push(`Note: ${outcome.note}`);
  for (const r of outcome.released) out.push(`Released ${r.ip} (container ${shortId(r.containerID)}${r.pod ? `, pod ${podText(r.pod)}` : ""})`);
  for (const r of outcome.refused) out.push(`Refused ${r.ip}: ${r.why}`);
  if (outcome.released.length === 0 && outcome.refused.length === 0) out.push("Nothing to release.");
  return out.join("\n") + "\n";
}

function refusalOf(v: Verdict, r: ReservationView): string | null {
  if (v.state === "held") return v.by ? `${r.ip} is held by live pod ${podText(v.by)} (${v.by.uid})` : `${r.ip} is held: ${v.why}`;
  // A reservation with no pod recorded is released when no live pod lists its address.
  if (v.state === "kept" && v.cause !== "no-pod-recorded") return `cannot tell whether a live pod holds ${r.ip}: ${v.why}`;
  return null;
}

function verdictText(v: Verdict, now: number): string {
  switch (v.state) {
    case "held":
      return "in use";
    case "leaked":
      return "RELEASE";
    case "pending":
      return `release in ${formatDuration(v.releaseAt - now)}`;
    case "kept":
      return "keep";
  }
}

const whyText = (v: Verdict): string => v.why;

const shortId = (id: string) => (id.length > 13 ? id.slice(0, 13) : id);
const age = (r: ReservationView, now: number) => (r.createdAt === undefined ? "-" : formatDuration(now - r.createdAt));
