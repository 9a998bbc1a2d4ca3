import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log.js";
import { Store } from "../../ipam/store.js";
import { createMetrics } from "../metrics.js";
import { metricValue } from "../../testkit/node-net.js";
import type { LivePod, PodsView } from "./leaks.js";
import { LeakRecovery } from "./recovery.js";
import { viewReservations } from "./reservations.js";

const MIN = 60_000;
const BOOT = { id: "boot-now", startedAt: 0 };
const UID_A = "0000000a-aaaa-4bbb-8ccc-000000000000";
const UID_B = "0000000b-aaaa-4bbb-8ccc-000000000000";
const UID_C = "0000000c-aaaa-4bbb-8ccc-000000000000";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "twill-leaks-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A reservation as twill-ipam makes it: the host-local file and the index entry with the pod. */
function reserve(store: Store, ip: string, id: string, pod: { name: string; uid: string } | null, created: number, bootId = BOOT.id) {
  expect(store.reserve(ip, { containerID: id, ifname: "eth0" })).toBe(true);
  store.writeIndex({
    containerID: id,
    ifname: "eth0",
    ips: [ip],
    bootId,
    created: new Date(created).toISOString(),
    ...(pod ? { pod: { namespace: "default", ...pod } } : {}),
  });
}

describe("leak recovery", () => {
  it("releases a dead pod's address only after sweeps spanning the grace period saw it unused, logs and counts it", async () => {
    const store = new Store(join(dir, "twill"));
    store.ensure();
    reserve(store, "10.244.1.2", "live", { name: "a", uid: UID_A }, 0);
    reserve(store, "10.244.1.3", "dead", { name: "b", uid: UID_B }, 0);
    const live: LivePod = { namespace: "default", name: "a", uid: UID_A, ips: ["10.244.1.2"] };
    let pods: PodsView = { kind: "listed", pods: [live] };
    let now = 100 * MIN;
    const lines: Record<string, unknown>[] = [];
    const metrics = createMetrics(false);
    const recovery = new LeakRecovery({
      storeDir: store.dir,
      pods: { view: async () => pods },
      graceMs: 15 * MIN,
      intervalMs: MIN,
      logger: createLogger((l) => lines.push(JSON.parse(l))),
      metrics,
      now: () => now,
      boot: () => BOOT,
    });

    const verdicts = async () => (await recovery.sweep()).map((j) => `${j.reservation.ip} ${j.verdict.state}`);
    expect(await verdicts()).toEqual(["10.244.1.2 held", "10.244.1.3 pending"]);
    now += 10 * MIN;
    // The API away: nothing released, the suspicion kept.
    pods = { kind: "unavailable", reason: "HTTP 503" };
    expect(await verdicts()).toEqual(["10.244.1.2 kept", "10.244.1.3 kept"]);
    now += 5 * MIN;
    pods = { kind: "listed", pods: [live] };
    expect(await verdicts()).toEqual(["10.244.1.2 held", "10.244.1.3 leaked"]);
    expect(store.reservedAddresses().sort()).toEqual(["10.244.1.2"]);
    expect(store.indexEntries().entries.map((e) => e.containerID)).toEqual(["live"]);
    expect(lines.find((l) => l.msg === "Released leaked address")).toMatchObject({ address: "10.244.1.3", pod: "default/b", podUid: UID_B, reason: "pod-not-on-node" });
    const page = await metrics.registry.metrics();
    expect(metricValue(page, 'twill_ipam_leaks_released_total{reason="pod-not-on-node"}')).toBe(1);
    expect(metricValue(page, 'twill_ipam_leak_sweeps_skipped_total{reason="pods-unavailable"}')).toBe(1);
    expect(metricValue(page, "twill_ipam_leak_suspects")).toBe(0);
  });

  it("forgets a suspicion the pods clear (the pod showed up), and starts the grace period over", async () => {
    const store = new Store(join(dir, "twill"));
    reserve(store, "10.244.1.4", "slow", { name: "c", uid: UID_C }, 0);
    const pod: LivePod = { namespace: "default", name: "c", uid: UID_C, ips: [] };
    const views: PodsView[] = [{ kind: "listed", pods: [] }, { kind: "listed", pods: [pod] }, { kind: "listed", pods: [] }];
    let now = 100 * MIN;
    const recovery = new LeakRecovery({
      storeDir: store.dir,
      pods: { view: async () => views.shift()! },
      graceMs: 15 * MIN,
      intervalMs: MIN,
      logger: createLogger(() => {}),
      metrics: createMetrics(false),
      now: () => now,
      boot: () => BOOT,
    });
    const states: string[] = [];
    for (const step of [0, 10, 10]) {
      now += step * MIN;
      states.push((await recovery.sweep())[0]!.verdict.state);
    }
    expect(states).toEqual(["pending", "held", "pending"]);
  });
});

describe("viewReservations", () => {
  it("joins the index, and tells what predates the boot by boot ID, else by the file's time", () => {
    const index = [{ containerID: "a", ifname: "eth0", ips: ["10.0.0.2"], bootId: "old", created: "1970-01-01T00:01:00.000Z" }];
    const views = viewReservations(
      [
        { ip: "fd00::2", containerID: "c", ifname: "eth0", reservedAt: 5_000 },
        { ip: "10.0.0.10", containerID: "b", ifname: "", reservedAt: 500 },
        { ip: "10.0.0.2", containerID: "a", ifname: "eth0", reservedAt: 9_000 },
      ],
      index,
      { boot: { id: "new", startedAt: 1_000 }, indexComplete: false, sandbox: () => "unknown" },
    );
    expect(views.map((v) => [v.ip, v.createdAt, v.predatesBoot, v.torn])).toEqual([
      ["10.0.0.2", 60_000, true, undefined],
      ["10.0.0.10", 500, true, undefined],
      ["fd00::2", 5_000, false, undefined],
    ]);
  });
});
