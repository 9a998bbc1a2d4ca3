import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, describe, expect, it } from "vitest";
import type { Daemon } from "../testkit/daemon.js";
import { readSubnetFile } from "../shared/subnet-file.js";
import { ipIn } from "../testkit/netns.js";
import { covers, parseCidr } from "../shared/net/cidr.js";
import { until } from "../testkit/until.js";
import { startEtcdServer, type EtcdServer } from "../testkit/etcd.js";
import { NodeNet, metricValue, type SimNode } from "../testkit/node-net.js";
import { podIpamStore } from "../testkit/pods.js";

/**
 * The real dist/bin/twilld, one per simulated node namespace, against the local and the etcd
 * datastore: subnet files, /readyz, /metrics, status, restarts, and a bad config.
 */

const NET_CONF = { Network: "10.244.0.0/16", SubnetLen: 24, Backend: { Type: "vxlan" } };

describe("twilld", () => {
  let net: NodeNet | null = null;
  let etcd: EtcdServer | null = null;
  const daemons: Daemon[] = [];
  afterEach(async () => {
    await Promise.all(daemons.splice(0).map((d) => d.stop()));
    await etcd?.destroy();
    etcd = null;
    await net?.destroy();
    net = null;
  });

  const netConf = (n: NodeNet, conf: unknown = NET_CONF) => {
    const path = join(n.dir, `net-conf-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(path, JSON.stringify(conf));
    return path;
  };
  /** The error a fatal exit logged (stderr is JSON lines). */
  const fatal = (stderr: string): string =>
    (JSON.parse(stderr.trim().split("\n").at(-1)!) as { error: string }).error;
  const runArgs = (node: SimNode, store: string[], conf: string) => [
    "run",
    `--node-name=${node.name}`,
    `--net-conf=${conf}`,
    `--subnet-file=${node.subnetFile}`,
    `--state-dir=${node.dir}`,
    "--resync=2s",
    "--lease-ttl=30s",
    `--ipam-store=${podIpamStore(node)}`,
    ...store,
  ];
  const start = (n: NodeNet, node: SimNode, store: string[], conf: string) => {
    mkdirSync(node.dir, { recursive: true });
    const d = n.twilld(node, runArgs(node, store, conf));
    daemons.push(d);
    return d;
  };
  const ready = (n: NodeNet, node: SimNode, d: Daemon) =>
    until(`${node.name} ready`, async () => {
      if (d.exited()) throw new Error(`${node.name} ${d.exited()}: ${d.logTail()}`);
      return (await n.get(node, "/readyz")).status === 200 || undefined;
    });
  const metric = async (n: NodeNet, node: SimNode, name: string) => metricValue((await n.get(node, "/metrics")).body, name);

  it("leases distinct subnets from the local datastore, serves /readyz and /metrics, and keeps the subnet over a restart", async () => {
    net = await NodeNet.create(3);
    const n = net;
    const store = ["--datastore=local", `--store-dir=${join(n.dir, "store")}`];
    const conf = netConf(n);
    const agents = n.nodes.map((node) => start(n, node, store, conf));
    await Promise.all(n.nodes.map((node, i) => ready(n, node, agents[i]!)));

    const files = n.nodes.map((node) => readSubnetFile(node.subnetFile));
    expect(new Set(files.map((f) => f.nodeSubnets[0])).size).toBe(3);
    for (const f of files) {
      expect(covers(parseCidr("10.244.0.0/16"), parseCidr(f.nodeSubnets[0]!))).toBe(true);
      expect(f.mtu).toBe(1500 - 50);
      expect(f.clusterCIDRs).toEqual(["10.244.0.0/16"]);
    }
    expect((await n.get(n.nodes[0]!, "/healthz")).status).toBe(200);
    for (const node of n.nodes) {
      await until(`${node.name} seeing 2 peers`, async () => (await metric(n, node, "twill_peers")) === 2 || undefined);
      expect(await metric(n, node, "twill_lease_held")).toBe(1);
      expect(await metric(n, node, "twill_reconcile_errors_total")).toBe(0);
    }
    // The claim files of the local store, one per node.
    expect(readFileSync(join(n.dir, "store/subnets", files[1]!.nodeSubnets[0]!.replace("/", "_")), "utf8")).toContain('"node-1"');

    // status from node-0: its lease and both peers.
    const status = await n.exec(n.nodes[0]!, ["status", "--node-name=node-0", ...store, `--subnet-file=${n.nodes[0]!.subnetFile}`, "--output=json"]);
    expect(status.exitCode).toBe(0);
    const report = JSON.parse(status.stdout) as { lease: { subnets: string[] }; peers: { nodeName: string }[] };
    expect(report.lease.subnets).toEqual(files[0]!.nodeSubnets);
    expect(report.peers.map((p) => p.nodeName)).toEqual(["node-1", "node-2"]);

    // Stop node-1: the datapath and the subnet file stay (flannel#1308); a restart gets the same subnet.
    const node1 = n.nodes[1]!;
    const vtepBefore = await ipIn(node1.ns).link("twill.1");
    expect(vtepBefore).not.toBeNull();
    await agents[1]!.stop();
    expect(agents[1]!.exited()).toMatch(/exited with code 0/);
    expect(await ipIn(node1.ns).link("twill.1")).not.toBeNull();
    expect(existsSync(node1.subnetFile)).toBe(true);
    const routesKept = await ipIn(node1.ns).routes(4, ["proto", "150"]);
    expect(routesKept.map((r) => r.dst).sort()).toEqual([files[0]!.nodeSubnets[0], files[2]!.nodeSubnets[0]].sort());

    // Restarted as a manifest of an earlier release starts it: the flag it no longer reads is accepted and said once.
    const again = start(n, node1, [...store, "--ipam-dir=/var/lib/cni/networks"], conf);
    await ready(n, node1, again);
    expect(readSubnetFile(node1.subnetFile).nodeSubnets).toEqual(files[1]!.nodeSubnets);
    expect(again.logTail(1000).split("\n").filter((l) => l.includes("--ipam-dir is deprecated"))).toHaveLength(1);
  });

  it("starts no process in a resync with nothing changed: the kernel is watched and read over netlink", async () => {
    net = await NodeNet.create(2);
    const n = net;
    const store = ["--datastore=local", `--store-dir=${join(n.dir, "store")}`];
    const conf = netConf(n, { ...NET_CONF, IPMasq: true });
    const agents = n.nodes.map((node) => start(n, node, store, conf));
    await Promise.all(n.nodes.map((node, i) => ready(n, node, agents[i]!)));
    const node = n.nodes[0]!;
    await until("node-0 seeing its peer", async () => (await metric(n, node, "twill_peers")) === 1 || undefined);
    // Let the rounds after start-up settle (they read back what start-up programmed).
    const base = (await metric(n, node, "twill_reconciles_total"))!;
    await until("two more resyncs", async () => ((await metric(n, node, "twill_reconciles_total"))! >= base + 2) || undefined, 20_000);

    const trace = join(n.dir, "strace-resync");
    const strace = execa("strace", ["-f", "-qq", "-e", "trace=execve", "-o", trace, "-p", String(agents[0]!.pid)], { reject: false });
    try {
      await until("strace attached", () => existsSync(trace) || undefined);
      const from = (await metric(n, node, "twill_reconciles_total"))!;
      await until("three resyncs under strace", async () => ((await metric(n, node, "twill_reconciles_total"))! >= from + 3) || undefined, 30_000);
    } finally {
      strace.kill("SIGINT");
      await strace;
    }
    expect(readFileSync(trace, "utf8").split("\n").filter((l) => l.includes("execve("))).toEqual([]);
    // The resyncs did run, and found the datapath and the masquerade in place.
    expect(await metric(n, node, "twill_reconcile_errors_total")).toBe(0);
  });

  it("exits non-zero naming the bad field, and writes no subnet file", async () => {
    net = await NodeNet.create(1);
    const node = net.nodes[0]!;
    mkdirSync(node.dir, { recursive: true });
    const bad = netConf(net, { Network: "10.244.0.0/16", SubnetLen: 12 });
    const r = await net.exec(node, runArgs(node, ["--datastore=local", `--store-dir=${join(net.dir, "store")}`], bad));
    expect(r.exitCode).not.toBe(0);
    expect(fatal(r.stderr)).toMatch(/"SubnetLen" 12 is shorter than "Network" 10.244.0.0\/16/);
    expect(existsSync(node.subnetFile)).toBe(false);
    expect(existsSync(join(net.dir, "store"))).toBe(false);

    const unknown = netConf(net, { Network: "10.244.0.0/16", Backend: { Type: "udp" } });
    const r2 = await net.exec(node, runArgs(node, ["--datastore=local", `--store-dir=${join(net.dir, "store")}`], unknown));
    expect(r2.exitCode).not.toBe(0);
    expect(fatal(r2.stderr)).toMatch(/"Backend.Type" "udp" is not a known backend/);
    expect(existsSync(node.subnetFile)).toBe(false);
  });

  it("is not ready while the pool is exhausted, and becomes ready when a subnet frees up", async () => {
    net = await NodeNet.create(2);
    const n = net;
    const store = ["--datastore=local", `--store-dir=${join(n.dir, "store")}`];
    const conf = netConf(n, { Network: "10.7.0.0/24", SubnetLen: 24 });
    const [a, b] = n.nodes as [SimNode, SimNode];
    const agentA = start(n, a, store, conf);
    await ready(n, a, agentA);
    const agentB = start(n, b, store, conf);
    await until("node-1 reporting the exhausted pool", async () => /no free \/24 subnet left in 10.7.0.0\/24/.test((await n.get(b, "/readyz")).body) || undefined);
    expect((await n.get(b, "/readyz")).status).toBe(503);
    expect(agentB.exited()).toBeUndefined();
    expect(existsSync(b.subnetFile)).toBe(false);

    // node-0 is removed for good: its lease is released, and node-1's retry gets the subnet.
    await agentA.stop();
    const leave = await n.exec(a, ["leave", "--node-name=node-0", ...store]);
    expect(leave.exitCode).toBe(0);
    await ready(n, b, agentB);
    expect(readSubnetFile(b.subnetFile).nodeSubnets).toEqual(["10.7.0.0/24"]);
  });

  it("follows peers through an etcd restart", async () => {
    net = await NodeNet.create(3);
    const n = net;
    etcd = await startEtcdServer({ netns: n.gw, host: "192.0.2.1" });
    const store = ["--datastore=etcd", `--etcd-endpoints=${etcd.endpoint}`, "--etcd-prefix=/twill/"];
    const conf = netConf(n);
    const [a, b, c] = n.nodes as [SimNode, SimNode, SimNode];
    const agentA = start(n, a, store, conf);
    const agentB = start(n, b, store, conf);
    await ready(n, a, agentA);
    await ready(n, b, agentB);
    await until("node-0 seeing node-1", async () => (await metric(n, a, "twill_peers")) === 1 || undefined);
    const subnetA = readSubnetFile(a.subnetFile).nodeSubnets;

    await etcd.restart();
    const agentC = start(n, c, store, conf);
    await ready(n, c, agentC);
    for (const node of [a, b]) {
      await until(`${node.name} seeing node-2 after the restart`, async () => (await metric(n, node, "twill_peers")) === 2 || undefined);
      expect(await metric(n, node, "twill_watch_restarts_total")).toBeGreaterThan(0);
      expect((await n.get(node, "/readyz")).status).toBe(200);
    }
    expect(readSubnetFile(a.subnetFile).nodeSubnets).toEqual(subnetA);
    const status = await n.exec(c, ["status", "--node-name=node-2", ...store, `--subnet-file=${c.subnetFile}`, "--output=json"]);
    expect((JSON.parse(status.stdout) as { peers: unknown[] }).peers).toHaveLength(2);
  });
});
