import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { NodeKernel } from "../shared/kernel/node-kernel.js";
import type { Link, LinkAddresses, Route } from "../shared/kernel/types.js";
import { createLogger } from "../shared/log.js";
import { formatIp, parseCidr } from "../shared/net/cidr.js";
import { readSubnetFile } from "../shared/subnet-file.js";
import { FakeClock } from "../testkit/clock.js";
import { MemoryDatastore } from "../testkit/memory-store.js";
import { metricValue } from "../testkit/node-net.js";
import { request } from "../testkit/store-contract.js";
import { Agent } from "./agent.js";
import { parseNetworkConfig } from "./config.js";
import { createMetrics, type AgentMetrics } from "./metrics.js";
import type { Backend, BackendData, NetworkConfig, NodeLease, ReconcileReport } from "./types.js";

// The agent loop on plain data: an in-memory datastore, a fake clock, a backend that records
// what it is asked. Backoff, renewal, lease loss and reconcile batching run in milliseconds;
// agent.priv.test.ts runs the same loop against the real kernel.

const RENEW_MS = 1_000;
const RESYNC_MS = 10_000;
const TTL_MS = 5_000;

/** What the agent asked the backend, in order. */
interface Call {
  kind: "full" | "peers";
  /** The node's own subnets as passed in (never absent: the loop must not reconcile without a lease). */
  local: string[];
  peers: string[];
  changed?: string[];
}

/** A backend on plain data; `hold()` keeps the next reconciles running until released. */
class RecordingBackend implements Backend {
  readonly type = "vxlan" as const;
  readonly calls: Call[] = [];
  inFlight = 0;
  maxInFlight = 0;
  private gate: Promise<void> | null = null;
  private open = () => {};

  overhead(): number {
    return 50;
  }

  async prepare(): Promise<BackendData> {
    return { type: "vxlan", vtepMAC: "02:00:00:00:00:01", vni: 1, port: 4789 };
  }

  hold(): () => void {
    this.gate = new Promise((resolve) => (this.open = resolve));
    return () => this.release();
  }

  release(): void {
    this.gate = null;
    this.open();
  }

  reconcile(local: NodeLease, peers: NodeLease[]): Promise<ReconcileReport> {
    return this.record({ kind: "full", local: local?.subnets, peers: names(peers) });
  }

  reconcilePeers(local: NodeLease, peers: NodeLease[], changed: readonly string[]): Promise<ReconcileReport> {
    return this.record({ kind: "peers", local: local?.subnets, peers: names(peers), changed: [...changed].sort() });
  }

  private async record(call: Call): Promise<ReconcileReport> {
    this.calls.push(call);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await this.gate;
    } finally {
      this.inFlight--;
    }
    return { changes: 1, errors: [] };
  }
}

const names = (leases: readonly NodeLease[]) => leases.map((l) => l.nodeName).sort();

/** The node's underlay: eth0 192.0.2.10/24 with the default route. */
const underlayKernel = {
  defaultRoutes: async (family: 4 | 6): Promise<Route[]> =>
    family === 4 ? [{ family: 4, dst: "0.0.0.0/0", gateway: "192.0.2.1", dev: "eth0", protocol: 3, scope: "global", onlink: false, table: "main" }] : [],
  links: async (): Promise<Link[]> => [{ index: 2, name: "eth0", up: true, lowerUp: true, mtu: 1500 }],
  addrs: async (): Promise<LinkAddresses[]> => [{ index: 2, name: "eth0", addresses: [{ family: 4, ip: "192.0.2.10", prefixLength: 24, scope: "global" }] }],
} as unknown as NodeKernel;

interface Harness {
  agent: Agent;
  clock: FakeClock;
  db: MemoryDatastore;
  backend: RecordingBackend;
  network: NetworkConfig;
  subnetFile: string;
  ipamStore: string;
  metrics: AgentMetrics;
  logs: { level: string; msg: string; [k: string]: unknown }[];
  /** A store of another node on the same datastore. */
  other(): ReturnType<MemoryDatastore["open"]>;
  metric(name: string): Promise<number | undefined>;
  subnets(): string[];
}

describe("Agent loop (in-memory datastore, fake clock)", () => {
  const dirs: string[] = [];
  const agents: Agent[] = [];
  const backends: RecordingBackend[] = [];
  afterEach(async () => {
    // A test that failed while holding a reconcile must not hang the agent's stop.
    for (const b of backends.splice(0)) b.release();
    await Promise.all(agents.splice(0).map((a) => a.stop()));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  function harness(network = parseNetworkConfig({ Network: "10.6.0.0/16", SubnetLen: 24 })): Harness {
    const dir = mkdtempSync(join(tmpdir(), "twill-agent-unit-"));
    dirs.push(dir);
    const clock = new FakeClock();
    const db = new MemoryDatastore(clock);
    const backend = new RecordingBackend();
    backends.push(backend);
    const metrics = createMetrics(false);
    const logs: Harness["logs"] = [];
    const subnetFile = join(dir, "subnet.json");
    const ipamStore = join(dir, "ipam", "twill");
    const agent = new Agent({
      nodeName: "node-a",
      network,
      store: db.open(network, TTL_MS),
      kernel: underlayKernel,
      // The node's masquerade is agent/masquerade.test.ts's; here it has nothing to change.
      masquerade: { reconcile: async () => 0 },
      backend: () => backend,
      underlay: {},
      subnetFile,
      ipamStore,
      resyncMs: RESYNC_MS,
      renewMs: RENEW_MS,
      logger: createLogger((line) => logs.push(JSON.parse(line))),
      metrics,
      clock,
    });
    agents.push(agent);
    return {
      agent, clock, db, backend, network, subnetFile, ipamStore, metrics, logs,
      other: () => db.open(network, 3_600_000),
      metric: async (name) => metricValue(await metrics.registry.metrics(), name),
      subnets: () => readSubnetFile(subnetFile).nodeSubnets,
    };
  }

  async function started(network?: NetworkConfig): Promise<Harness> {
    const h = harness(network);
    await h.agent.start();
    await h.clock.advance(0);
    return h;
  }

  /** An operator releases node-a and another node takes exactly its subnets. */
  async function steal(h: Harness, thief = "node-thief"): Promise<string[]> {
    const subnets = h.subnets();
    await h.other().release("node-a");
    const taken = await h.other().acquire({ ...request(thief), preferredSubnets: subnets });
    expect(taken.subnets).toEqual(subnets);
    return subnets;
  }

  it("starts: writes the subnet file with the backend's MTU and reconciles in full once", async () => {
    const h = await started();
    expect(readSubnetFile(h.subnetFile)).toMatchObject({ nodeName: "node-a", mtu: 1450, backend: "vxlan", nodeSubnets: [expect.stringMatching(/^10\.6\.\d+\.0\/24$/)] });
    expect(h.agent.readiness().ready).toBe(true);
    expect(h.backend.calls).toEqual([{ kind: "full", local: h.subnets(), peers: [] }]);
  });

  it("retries acquiring with a doubling backoff capped at 30 s, and becomes ready once a subnet is free", async () => {
    const single = parseNetworkConfig({ Network: "10.6.0.0/24", SubnetLen: 24 });
    const h = harness(single);
    await h.other().acquire(request("node-b"));
    let done = false;
    const starting = h.agent.start().then(() => (done = true));
    await h.clock.advance(91_000);
    const retries = h.logs.filter((l) => l.msg === "Acquiring the node subnet failed; retrying").map((l) => l.retryInMs);
    expect(retries).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
    expect(done).toBe(false);
    expect(h.agent.readiness()).toEqual({ ready: false, reason: expect.stringMatching(/^no subnet lease: .*no free \/24 subnet left in 10\.6\.0\.0\/24/) });

    await h.other().release("node-b");
    await h.clock.advance(29_999);
    expect(done).toBe(false);
    await h.clock.advance(1);
    await starting;
    expect(h.subnets()).toEqual(["10.6.0.0/24"]);
    expect(h.agent.readiness().ready).toBe(true);
    expect(await h.metrics.registry.getSingleMetricAsString("twill_datastore_errors_total")).toMatch(/op="acquire"\} 8\b/);
  });

  it("renews every renewMs, so the lease outlives its TTL and nobody else can take the subnet", async () => {
    const h = await started(parseNetworkConfig({ Network: "10.6.0.0/24", SubnetLen: 24 }));
    await h.clock.advance(TTL_MS * 4);
    expect(await h.metric("twill_lease_renewals_total")).toBe(20);
    expect(names(await h.other().list())).toEqual(["node-a"]);
    await expect(h.other().acquire(request("node-b"))).rejects.toThrow(/no free \/24 subnet/);
    expect(h.agent.readiness().ready).toBe(true);
  });

  it("lease lost: acquires again, rewrites the subnet file, reports pods left on the old subnet, reconciles in full", async () => {
    const h = await started();
    const first = h.subnets();
    // A pod the plugin placed on the first subnet.
    const podIp = formatIp(4, parseCidr(first[0]!).network + 5n);
    mkdirSync(h.ipamStore, { recursive: true });
    writeFileSync(join(h.ipamStore, podIp), "pod-c1\r\neth0");

    await steal(h);
    h.backend.calls.length = 0;
    await h.clock.advance(RENEW_MS);

    const second = h.subnets();
    expect(second).toHaveLength(1);
    expect(second).not.toEqual(first);
    expect(h.agent.readiness().ready).toBe(true);
    expect(h.logs.find((l) => l.msg === "Lease lost; acquiring again")).toBeDefined();
    expect(h.logs.find((l) => l.msg === "Node subnet changed after the lease was lost")).toMatchObject({ from: first, to: second });
    const stale = h.logs.filter((l) => l.msg === "Pods on a subnet this node no longer holds need a restart");
    expect(stale).toHaveLength(1);
    expect(stale[0]).toMatchObject({ subnets: second, pods: [{ network: "twill", ip: podIp, containerId: "pod-c1" }] });
    expect(await h.metric("twill_stale_pods")).toBe(1);
    expect(await h.metrics.registry.getSingleMetricAsString("twill_datastore_errors_total")).toMatch(/op="renew"\} 1\b/);
    // The new lease is reconciled in full, with the thief as a peer.
    expect(h.backend.calls[0]).toEqual({ kind: "full", local: second, peers: ["node-thief"] });
    expect(h.backend.calls.every((c) => c.local?.join() === second.join())).toBe(true);
  });

  it("its own record deleted or edited in the datastore: published again at once, not at the next renewal", async () => {
    const h = await started();
    const published = h.db.records.get("node-a")!;
    expect(published.publicIP).toBe("192.0.2.10");
    const peerView = () => h.other().list().then((all) => all.find((l) => l.nodeName === "node-a"));

    // By hand, between two renewals: peers drop a node whose record is gone until it is back.
    h.db.records.delete("node-a");
    h.db.changed();
    await h.clock.advance(0);
    expect(await peerView()).toMatchObject({ publicIP: "192.0.2.10", subnets: published.subnets });
    expect(await h.metric("twill_lease_renewals_total")).toBe(1);
    expect(h.logs.filter((l) => l.msg === "This node's record is missing from the datastore or differs; publishing it again")).toEqual([
      expect.objectContaining({ level: "warn", seen: null }),
    ]);

    h.db.records.set("node-a", { ...h.db.records.get("node-a")!, publicIP: "192.0.2.99" });
    h.db.changed();
    await h.clock.advance(0);
    expect((await peerView())?.publicIP).toBe("192.0.2.10");
    expect(await h.metric("twill_lease_renewals_total")).toBe(2);

    // Its own renewals go on as before, and a record as published starts none early.
    await h.clock.advance(RENEW_MS * 3);
    expect(await h.metric("twill_lease_renewals_total")).toBe(5);
    expect(h.logs.filter((l) => l.msg.startsWith("This node's record is missing"))).toHaveLength(2);
  });

  it("reconciles one at a time; peer events during a reconcile are batched into one peer reconcile", async () => {
    const h = harness();
    const release = h.backend.hold();
    await h.agent.start();
    await h.clock.advance(0);
    expect(h.backend.calls).toEqual([{ kind: "full", local: h.subnets(), peers: [] }]);

    await h.other().acquire(request("node-b"));
    await h.clock.advance(0);
    await h.other().release("node-b");
    await h.other().acquire(request("node-c"));
    await h.clock.advance(0);
    expect(h.backend.calls).toHaveLength(1);

    release();
    await h.clock.advance(0);
    expect(h.backend.calls.slice(1)).toEqual([{ kind: "peers", local: h.subnets(), peers: ["node-c"], changed: ["node-b", "node-c"] }]);
    expect(h.backend.maxInFlight).toBe(1);
  });

  it("a peer record that cannot be a peer is refused for that peer alone: logged once, counted, never reconciled", async () => {
    const h = await started();
    await h.other().acquire(request("node-b"));
    // A node publishing another node's VTEP MAC, and one on a public IP inside the pod network.
    await h.other().acquire({ ...request("evil-mac"), backend: { ...request("evil-mac").backend, vtepMAC: request("node-b").backend.vtepMAC } });
    await h.other().acquire({ ...request("evil-ip"), publicIP: "10.6.200.1" });
    await h.other().acquire(request("node-c"));
    await h.clock.advance(RESYNC_MS);
    await h.clock.advance(RESYNC_MS);
    expect(h.backend.calls.at(-1)).toEqual({ kind: "full", local: h.subnets(), peers: ["node-b", "node-c"] });
    expect(h.backend.calls.every((c) => !c.peers.some((p) => p.startsWith("evil")))).toBe(true);
    const refused = h.logs.filter((l) => l.msg === "Refused peer record; not routed");
    expect(refused.map((l) => [l.peer, l.reason]).sort()).toEqual([
      ["evil-ip", "public IP 10.6.200.1 lies inside the cluster CIDR 10.6.0.0/16"],
      ["evil-mac", expect.stringMatching(/^VTEP MAC \S+ is not the one of node evil-mac on VNI 1/)],
    ]);
    expect(await h.metrics.registry.getSingleMetricAsString("twill_datastore_unreadable_records")).toMatch(/kind="peer"\} 2\b/);

    await h.other().release("evil-ip");
    await h.clock.advance(0);
    expect(h.logs.filter((l) => l.msg === "Peer record no longer refused").map((l) => l.peer)).toEqual(["evil-ip"]);
    expect(await h.metrics.registry.getSingleMetricAsString("twill_datastore_unreadable_records")).toMatch(/kind="peer"\} 1\b/);
  });

  it("a full reconcile asked for during a reconcile absorbs the peer events pending", async () => {
    const h = await started();
    const release = h.backend.hold();
    await h.other().acquire(request("node-b"));
    await h.clock.advance(0);
    expect(h.backend.calls.at(-1)).toMatchObject({ kind: "peers", changed: ["node-b"] });

    // While that one runs: a peer joins, then the resync timer asks for a full reconcile.
    await h.other().acquire(request("node-c"));
    await h.clock.advance(RESYNC_MS);
    const before = h.backend.calls.length;
    release();
    await h.clock.advance(0);
    expect(h.backend.calls.slice(before)).toEqual([{ kind: "full", local: h.subnets(), peers: ["node-b", "node-c"] }]);
    expect(h.backend.maxInFlight).toBe(1);
  });

  it("a lease lost during a reconcile loop ends the loop; the next lease is reconciled in full", async () => {
    const h = await started(parseNetworkConfig({ Network: "10.6.0.0/24", SubnetLen: 24 }));
    const release = h.backend.hold();
    await h.clock.advance(RESYNC_MS);
    expect(h.backend.calls.at(-1)).toMatchObject({ kind: "full" });
    const held = h.backend.calls.length;

    // During the held reconcile: a peer event queues work, then the lease is lost and the
    // only subnet belongs to the thief, so acquiring again waits.
    await steal(h);
    await h.clock.advance(RENEW_MS);
    expect(h.logs.some((l) => l.msg === "Lease lost; acquiring again")).toBe(true);
    expect(h.agent.readiness().ready).toBe(false);
    release();
    await h.clock.advance(0);
    expect(h.backend.calls).toHaveLength(held);

    await h.other().release("node-thief");
    // The watch showed the record gone at the theft, so the acquiring began then: its second
    // retry is 1 + 2 s after it.
    await h.clock.advance(2_000);
    expect(h.agent.readiness().ready).toBe(true);
    expect(h.backend.calls.slice(held)).toEqual([{ kind: "full", local: ["10.6.0.0/24"], peers: [] }]);
    expect(h.backend.calls.every((c) => Array.isArray(c.local))).toBe(true);
  });

  it("reconciles in full every resync period, and rewrites a damaged or edited subnet file then; /readyz says so until then", async () => {
    const h = await started();
    const good = readFileSync(h.subnetFile, "utf8");
    writeFileSync(h.subnetFile, good.slice(0, 20));
    expect(h.agent.readiness()).toEqual({ ready: false, reason: expect.stringMatching(/is invalid: not JSON; rewriting it on the next resync/) });
    await h.clock.advance(RESYNC_MS * 3);
    expect(h.backend.calls.map((c) => c.kind)).toEqual(["full", "full", "full", "full"]);
    expect(readFileSync(h.subnetFile, "utf8")).toBe(good);
    expect(h.agent.readiness().ready).toBe(true);

    writeFileSync(h.subnetFile, JSON.stringify({ ...JSON.parse(good), mtu: 9000 }));
    expect(h.agent.readiness().reason).toMatch(/differs from the lease/);
    await h.clock.advance(RESYNC_MS - 1);
    expect(h.agent.readiness().ready).toBe(false);
    await h.clock.advance(1);
    expect(readFileSync(h.subnetFile, "utf8")).toBe(good);
    expect(await h.metric("twill_subnet_file_repairs_total")).toBe(2);
    expect(h.logs.filter((l) => l.msg === "Rewrote the subnet file")).toHaveLength(2);
  });
});
