import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { createLogger } from "../../shared/log.js";
import { Store } from "../../ipam/store.js";
import { createMetrics } from "../metrics.js";
import { fakeApiserver } from "../../testkit/kube/fake-apiserver.js";
import { metricValue } from "../../testkit/node-net.js";
import { TORN_ADD_GRACE_MS, type LivePod, type PodsView } from "./leaks.js";
import { kubernetesPods } from "./pods.js";
import { LeakRecovery, type LeakRecoveryOptions } from "./recovery.js";
import { readLeakReport, renderLeakReport } from "./report.js";
import { viewReservations } from "./store-view.js";

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

describe("leak recovery under a node name that is not this node's", () => {
  const HOST = ["127.0.0.1", "192.0.2.10"];
  const runningPod = (name: string, uid: string, ip: string) => ({ metadata: { namespace: "default", name, uid }, status: { phase: "Running", podIP: ip } });

  it("releases nothing, ever, and says so once, in the metric and in the report; resumes under the right name, stops when its Node goes", async () => {
    const store = new Store(join(dir, "twill"));
    reserve(store, "10.244.1.2", "live", { name: "a", uid: UID_A }, 0);
    reserve(store, "10.244.1.3", "dead", { name: "b", uid: UID_B }, 0);
    reserve(store, "10.244.1.4", "rebooted", { name: "c", uid: UID_C }, 0, "an-earlier-boot");
    writeFileSync(join(store.dir, "10.244.1.5"), ""); // a killed ADD's
    utimesSync(join(store.dir, "10.244.1.5"), 0, 0);
    const api = { nodes: { "node-0": ["192.0.2.10"], "node-1": ["192.0.2.11"] } as Record<string, string[]>, pods: { "node-0": [runningPod("a", UID_A, "10.244.1.2")] } };
    const apiserver = await fakeApiserver(api);
    onTestFinished(apiserver.close);
    const lines: Record<string, unknown>[] = [];
    const metrics = createMetrics(false);
    let now = 100 * MIN;
    const reportFile = join(dir, "leaks.json");
    const recovery = (nodeName: string) => new LeakRecovery({
      storeDir: store.dir,
      pods: kubernetesPods(apiserver.kc, nodeName, { ownAddresses: () => HOST }),
      graceMs: 15 * MIN,
      intervalMs: MIN,
      logger: createLogger((l) => lines.push(JSON.parse(l))),
      metrics,
      reportFile,
      now: () => now,
      boot: () => BOOT,
    } satisfies LeakRecoveryOptions);
    const all = ["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5"];

    // The host name as node name (no such Node), then another node's name: a day of sweeps each.
    for (const wrong of ["my-host", "node-1"]) {
      const r = recovery(wrong);
      for (let i = 0; i < 24 * 60; i += 30) {
        now += 30 * MIN;
        expect(new Set((await r.sweep()).map((j) => j.verdict.state))).toEqual(new Set(["kept"]));
      }
      expect(store.reservedAddresses().sort()).toEqual(all);
    }
    const refusals = lines.filter((l) => l.msg === "Leak recovery refuses to release any address: the node name is not shown to be this node's");
    expect(refusals.map((l) => l.reason)).toEqual([
      'no Node named "my-host" in the API: --node-name must be kubelet\'s node name',
      expect.stringMatching(/^Node "node-1" is not this host: none of its addresses \(192\.0\.2\.11\) is on this host's interfaces/),
    ]);
    expect(lines.some((l) => l.msg === "Released leaked address")).toBe(false);
    const page = await metrics.registry.metrics();
    expect(metricValue(page, 'twill_ipam_leak_sweeps_skipped_total{reason="node-unverified"}')).toBe(96);
    const report = readLeakReport(reportFile)!;
    expect(report).toMatchObject({ state: "refused", reason: expect.stringContaining('Node "node-1" is not this host'), reservations: 4 });
    expect(renderLeakReport(report, now).join("\n")).toMatch(/^Leak recovery: REFUSING to release anything .*\n  why: Node "node-1" is not this host/);

    // Its own name: the dead pod's, the earlier boot's and the killed ADD's go after the grace.
    const right = recovery("node-0");
    expect((await right.sweep()).map((j) => j.verdict.state)).toEqual(["held", "pending", "pending", "leaked"]);
    now += 15 * MIN;
    expect((await right.sweep()).map((j) => j.verdict.state)).toEqual(["held", "leaked", "leaked"]);
    expect(store.reservedAddresses()).toEqual(["10.244.1.2"]);
    expect(readLeakReport(reportFile)).toMatchObject({ state: "releasing", reservations: 3, suspects: 0 });

    // The Node deleted (or renamed): refused again, even for the pod that is now gone.
    delete api.nodes["node-0"];
    api.pods["node-0"] = [];
    for (let i = 0; i < 5; i++) {
      now += 15 * MIN;
      expect((await right.sweep()).map((j) => j.verdict.state)).toEqual(["kept"]);
    }
    expect(store.reservedAddresses()).toEqual(["10.244.1.2"]);
    expect(readLeakReport(reportFile)).toMatchObject({ state: "refused", reason: expect.stringContaining('no Node named "node-0"') });
  });
});

describe("leak recovery and what killed writers leave", () => {
  const options = (storeDir: string, now: () => number, lines: Record<string, unknown>[] = []): LeakRecoveryOptions => ({
    storeDir,
    pods: { view: async () => ({ kind: "listed", pods: [] }) },
    graceMs: 15 * MIN,
    intervalMs: MIN,
    logger: createLogger((l) => lines.push(JSON.parse(l))),
    metrics: createMetrics(false),
    now,
    boot: () => BOOT,
  });

  it("skips a store file named like no canonical address, says so once and counts it, and still releases the rest", async () => {
    const store = new Store(join(dir, "twill"));
    reserve(store, "10.244.1.3", "dead", { name: "b", uid: UID_B }, 0, "an-earlier-boot");
    writeFileSync(join(store.dir, "10.244.1.05"), "x\r\neth0");
    writeFileSync(join(store.dir, "FD00::2"), "y\r\neth0");
    const lines: Record<string, unknown>[] = [];
    let now = 100 * MIN;
    const o = options(store.dir, () => now, lines);
    const recovery = new LeakRecovery(o);
    expect((await recovery.sweep()).map((j) => `${j.reservation.ip} ${j.verdict.state}`)).toEqual(["10.244.1.3 pending"]);
    now += 15 * MIN;
    expect((await recovery.sweep()).map((j) => `${j.reservation.ip} ${j.verdict.state}`)).toEqual(["10.244.1.3 leaked"]);
    expect(readdirSync(store.dir).filter((n) => !n.startsWith(".")).sort()).toEqual(["10.244.1.05", "FD00::2"]);
    expect(lines.filter((l) => l.msg === "Skipped a store file whose name is no canonical address").map((l) => l.why)).toEqual([
      "not in the canonical form of 10.244.1.5",
      "not in the canonical form of fd00::2",
    ]);
    expect(metricValue(await o.metrics.registry.metrics(), "twill_ipam_store_skipped_files")).toBe(2);
  });

  it("releases an empty reservation file only once older than the short grace, and a reservation without its index entry", async () => {
    const store = new Store(join(dir, "twill"));
    store.ensure();
    let now = 100 * MIN;
    const at = (ms: number, ...names: string[]) => names.forEach((n) => utimesSync(join(store.dir, n), ms / 1000, ms / 1000));
    writeFileSync(join(store.dir, "10.244.1.7"), "");
    writeFileSync(join(store.dir, "10.244.1.8"), "killed-add\r\neth0");
    at(now - TORN_ADD_GRACE_MS + MIN, "10.244.1.7", "10.244.1.8");
    const recovery = new LeakRecovery(options(store.dir, () => now));
    expect((await recovery.sweep()).map((j) => j.verdict.state)).toEqual(["pending", "pending"]);
    // A live ADD's fresh empty file in its place is never taken, though the old one was judged leaked.
    now += MIN;
    expect(store.releaseEmpty("10.244.1.7", now - TORN_ADD_GRACE_MS - 1)).toBe(false);
    expect((await recovery.sweep()).map((j) => j.verdict.state)).toEqual(["leaked", "leaked"]);
    expect(store.reservedAddresses()).toEqual([]);
  });

  it("removes temporaries of killed writers older than minutes from the store and its index, and nothing else", async () => {
    const store = new Store(join(dir, "twill"));
    store.ensure();
    const now = Date.now();
    const names = {
      old: join(store.dir, ".twill", "by-id", "c@eth0.tmp-123-456"),
      fresh: join(store.dir, ".twill", "by-id", "d@eth0.tmp-124-457"),
      lock: join(store.dir, ".twill.lock.tmp-9-9"),
      lookalike: join(store.dir, "10.244.1.9.tmp"),
    };
    for (const path of Object.values(names)) writeFileSync(path, "{");
    for (const path of [names.old, names.lock, names.lookalike]) utimesSync(path, (now - 11 * MIN) / 1000, (now - 11 * MIN) / 1000);
    const lines: Record<string, unknown>[] = [];
    await new LeakRecovery(options(store.dir, () => now, lines)).sweep();
    expect(readdirSync(join(store.dir, ".twill", "by-id"))).toEqual(["d@eth0.tmp-124-457"]);
    expect(readdirSync(store.dir).sort()).toEqual([".twill", "10.244.1.9.tmp"]);
    expect(lines.find((l) => l.msg === "Removed temporaries of killed writers")).toMatchObject({ files: [names.lock, names.old] });
  });
});
