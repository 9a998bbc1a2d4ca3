import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CniError } from "../shared/cni/errors.js";
import { createLogger } from "../shared/log.js";
import { planGc } from "./gc.js";
import { Store, bootId, isIpName, parseOwner, sameAttachment, type IndexEntry, type Reservation } from "./store.js";

let root: string;
let store: Store;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "twill-ipam-store-"));
  store = new Store(join(root, "net1"));
  store.ensure();
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const a = { containerID: "ctr-a", ifname: "eth0" };
const b = { containerID: "ctr-b", ifname: "eth0" };
const entry = (o: typeof a, ips: string[], boot = bootId()): IndexEntry => ({ ...o, ips, bootId: boot, created: "2026-01-01T00:00:00Z" });

describe("store", () => {
  it("reserves an address once, in host-local's file format, readable by root only", () => {
    expect(store.reserve("10.0.0.2", a)).toBe(true);
    expect(store.reserve("10.0.0.2", b)).toBe(false);
    expect(readFileSync(join(store.dir, "10.0.0.2"), "utf8")).toBe("ctr-a\r\neth0");
    expect(statSync(join(store.dir, "10.0.0.2")).mode & 0o777).toBe(0o600);
    expect(statSync(store.dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(store.dir, ".twill", "by-id")).mode & 0o777).toBe(0o700);
    expect(store.owner("10.0.0.2")).toEqual(a);
  });

  it("keeps index entries of container IDs of any length in names the file system takes", () => {
    for (const length of [1, 199, 200, 201, 251, 5000]) {
      const owner = { containerID: "c".repeat(length), ifname: "eth0" };
      store.writeIndex(entry(owner, ["10.0.0.2"]));
      expect(store.indexEntry(owner)?.containerID).toBe(owner.containerID);
      expect(store.indexEntry({ ...owner, containerID: "c".repeat(length + 1) })).toBeUndefined();
      store.dropIndex(owner);
    }
    expect(readdirSync(join(store.dir, ".twill", "by-id"))).toEqual([]);
  });

  it("releases only what the attachment holds", () => {
    store.reserve("10.0.0.2", a);
    expect(store.release("10.0.0.2", b)).toBe(false);
    expect(store.release("10.0.0.2", a)).toBe(true);
    expect(store.release("10.0.0.2", a)).toBe(false);
  });

  it("keeps an index whose content host-local's DEL walk can never match", () => {
    store.reserve("10.0.0.2", a);
    store.writeIndex(entry(a, ["10.0.0.2"]));
    const path = join(store.dir, ".twill", "by-id", "ctr-a@eth0");
    const text = readFileSync(path, "utf8");
    expect(text.trim()).not.toBe("ctr-a\r\neth0");
    expect(text.trim()).not.toBe("ctr-a");
    expect(JSON.parse(text)).toMatchObject({ containerID: "ctr-a", ifname: "eth0", ips: ["10.0.0.2"], bootId: bootId() });
    expect(bootId()).toMatch(/^[0-9a-f-]{36}$/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("finds an attachment's addresses through the index without reading other reservations", () => {
    store.reserve("10.0.0.2", a);
    store.reserve("fd00::2", a);
    store.writeIndex(entry(a, ["10.0.0.2", "fd00::2"]));
    // A reservation of the attachment that only a walk would find: the index answered alone.
    writeFileSync(join(store.dir, "10.0.0.3"), "ctr-a\r\neth0");
    expect(store.addressesOf(a)).toEqual(["10.0.0.2", "fd00::2"]);
  });

  it("walks for reservations host-local made, also the old ID-only form", () => {
    writeFileSync(join(store.dir, "10.0.0.5"), "ctr-a\r\neth0");
    writeFileSync(join(store.dir, "10.0.0.6"), "ctr-b");
    writeFileSync(join(store.dir, "last_reserved_ip.0"), "10.0.0.6");
    expect(store.addressesOf(a)).toEqual(["10.0.0.5"]);
    expect(store.addressesOf({ containerID: "ctr-b", ifname: "net1" })).toEqual(["10.0.0.6"]);
    expect(store.releaseAttachment(a)).toEqual(["10.0.0.5"]);
    expect(store.reservedAddresses()).toEqual(["10.0.0.6"]);
  });

  it("walks on ADD's duplicate check only where host-local has worked (its lock file)", () => {
    writeFileSync(join(store.dir, "10.0.0.5"), "ctr-a\r\neth0");
    expect(store.addressesOf(a, "if-host-local")).toEqual([]);
    writeFileSync(join(store.dir, "lock"), "");
    expect(store.addressesOf(a, "if-host-local")).toEqual(["10.0.0.5"]);
  });

  it("falls back to the walk when the index entry is stale", () => {
    store.writeIndex(entry(a, ["10.0.0.9"]));
    writeFileSync(join(store.dir, "10.0.0.9"), "ctr-b\r\neth0");
    writeFileSync(join(store.dir, "10.0.0.4"), "ctr-a\r\neth0");
    expect(store.addressesOf(a)).toEqual(["10.0.0.4"]);
    expect(store.releaseAttachment(a)).toEqual(["10.0.0.4"]);
    expect(store.indexEntry(a)).toBeUndefined();
    expect(store.owner("10.0.0.9")).toEqual(b);
  });

  it("lists only address-named files", () => {
    for (const f of ["10.0.0.2", "fd00::2", "lock", "last_reserved_ip.0", "last_reserved_ip.1"]) writeFileSync(join(store.dir, f), "x");
    expect(store.reservedAddresses().sort()).toEqual(["10.0.0.2", "fd00::2"]);
    expect(["1.2.3.4", "::1", "fd00::1.2.3.4", "lock", "last_reserved_ip.0", ".twill", "1.2.3", "abc"].map(isIpName)).toEqual([
      true, true, true, false, false, false, false, false,
    ]);
  });

  it("reads both of host-local's owner formats", () => {
    expect(parseOwner("c1\r\neth0")).toEqual({ containerID: "c1", ifname: "eth0" });
    expect(parseOwner("c1\n")).toEqual({ containerID: "c1", ifname: "" });
    expect(sameAttachment({ containerID: "c1", ifname: "" }, { containerID: "c1", ifname: "eth1" })).toBe(true);
    expect(sameAttachment({ containerID: "c1", ifname: "eth0" }, { containerID: "c1", ifname: "eth1" })).toBe(false);
  });

  it("names index files so no two attachments share one", () => {
    // With '_' as separator both would be "a_b_c".
    store.writeIndex(entry({ containerID: "a_b", ifname: "c" }, ["10.0.0.2"]));
    store.writeIndex(entry({ containerID: "a", ifname: "b_c" }, ["10.0.0.3"]));
    expect(readdirSync(join(store.dir, ".twill", "by-id")).sort()).toEqual(["a@b_c", "a_b@c"]);
    expect(store.indexEntries().entries).toHaveLength(2);
  });

  it("reports torn index files as junk, and leaves a writer's temporary, which may be about to be renamed, to removal by age", () => {
    writeFileSync(join(store.dir, ".twill", "by-id", "x@eth0"), "{");
    writeFileSync(join(store.dir, ".twill", "by-id", "y@eth0.json"), JSON.stringify(entry({ containerID: "x", ifname: "eth0" }, [])));
    writeFileSync(join(store.dir, ".twill", "by-id", "x@eth0.tmp-1-2"), JSON.stringify(entry({ containerID: "x", ifname: "eth0" }, [])));
    expect(store.indexEntries()).toEqual({ entries: [], junk: ["x@eth0", "y@eth0.json"] });
  });
});

describe("store: races, killed writers and odd names", () => {
  const ago = (path: string, ms: number) => utimesSync(path, (Date.now() - ms) / 1000, (Date.now() - ms) / 1000);

  it("holds the lock from reading the owner to unlinking: another releaser cannot free the address and an ADD take it in between", () => {
    store.reserve("10.0.0.2", a);
    // A second process (its own Store), which does not wait for the lock.
    const other = new Store(store.dir, undefined, 0);
    let handedToB = false;
    let refused: unknown;
    class Interleaved extends Store {
      override owner(ip: string) {
        const held = super.owner(ip);
        // Between this read and the unlink: a concurrent release of the same attachment, and an ADD of b.
        try {
          if (other.release(ip, a)) handedToB = other.reserve(ip, b);
        } catch (err) {
          refused = err;
        }
        return held;
      }
    }
    expect(new Interleaved(store.dir).release("10.0.0.2", a)).toBe(true);
    // Had the other release gone through, b's reservation must have survived.
    if (handedToB) expect(store.owner("10.0.0.2")).toEqual(b);
    expect(refused).toBeInstanceOf(CniError);
    expect(String(refused)).toMatch(/IPAM store lock .*\.twill\.lock is held by another process/);
    expect(existsSync(join(store.dir, ".twill.lock"))).toBe(false);
  });

  it("waits for a live holder's lock, and breaks one a dead holder left", () => {
    store.reserve("10.0.0.2", a);
    const lock = join(store.dir, ".twill.lock");
    writeFileSync(lock, "");
    expect(() => new Store(store.dir, undefined, 20).release("10.0.0.2", a)).toThrow(/is held by another process \(waited 20 ms\)/);
    expect(store.owner("10.0.0.2")).toEqual(a);
    ago(lock, 60_000);
    expect(new Store(store.dir, undefined, 20).release("10.0.0.2", a)).toBe(true);
    expect(readdirSync(store.dir).sort()).toEqual([".twill"]);
  });

  it("frees an empty reservation file (an ADD killed before writing its owner) only while empty and old enough", () => {
    writeFileSync(join(store.dir, "10.0.0.7"), "");
    expect(store.owner("10.0.0.7")).toEqual({ containerID: "", ifname: "" });
    expect(store.releaseEmpty("10.0.0.7", Date.now() - 60_000)).toBe(false); // too young: a live ADD's
    ago(join(store.dir, "10.0.0.7"), 120_000);
    store.reserve("10.0.0.8", a);
    ago(join(store.dir, "10.0.0.8"), 120_000);
    expect(store.releaseEmpty("10.0.0.8", Date.now() - 60_000)).toBe(false); // has an owner
    expect(store.releaseEmpty("10.0.0.7", Date.now() - 60_000)).toBe(true);
    expect(store.reservedAddresses()).toEqual(["10.0.0.8"]);
  });

  it("skips names that are no address in canonical text, logging each once, and never releases them", () => {
    const lines: Record<string, unknown>[] = [];
    const logged = new Store(store.dir, createLogger((l) => lines.push(JSON.parse(l))));
    for (const f of ["10.0.0.2", "10.244.1.05", "FD00::2", "fd00:0::3", "999.0.0.1"]) writeFileSync(join(store.dir, f), "ctr-a\r\neth0");
    const { addresses, skipped } = logged.reservationNames();
    expect(addresses).toEqual(["10.0.0.2"]);
    expect(skipped.sort((x, y) => (x.name < y.name ? -1 : 1))).toEqual([
      { name: "10.244.1.05", why: "not in the canonical form of 10.244.1.5" },
      { name: "999.0.0.1", why: "not an IP address" },
      { name: "FD00::2", why: "not in the canonical form of fd00::2" },
      { name: "fd00:0::3", why: "not in the canonical form of fd00::3" },
    ]);
    logged.reservedAddresses();
    expect(lines.filter((l) => l.msg === "Skipped a store file whose name is no canonical address")).toHaveLength(4);
    expect(logged.releaseAttachment(a)).toEqual(["10.0.0.2"]);
    expect(readdirSync(store.dir).filter((n) => n !== ".twill").sort()).toEqual(["10.244.1.05", "999.0.0.1", "FD00::2", "fd00:0::3"]);
  });

  it("takes an index entry's pod only when it has the right shape, and keeps the plugin that made it", () => {
    const path = join(store.dir, ".twill", "by-id", "ctr-a@eth0");
    writeFileSync(path, JSON.stringify({ ...entry(a, ["10.0.0.2"]), pod: { namespace: 5, name: "x" }, plugin: "twill" }));
    expect(store.indexEntry(a)).toEqual({ ...entry(a, ["10.0.0.2"]), plugin: "twill" });
    writeFileSync(path, JSON.stringify({ ...entry(a, []), ips: [7] }));
    expect(store.indexEntry(a)).toBeUndefined();
  });

  it("removes old temporaries of killed writers from the store and the index, nothing else", () => {
    const index = join(store.dir, ".twill", "by-id");
    for (const n of ["ctr-a@eth0.tmp-1-2", "ctr-b@eth0.tmp-3-4"]) writeFileSync(join(index, n), "{");
    for (const n of [".twill.lock.tmp-5-6", "10.0.0.2", "10.0.0.3.tmp-7-8x"]) writeFileSync(join(store.dir, n), "");
    for (const n of [join(index, "ctr-a@eth0.tmp-1-2"), join(store.dir, ".twill.lock.tmp-5-6"), join(store.dir, "10.0.0.2"), join(store.dir, "10.0.0.3.tmp-7-8x")]) ago(n, 3_600_000);
    expect(store.removeOldTemporaries().sort()).toEqual([join(store.dir, ".twill.lock.tmp-5-6"), join(index, "ctr-a@eth0.tmp-1-2")]);
    expect(readdirSync(index)).toEqual(["ctr-b@eth0.tmp-3-4"]);
  });
});

describe("GC plan", () => {
  const res = (ip: string, o: typeof a): Reservation => ({ ip, ...o });
  const now = "boot-now";

  it("releases every reservation not listed and keeps the listed ones", () => {
    const plan = planGc([res("10.0.0.2", a), res("10.0.0.3", b), res("10.0.0.4", { containerID: "old", ifname: "" })], [], [a], now);
    expect(plan.release.map((r) => r.ip)).toEqual(["10.0.0.3", "10.0.0.4"]);
    expect(planGc([res("10.0.0.2", a)], [], [], now).release).toHaveLength(1);
    // An ID-only reservation (old host-local) belongs to every interface of its container.
    expect(planGc([res("10.0.0.4", { containerID: "old", ifname: "" })], [], [{ containerID: "old", ifname: "eth1" }], now).release).toEqual([]);
  });

  it("tells reservations from before the reboot, and still keeps listed ones", () => {
    const reservations = [res("10.0.0.2", a), res("10.0.0.3", b), res("10.0.0.4", { containerID: "c", ifname: "eth0" })];
    const index = [entry(a, ["10.0.0.2"], "boot-before"), entry(b, ["10.0.0.3"], "boot-before"), entry({ containerID: "c", ifname: "eth0" }, ["10.0.0.4"], now)];
    const plan = planGc(reservations, index, [a], now);
    expect(plan.release.map((r) => r.ip)).toEqual(["10.0.0.3", "10.0.0.4"]);
    expect(plan.releasedFromEarlierBoot).toBe(1);
    expect(plan.keptFromEarlierBoot).toEqual([a]);
    expect(plan.dropIndex.map((e) => e.containerID)).toEqual(["ctr-b", "c"]);
  });

  it("drops index entries whose reservations are gone, listed or not", () => {
    const plan = planGc([], [entry(a, ["10.0.0.2"])], [a], now);
    expect(plan.dropIndex).toHaveLength(1);
    expect(plan.release).toEqual([]);
  });
});
