import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log.js";
import { parseNetworkConfig } from "../config.js";
import { PoolExhaustedError } from "../errors.js";
import { gatherStatus, renderStatus } from "../status.js";
import { LocalStore } from "./local.js";
import { follow, request, subnetStoreContract } from "../../testkit/store-contract.js";
import { until } from "../../testkit/until.js";

describe("local datastore", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  subnetStoreContract({
    fresh: async () => {
      const dir = mkdtempSync(join(tmpdir(), "twill-local-store-"));
      dirs.push(dir);
      return (network, leaseTTLMs) => new LocalStore({ dir, network, leaseTTLMs });
    },
  });
});

describe("local datastore reads", () => {
  it("hand out the same lease object while its file is unchanged, and a new one once it changes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "twill-local-reads-"));
    const network = parseNetworkConfig({ Network: "10.6.0.0/16", SubnetLen: 24 });
    const store = new LocalStore({ dir, network, leaseTTLMs: 60_000 });
    try {
      const a = await store.acquire(request("node-a"));
      await store.acquire(request("node-b"));
      const [first, again] = [await store.list(), await store.list()];
      expect(again.find((l) => l.nodeName === "node-a")).toBe(first.find((l) => l.nodeName === "node-a"));
      await sleep(5);
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

describe("local datastore with damaged files", () => {
  const network = parseNetworkConfig({ Network: "10.5.0.0/23", SubnetLen: 24 });
  let dir = "";
  const stores: LocalStore[] = [];
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  });
  const open = (lines: string[] = []) => {
    const s = new LocalStore({ dir, network, leaseTTLMs: 60_000, logger: createLogger((l) => lines.push(l)) });
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
      await until("seeing a, b and c", () => watcher.names().join() === "node-a,node-b,node-c");
      const recordB = join(dir, "nodes", "node-b.json");
      writeFileSync(recordB, readFileSync(recordB, "utf8").slice(0, 40));
      const recordC = join(dir, "nodes", "node-c.json");
      rmSync(recordC);
      mkdirSync(recordC);
      await opener().acquire(request("node-d"));
      await until("seeing node-d join", () => watcher.names().includes("node-d"));
      await sleep(500); // several more polls: still one warning per file
      expect(watcher.names()).toEqual(["node-a", "node-b", "node-c", "node-d"]);
      expect(watcher.errors).toEqual([]);
      expect((await watching.list()).map((l) => l.nodeName).sort()).toEqual(["node-a", "node-b", "node-c", "node-d"]);
      expect(watching.unreadable().map((r) => `${r.kind} ${r.key}`)).toEqual([`node ${recordB}`, `node ${recordC}`]);
      expect(warnings(lines).map((w) => w.key).sort()).toEqual([recordB, recordC]);
    } finally {
      watcher.stop();
    }
  });
});
