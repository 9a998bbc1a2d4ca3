import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNetworkConfig } from "../config.js";
import { startEtcdServer, type EtcdServer } from "../../testkit/etcd.js";
import { startTcpProxy } from "../../testkit/tcp-proxy.js";
import { EtcdStore } from "./etcd.js";
import { follow, request, subnetStoreContract } from "../../testkit/store-contract.js";
import { until } from "../../testkit/until.js";

describe("etcd datastore", () => {
  let etcd: EtcdServer;
  let prefixes = 0;
  beforeAll(async () => {
    etcd = await startEtcdServer();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });
  const opener = (prefix: string) => (network: ReturnType<typeof parseNetworkConfig>, leaseTTLMs: number) =>
    new EtcdStore({ endpoints: [etcd.endpoint], prefix, network, leaseTTLMs });

  subnetStoreContract({
    // Each test its own key prefix on the one server: a fresh cluster.
    fresh: async () => opener(`/twill-test-${prefixes++}/`),
  });

  it("stores claims and node records under the prefix, attached to an etcd lease", async () => {
    const open = opener("/layout/");
    const store = open(parseNetworkConfig({ Network: "10.244.0.0/16" }), 60_000);
    try {
      const lease = await store.acquire({ ...request("node-k"), preferredSubnets: ["10.244.5.0/24"] });
      expect(lease.subnets).toEqual(["10.244.5.0/24"]);
      const { kvs } = await store.client.rangePrefix("/layout/");
      expect(kvs.map((kv) => kv.key).sort()).toEqual(["/layout/nodes/node-k", "/layout/subnets/10.244.5.0-24"]);
      expect(JSON.parse(kvs.find((kv) => kv.key.includes("subnets"))!.value)).toEqual({ nodeName: "node-k" });
      expect(new Set(kvs.map((kv) => kv.lease)).size).toBe(1);
      expect(kvs[0]!.lease).not.toBe("0");
    } finally {
      await store.close();
    }
  });

  it("keeps a running store's lease and watch through an etcd restart", async () => {
    const open = opener("/restart/");
    const network = parseNetworkConfig({ Network: "10.244.0.0/16" });
    const a = open(network, 30_000);
    const watcherStore = open(network, 30_000);
    const watcher = follow(watcherStore);
    try {
      const lease = await a.acquire(request("node-a"));
      await until("seeing node-a", () => watcher.names().includes("node-a"));
      const oldPid = etcd.pid();

      await etcd.restart();
      expect(etcd.pid()).not.toBe(oldPid);

      // The lease survives (etcd restores leases) and renewing works again.
      const renewed = await until("renewing after the restart", () => a.renew(lease).catch(() => undefined));
      expect(renewed.subnets).toEqual(lease.subnets);
      // The watch resumes: a node that joins after the restart shows up.
      await open(network, 30_000).acquire(request("node-b"));
      await until("seeing node-b after the restart", () => watcher.names().includes("node-b"));
      expect(watcher.errors.length).toBeGreaterThan(0);
      // And node-a still holds its subnet: another acquire by its name gets the same one back.
      expect((await open(network, 30_000).acquire(request("node-a"))).subnets).toEqual(lease.subnets);
    } finally {
      watcher.stop();
      await a.close();
      await watcherStore.close();
    }
  });

  it("treats a claim value that does not decode as taken, and keeps the last good view of a peer whose record does not decode", async () => {
    const prefix = "/damaged/";
    const network = parseNetworkConfig({ Network: "10.5.0.0/23", SubnetLen: 24 });
    const open = opener(prefix);
    const a = open(network, 30_000);
    const watcherStore = open(network, 30_000);
    const watcher = follow(watcherStore);
    try {
      await a.client.put(`${prefix}subnets/10.5.0.0-24`, '{"nodeName":"node-li');
      const lease = await a.acquire({ ...request("node-a"), preferredSubnets: ["10.5.0.0/24"] });
      expect(lease.subnets).toEqual(["10.5.1.0/24"]);
      await expect(open(network, 30_000).acquire(request("node-b"))).rejects.toThrow(/no free \/24 subnet/);
      expect(a.unreadable()).toEqual([{ kind: "claim", key: `${prefix}subnets/10.5.0.0-24`, reason: expect.any(String) }]);

      await until("seeing node-a", () => watcher.names().includes("node-a"));
      await a.client.put(`${prefix}nodes/node-a`, "{truncated");
      await a.client.put(`${prefix}nodes/node-z`, "garbage");
      await until("the damage reported", () => watcherStore.unreadable().length === 3 || undefined);
      expect(watcher.names()).toEqual(["node-a"]);
      expect(watcher.leases()[0]!.subnets).toEqual(["10.5.1.0/24"]);
      expect(watcherStore.unreadable().map((r) => `${r.kind} ${r.key}`)).toEqual([
        `node ${prefix}nodes/node-a`,
        `node ${prefix}nodes/node-z`,
        `claim ${prefix}subnets/10.5.0.0-24`,
      ].sort((x, y) => (x.split(" ")[1]! < y.split(" ")[1]! ? -1 : 1)));
    } finally {
      watcher.stop();
      await a.close();
      await watcherStore.close();
    }
  });

  it("relists when the watch resumes at a compacted revision", async () => {
    const proxy = await startTcpProxy(Number(new URL(etcd.endpoint).port));
    const network = parseNetworkConfig({ Network: "10.244.0.0/16" });
    // The watcher reaches etcd through the proxy; everyone else directly.
    const watcherStore = new EtcdStore({ endpoints: [proxy.endpoint], prefix: "/compact/", network, leaseTTLMs: 30_000 });
    const writer = opener("/compact/")(network, 30_000);
    const watcher = follow(watcherStore);
    try {
      await writer.acquire(request("node-a"));
      await until("seeing node-a", () => watcher.names().includes("node-a"));
      await proxy.cut();
      // While the watcher is cut off: changes, then a compaction past them.
      await writer.acquire(request("node-c"));
      await writer.release("node-a");
      const { revision } = await writer.client.range("/compact/");
      const compacted = await fetch(`${etcd.endpoint}/v3/kv/compaction`, { method: "POST", body: JSON.stringify({ revision: String(revision) }) });
      expect(compacted.ok).toBe(true);
      await proxy.heal();
      await until("seeing node-c and not node-a", () => watcher.names().join() === "node-c");
      expect(watcher.errors.map((e) => e.message).join("\n")).toMatch(/compacted/);
    } finally {
      watcher.stop();
      await watcherStore.close();
      await writer.close();
      await proxy.close();
    }
  });
});
