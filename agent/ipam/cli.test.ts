import { mkdtempSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { Store } from "../../ipam/store.js";
import { fakeApiserver } from "../../testkit/kube/fake-apiserver.js";
import { checkReservations, releaseAddress, releaseLeaked, renderCheck, type IpamCliOptions } from "./cli.js";
import { kubernetesPods } from "./pods.js";

const MIN = 60_000;
const BOOT = { id: "boot-now", startedAt: 0 };
const UID = (n: number) => `0000000${n}-aaaa-4bbb-8ccc-000000000000`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "twill-ipam-cli-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A reservation of pod `name` made `ago` ms before `now`, with its index entry. */
function reserve(store: Store, ip: string, name: string, uid: string, created: number): void {
  expect(store.reserve(ip, { containerID: `c-${name}`, ifname: "eth0" })).toBe(true);
  store.writeIndex({ containerID: `c-${name}`, ifname: "eth0", ips: [ip], bootId: BOOT.id, created: new Date(created).toISOString(), pod: { namespace: "default", name, uid } });
  utimesSync(join(store.dir, ip), created / 1000, created / 1000);
}

describe("twilld ipam release --leaked from a host shell", () => {
  const now = 1_000 * MIN;
  const HOST = ["192.0.2.10"];

  async function setUp() {
    const store = new Store(join(dir, "twill"));
    reserve(store, "10.244.1.2", "old-gone", UID(1), now - 60 * MIN);
    reserve(store, "10.244.1.3", "young-gone", UID(2), now - 5 * MIN);
    reserve(store, "10.244.1.4", "running", UID(3), now - 60 * MIN);
    const api = await fakeApiserver({
      nodes: { "node-0": ["192.0.2.10"], "node-1": ["192.0.2.11"] },
      pods: { "node-0": [{ metadata: { namespace: "default", name: "running", uid: UID(3) }, status: { phase: "Running", podIP: "10.244.1.4" } }] },
    });
    onTestFinished(api.close);
    const cli = (nodeName: string): IpamCliOptions => ({
      storeDir: store.dir, pods: kubernetesPods(api.kc, nodeName, { ownAddresses: () => HOST }), graceMs: 15 * MIN, now, boot: BOOT,
    });
    return { store, cli };
  }

  it("under the host name (no such Node) or another node's, releases nothing and says why", async () => {
    const { store, cli } = await setUp();
    for (const name of ["my-host", "node-1"]) {
      const outcome = await releaseLeaked(cli(name));
      expect(outcome.released).toEqual([]);
      const why = name === "my-host" ? /no Node named "my-host" in the API/ : /Node "node-1" is not this host/;
      expect(outcome.note).toMatch(why);
      const report = await checkReservations(cli(name));
      expect(report.pods).toBe("unverified");
      expect(renderCheck(report, now)).toMatch(/^REFUSED: .*; nothing would be released\.\n/);
      // One address, without --force: refused for the same reason.
      const one = await releaseAddress(cli(name), "10.244.1.2", false);
      expect(one.refused[0]?.why).toMatch(/cannot tell whether a live pod holds 10\.244\.1\.2: /);
      expect(one.refused[0]?.why).toMatch(why);
    }
    expect(store.reservedAddresses().sort()).toEqual(["10.244.1.2", "10.244.1.3", "10.244.1.4"]);
  });

  it("under its own name, applies the agent's grace from each reservation's creation: a pod gone a moment after its ADD keeps its address", async () => {
    const { store, cli } = await setUp();
    const outcome = await releaseLeaked(cli("node-0"));
    expect(outcome.released.map((r) => r.ip)).toEqual(["10.244.1.2"]);
    const report = await checkReservations(cli("node-0"));
    expect(report.reservations.map((j) => j.verdict.state)).toEqual(["pending", "held"]);
    expect(store.reservedAddresses().sort()).toEqual(["10.244.1.3", "10.244.1.4"]);
  });
});
