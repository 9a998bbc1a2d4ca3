import { closeSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log.js";
import { parseNetworkConfig } from "../config.js";
import { PoolExhaustedError } from "../errors.js";
import { gatherStatus, renderStatus } from "../status.js";
import { LocalStore } from "./local.js";
import { FakeClock } from "../../testkit/clock.js";
import { follow, request, subnetStoreContract } from "../../testkit/store-contract.js";
import { until } from "../../testkit/until.js";

/** Dates a file's last write a minute back: a torn file is then damaged, not a write in progress. */
const writtenLongAgo = (path: string) => utimesSync(path, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));

describe("local datastore", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  subnetStoreContract({
    // Leases are judged by the store's clock alone (file times only tell writes apart).
    clocked: true,
    fresh: async () => {
      const dir = mkdtempSync(join(tmpdir(), "twill-local-store-"));
      dirs.push(dir);
      return (network, leaseTTLMs, clock) => new LocalStore({ dir, network, leaseTTLMs, clock });
    },
  });
});

describe("local datastore reads", () => {
  it("hand out the same lease object while its file is unchanged, and a new one once it changes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "twill-local-reads-"));
    const network = parseNetworkConfig({ Network: "10.6.0.0/16", SubnetLen: 24 });
    const clock = new FakeClock(Date.now());
    const store = new LocalStore({ dir, network, leaseTTLMs: 60_000, clock });
    try {
      const a = await store.acquire(request("node-a"));
      await store.acquire(request("node-b"));
      const [first, again] = [await store.list(), await store.list()];
      expect(again.find((l) => l.nodeName === "node-a")).toBe(first.find((l) => l.nodeName === "node-a"));
      // A renewal later on: the record's expiry, and so its content, changes.
      await clock.advance(5);
      await store.renew(a);
      const renewed = await store.list();
      expect(renewed.find((l) => l.nodeName === "node-a")).not.toBe(first.find((l) => l.nodeName === "node-a"));
      expect(renewed.find((l) => l.nodeName === "node-b")).toBe(first.find((l) => l.nodeName === "node-b"));
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("local datastore with damaged files, and files being written", () => {
  const network = parseNetworkConfig({ Network: "10.5.0.0/23", SubnetLen: 24 });
  let dir = "";
  const stores: LocalStore[] = [];
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  });
  const open = (lines: string[] = [], level: "info" | "debug" = "info") => {
    const s = new LocalStore({ dir, network, leaseTTLMs: 60_000, logger: createLogger((l) => lines.push(l), level) });
    stores.push(s);
    return s;
  };
  const warnings = (lines: string[]) =>
    lines.map((l) => JSON.parse(l) as { level: string; msg: string; key?: string }).filter((l) => l.level === "warn");

  it("never hands out a subnet whose claim file cannot be read, and says which file", async () => {
    dir = mkdtempSync(join(tmpdir(), "twill-local-damaged-"));
    mkdirSync(join(dir, "subnets"), { recursive: true });
    const torn = join(dir, "subnets", "10.5.0.0_24");
    writeFileSync(torn, '{"nodeName":"node-live","expi');
    writtenLongAgo(torn);
    const lines: string[] = [];
    const a = open(lines);
    const lease = await a.acquire({ ...request("node-a"), preferredSubnets: ["10.5.0.0/24"] });
    expect(lease.subnets).toEqual(["10.5.1.0/24"]);
    // The torn claim is the only other subnet: the pool is full, not free.
    await expect(open().acquire(request("node-b"))).rejects.toBeInstanceOf(PoolExhaustedError);
    expect(readFileSync(torn, "utf8")).toBe('{"nodeName":"node-live","expi');
    expect(a.unreadable()).toEqual([{ kind: "claim", key: torn, reason: expect.stringMatching(/JSON/) }]);
    expect(warnings(lines).filter((w) => w.key === torn)).toHaveLength(1);
    // `twilld status` opens its own store and names the file too.
    const status = await gatherStatus(open(), "node-a", join(dir, "no-subnet-file"));
    expect(status.unreadable.map((r) => r.key)).toEqual([torn]);
    expect(renderStatus(status, Date.now())).toContain(`Warning:      unreadable subnet claim ${torn} (not valid JSON (truncated?)): its subnet counts as taken`);
  });

  it("keeps the last good view of a peer whose record is torn or replaced by a directory, and goes on with the others", async () => {
    dir = mkdtempSync(join(tmpdir(), "twill-local-damaged-"));
    const wide = parseNetworkConfig({ Network: "10.5.0.0/16", SubnetLen: 24 });
    const opener = () => {
      const s = new LocalStore({ dir, network: wide, leaseTTLMs: 60_000 });
      stores.push(s);
      return s;
    };
    for (const n of ["node-a", "node-b", "node-c"]) await opener().acquire(request(n));
    const lines: string[] = [];
    const watching = open(lines);
    const watcher = follow(watching);
    try {
      await watcher.seen("seeing a, b and c", (names) => names.join() === "node-a,node-b,node-c");
      const recordB = join(dir, "nodes", "node-b.json");
      writeFileSync(recordB, readFileSync(recordB, "utf8").slice(0, 40));
      writtenLongAgo(recordB);
      const recordC = join(dir, "nodes", "node-c.json");
      rmSync(recordC);
      mkdirSync(recordC);
      await opener().acquire(request("node-d"));
      await watcher.seen("seeing node-d join", (names) => names.includes("node-d"));
      expect(watcher.names()).toEqual(["node-a", "node-b", "node-c", "node-d"]);
      expect(watcher.errors).toEqual([]);
      // Every file read twice more, the damaged ones included: still one warning per file.
      await watching.list();
      expect((await watching.list()).map((l) => l.nodeName).sort()).toEqual(["node-a", "node-b", "node-c", "node-d"]);
      expect(watching.unreadable().map((r) => `${r.kind} ${r.key}`)).toEqual([`node ${recordB}`, `node ${recordC}`]);
      expect(warnings(lines).map((w) => w.key).sort()).toEqual([recordB, recordC]);
    } finally {
      watcher.stop();
    }
  });

  /**
   * A store that follows the directory, logging at debug level into `lines`; node-a holds one
   * of the two subnets, `free` is the other.
   */
  const watching = async () => {
    const lines: string[] = [];
    dir = mkdtempSync(join(tmpdir(), "twill-local-in-place-"));
    const a = await open().acquire(request("node-a"));
    const store = open(lines, "debug");
    const watcher = follow(store);
    await watcher.seen("seeing node-a", (names) => names.join() === "node-a");
    return { store, watcher, lines, free: a.subnets[0] === "10.5.0.0/24" ? "10.5.1.0/24" : "10.5.0.0/24" };
  };
  /** A peer's claim and record, as their writer puts them. */
  const peer = (name: string, subnet: string) => ({
    claim: { path: join(dir, "subnets", subnet.replace("/", "_")), text: JSON.stringify({ nodeName: name, expiresAt: Date.now() + 60_000 }) },
    record: {
      path: join(dir, "nodes", `${name}.json`),
      text: JSON.stringify({ ...request(name), nodeName: name, subnets: [subnet], expiresAt: Date.now() + 60_000 }),
    },
  });
  /** The watch has read the file at `path` while it was empty: taken for a write in progress (or, wrongly, for damage). */
  const sawEmpty = (store: LocalStore, lines: string[], path: string) =>
    store.unreadable().some((r) => r.key === path) ||
    lines.some((l) => {
      const entry = JSON.parse(l) as { msg: string; path?: string };
      return entry.msg === "Store file is being written; reading it again" && entry.path === path;
    });
  /**
   * Creates (or truncates) `path` and holds it open and empty, as a writer between its open and
   * its write, until the watch has read it; then writes with `write` and closes.
   */
  const writeInPlace = async (store: LocalStore, lines: string[], path: string, write: (fd: number) => void) => {
    const fd = openSync(path, "w");
    try {
      await until(`the watch reading ${path} empty`, () => sawEmpty(store, lines, path));
      write(fd);
    } finally {
      closeSync(fd);
    }
  };
  /** Neither listed nor logged as damaged: nothing but a write in progress was seen. */
  const expectNoDamage = (store: LocalStore, lines: string[]) => {
    expect(store.unreadable()).toEqual([]);
    expect(lines.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((l) => l.level === "warn" || l.level === "error")).toEqual([]);
  };

  it("takes a claim found empty between its writer's open and write for a write in progress, not damage, and follows what it says once written", async () => {
    const { store, watcher, lines, free } = await watching();
    const x = peer("peer-x", free);
    writeFileSync(x.claim.path, x.claim.text);
    writeFileSync(x.record.path, x.record.text);
    await watcher.seen("seeing peer-x join", (names) => names.includes("peer-x"));
    // The claim rewritten in place for a node that took the subnet over: truncated at open,
    // empty until the write. Meanwhile it cannot disprove peer-x's record; once written, it does.
    await writeInPlace(store, lines, x.claim.path, (fd) => writeSync(fd, JSON.stringify({ nodeName: "peer-w", expiresAt: Date.now() + 60_000 })));
    await watcher.seen("seeing peer-x leave", (names) => !names.includes("peer-x"));
    expectNoDamage(store, lines);
  });

  it("reads a record found empty again by itself, when no file event follows its writer's write", async () => {
    const { store, watcher, lines, free } = await watching();
    // Claim first, then the record written in place through another link to the same file:
    // the watched directory sees its creation but not the write, as when an event is lost.
    const y = peer("peer-y", free);
    writeFileSync(y.claim.path, y.claim.text);
    await writeInPlace(store, lines, y.record.path, () => {
      mkdirSync(join(dir, "elsewhere"));
      const elsewhere = join(dir, "elsewhere", "peer-y.json");
      linkSync(y.record.path, elsewhere);
      writeFileSync(elsewhere, y.record.text);
    });
    await watcher.seen("seeing peer-y join", (names) => names.includes("peer-y"));
    expectNoDamage(store, lines);
  });

  it("refuses a record that names another node than its file", async () => {
    const { store, watcher, free } = await watching();
    const z = peer("peer-z", free);
    writeFileSync(z.claim.path, z.claim.text);
    const forged = join(dir, "nodes", "peer-q.json");
    writeFileSync(forged, z.record.text);
    writtenLongAgo(forged);
    await until("the record being refused", () => store.unreadable().length === 1);
    expect(store.unreadable()).toEqual([{ kind: "node", key: forged, reason: 'names node "peer-z", not "peer-q"' }]);
    expect(watcher.names()).toEqual(["node-a"]);
  });
});
