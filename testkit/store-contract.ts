import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, it } from "vitest";
import { stableVtepMac } from "../shared/kernel/vxlan.js";
import { covers, parseCidr } from "../shared/net/cidr.js";
import { systemClock, type Clock } from "../agent/clock.js";
import { parseNetworkConfig } from "../agent/config.js";
import { LeaseLostError, PoolExhaustedError } from "../agent/errors.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore } from "../agent/types.js";
import { FakeClock } from "./clock.js";
import { SEE_WITHIN_MS, until } from "./until.js";

/**
 * What every SubnetStore must do, run against a real backing store (a directory, a real
 * etcd-server, a real apiserver). `open` gives a fresh store instance; instances opened in one
 * test share one backing store (one directory, one etcd key prefix), as agents of one cluster do.
 */
export interface StoreHarness {
  /** Starts a test's backing store; returns an opener for instances on it. */
  fresh(): Promise<StoreOpener>;
  /**
   * The stores judge leases by the clock they are opened with, and nothing else decides when a
   * lease lapses: the contract then moves a fake clock instead of waiting. Without it (etcd
   * expires leases itself) the contract waits in real time.
   */
  clocked?: boolean;
}

export type StoreOpener = (network: NetworkConfig, leaseTTLMs: number, clock: Clock) => SubnetStore;

const NETWORK = parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 24 });
const LONG_TTL = 60_000;
const SHORT_TTL = 2_000;
/** Unclocked, a contract test waits on lease expiry in real time: longer than a unit test's default. */
const CONTRACT_TEST_MS = 60_000;

/** A node's request; its VTEP MAC the one derived from its name, as a real agent's is. */
export const request = (nodeName: string, mac = stableVtepMac(nodeName, 1)): AcquireRequest => ({
  nodeName,
  publicIP: "192.0.2.10",
  backend: { type: "vxlan", vtepMAC: mac, vni: 1, port: 4789 },
});

export interface Follower {
  /** The node names of the latest set, sorted; none before the first. */
  names(): string[];
  leases(): NodeLease[];
  errors: Error[];
  /**
   * Resolves with the first set the watch hands on (the latest one included) whose sorted node
   * names and leases `ok` accepts; fails after SEE_WITHIN_MS naming `what` and the last set.
   */
  seen(what: string, ok: (names: string[], leases: NodeLease[]) => boolean): Promise<NodeLease[]>;
  stop(): void;
}

/** A watcher that keeps the latest full set it was given, and can wait for one. */
export function follow(store: SubnetStore): Follower {
  let latest: NodeLease[] | undefined;
  const errors: Error[] = [];
  const waiting = new Set<(leases: NodeLease[]) => void>();
  const namesOf = (leases: NodeLease[]) => leases.map((l) => l.nodeName).sort();
  const stop = store.watch(
    (l) => {
      latest = l;
      for (const w of [...waiting]) w(l);
    },
    (e) => errors.push(e),
  );
  const seen = (what: string, ok: (names: string[], leases: NodeLease[]) => boolean) =>
    new Promise<NodeLease[]>((resolve, reject) => {
      const check = (leases: NodeLease[]) => {
        if (!ok(namesOf(leases), leases)) return;
        waiting.delete(check);
        clearTimeout(timer);
        resolve(leases);
      };
      const timer = setTimeout(() => {
        waiting.delete(check);
        reject(new Error(`not ${what} within ${SEE_WITHIN_MS} ms; last seen: ${latest ? `[${namesOf(latest).join(", ")}]` : "nothing"}`));
      }, SEE_WITHIN_MS);
      waiting.add(check);
      if (latest !== undefined) check(latest);
    });
  return { names: () => namesOf(latest ?? []), leases: () => latest ?? [], errors, seen, stop };
}

/** Time as a contract test passes it: the stores' fake clock when the harness is clocked, else real time. */
interface TestTime {
  clock: Clock;
  pass(ms: number): Promise<void>;
}

function testTime(clocked: boolean): TestTime {
  if (!clocked) return { clock: systemClock, pass: (ms) => sleep(ms) };
  const clock = new FakeClock(Date.now());
  return { clock, pass: (ms) => clock.advance(ms) };
}

export function subnetStoreContract(h: StoreHarness): void {
  const opened: SubnetStore[] = [];
  const cleanups: (() => void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) c();
    await Promise.all(opened.splice(0).map((s) => s.close()));
  }, CONTRACT_TEST_MS);
  /** A test's backing store and the time its stores live in. */
  const opener = async () => {
    const open = await h.fresh();
    const time = testTime(h.clocked ?? false);
    return Object.assign(
      (network = NETWORK, ttl = LONG_TTL) => {
        const s = open(network, ttl, time.clock);
        opened.push(s);
        return s;
      },
      { time },
    );
  };

  it("gives 20 nodes acquiring at once 20 distinct subnets inside the cluster CIDR", async () => {
    const open = await opener();
    // 32 subnets for 20 nodes: start indexes collide, so claims race and must be retried.
    const crowded = parseNetworkConfig({ Network: "10.244.0.0/19", SubnetLen: 24 });
    const leases = await Promise.all(Array.from({ length: 20 }, (_, i) => open(crowded).acquire(request(`node-${i}`))));
    const subnets = leases.map((l) => l.subnets[0]!);
    expect(new Set(subnets).size).toBe(20);
    const cluster = parseCidr("10.244.0.0/19");
    for (const s of subnets) {
      expect(covers(cluster, parseCidr(s))).toBe(true);
      expect(parseCidr(s).prefix).toBe(24);
    }
    const listed = await open().list();
    expect(listed.map((l) => `${l.nodeName}=${l.subnets[0]}`).sort()).toEqual(
      leases.map((l) => `${l.nodeName}=${l.subnets[0]}`).sort(),
    );
  }, CONTRACT_TEST_MS);

  it("gives a restarted node its own subnet back, even when its name would start elsewhere", async () => {
    const open = await opener();
    const first = await open().acquire({ ...request("node-r"), preferredSubnets: ["10.244.77.0/24"] });
    expect(first.subnets).toEqual(["10.244.77.0/24"]);
    await Promise.all(Array.from({ length: 5 }, (_, i) => open().acquire(request(`other-${i}`))));
    const again = await open().acquire(request("node-r", "02:00:00:00:00:99"));
    expect(again.subnets).toEqual(first.subnets);
    expect(again.acquiredAt).toBe(first.acquiredAt);
    const listed = (await open().list()).find((l) => l.nodeName === "node-r");
    expect(listed?.backend.vtepMAC).toBe("02:00:00:00:00:99");
  }, CONTRACT_TEST_MS);

  it("never hands a preferred subnet that another node holds", async () => {
    const open = await opener();
    const a = await open().acquire(request("node-a"));
    const b = await open().acquire({ ...request("node-b"), preferredSubnets: a.subnets });
    expect(b.subnets).not.toEqual(a.subnets);
  }, CONTRACT_TEST_MS);

  it("shows every watcher a new node, and a released node leaving", async () => {
    const open = await opener();
    await open().acquire(request("node-a"));
    await open().acquire(request("node-b"));
    const watchers = [follow(open()), follow(open()), follow(open())];
    cleanups.push(...watchers.map((w) => w.stop));
    for (const w of watchers) await w.seen("seeing a and b", (names) => names.join() === "node-a,node-b");

    const c = open();
    await c.acquire(request("node-c"));
    for (const w of watchers) await w.seen("seeing node-c join", (names) => names.includes("node-c"));

    await open().release("node-a");
    for (const w of watchers) await w.seen("seeing node-a leave", (names) => names.join() === "node-b,node-c");
    expect((await open().list()).map((l) => l.nodeName).sort()).toEqual(["node-b", "node-c"]);
  }, CONTRACT_TEST_MS);

  it("frees the subnet of a lease that was not renewed, and tells the old owner it lost it", async () => {
    const open = await opener();
    // A cluster CIDR that holds exactly one node subnet.
    const single = parseNetworkConfig({ Network: "10.9.0.0/24", SubnetLen: 24 });
    const a = open(single, SHORT_TTL);
    const lease = await a.acquire(request("node-a"));
    expect(lease.subnets).toEqual(["10.9.0.0/24"]);
    const b = open(single, SHORT_TTL);
    await expect(b.acquire(request("node-b"))).rejects.toBeInstanceOf(PoolExhaustedError);

    const watcher = follow(open(single, SHORT_TTL));
    cleanups.push(watcher.stop);
    await watcher.seen("seeing node-a", (names) => names.includes("node-a"));
    // node-a stops renewing: its lease lapses and it leaves every view, then node-b gets the subnet.
    await open.time.pass(SHORT_TTL + 1);
    await watcher.seen("seeing node-a's lease lapse", (names) => names.length === 0);
    const taken = await until("node-b claiming the freed subnet", () => b.acquire(request("node-b")).catch(() => undefined));
    expect(taken.subnets).toEqual(["10.9.0.0/24"]);
    await expect(a.renew(lease)).rejects.toBeInstanceOf(LeaseLostError);
  }, CONTRACT_TEST_MS);

  it("keeps a renewed lease alive past its TTL", async () => {
    const open = await opener();
    const single = parseNetworkConfig({ Network: "10.9.0.0/24", SubnetLen: 24 });
    const a = open(single, SHORT_TTL);
    let lease = await a.acquire(request("node-a"));
    // Three TTLs, renewed four times per TTL.
    for (let passed = 0; passed < 3 * SHORT_TTL; passed += SHORT_TTL / 4) {
      lease = await a.renew(lease);
      await open.time.pass(SHORT_TTL / 4);
    }
    await expect(open(single, SHORT_TTL).acquire(request("node-b"))).rejects.toBeInstanceOf(PoolExhaustedError);
    expect((await a.list()).map((l) => l.nodeName)).toEqual(["node-a"]);
    // Not renewed for a TTL, the same lease lapses: the renewals are what kept it.
    await open.time.pass(SHORT_TTL + 1);
    await until("node-a's lease lapsing once not renewed", async () => (await a.list()).length === 0);
  }, CONTRACT_TEST_MS);

  it("republishes changed backend data on renewal", async () => {
    const open = await opener();
    const a = open();
    const lease = await a.acquire(request("node-a", "02:00:00:00:00:01"));
    const watcher = follow(open());
    cleanups.push(watcher.stop);
    await watcher.seen("seeing node-a", (names) => names.includes("node-a"));
    await a.renew({ ...lease, backend: { ...lease.backend, vtepMAC: "02:00:00:00:00:02" } });
    await watcher.seen("seeing the new MAC", (_names, leases) => leases[0]?.backend.vtepMAC === "02:00:00:00:00:02");
  }, CONTRACT_TEST_MS);

  it("claims one subnet per family for a dual-stack cluster", async () => {
    const open = await opener();
    const dual = parseNetworkConfig({ Network: "10.244.0.0/16", IPv6Network: "fd00:10:244::/56" });
    const leases = await Promise.all(["d1", "d2", "d3"].map((n) => open(dual).acquire(request(n))));
    for (const l of leases) {
      expect(l.subnets).toHaveLength(2);
      expect(covers(parseCidr("10.244.0.0/16"), parseCidr(l.subnets[0]!))).toBe(true);
      expect(covers(parseCidr("fd00:10:244::/56"), parseCidr(l.subnets[1]!))).toBe(true);
    }
    expect(new Set(leases.map((l) => l.subnets[1])).size).toBe(3);
  }, CONTRACT_TEST_MS);

  it("fails with a clear error when the pool is exhausted, and gives back a half-claimed node", async () => {
    const open = await opener();
    const dual = parseNetworkConfig({ Network: "10.8.0.0/23", SubnetLen: 24, IPv6Network: "fd00:8::/64", IPv6SubnetLen: 64 });
    await open(dual).acquire(request("n1"));
    const err = await open(dual).acquire(request("n2")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoolExhaustedError);
    expect((err as Error).message).toMatch(/no free \/64 subnet left in fd00:8::\/64/);
    // n2 claimed an IPv4 subnet before the IPv6 pool ran out; it must be free again.
    const v4only = parseNetworkConfig({ Network: "10.8.0.0/23", SubnetLen: 24 });
    await open(v4only).acquire(request("n3"));
    expect((await open(v4only).list()).map((l) => l.nodeName).sort()).toEqual(["n1", "n3"]);
  }, CONTRACT_TEST_MS);
}
