import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { NodeKernel } from "../shared/kernel/node-kernel.js";
import type { IpRoute } from "../testkit/iproute.js";
import { ipIn, kernelIn } from "../testkit/netns.js";
import { createLogger, type Logger } from "../shared/log.js";
import { contains, parseCidr, parseIp, formatIp } from "../shared/net/cidr.js";
import { readSubnetFile } from "../shared/subnet-file.js";
import { Agent } from "./agent.js";
import { createBackend } from "./backend/index.js";
import { parseNetworkConfig } from "./config.js";
import { LocalStore } from "./datastore/local.js";
import { systemClock } from "./clock.js";
import { request } from "../testkit/store-contract.js";
import { until } from "../testkit/until.js";
import { createMetrics, type AgentMetrics } from "./metrics.js";
import { gatherStatus, renderStatus } from "./status.js";
import { NodeNet, metricValue, type SimNode } from "../testkit/node-net.js";

/**
 * The run loop in-process, driving the real backend inside a node namespace: what a new
 * subnet does to the kernel. The loop itself (backoff, renewal, lease loss, batching, the
 * subnet file) is unit-tested in agent.test.ts.
 */
describe("Agent", () => {
  let net: NodeNet | null = null;
  const agents: Agent[] = [];
  const kernels: NodeKernel[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
    for (const k of kernels.splice(0)) k.close();
    await net?.destroy();
    net = null;
  });
  const network = parseNetworkConfig({ Network: "10.6.0.0/23", SubnetLen: 24 });

  interface Running {
    agent: Agent;
    node: SimNode;
    ip: IpRoute;
    dir: string;
    ipamStore: string;
    metrics: AgentMetrics;
    logs: { level: string; msg: string; [k: string]: unknown }[];
    metric(name: string): Promise<number | undefined>;
  }

  async function startAgent(): Promise<Running> {
    net = await NodeNet.create(1);
    const ipamStore = join(net.dir, "ipam", "twill");
    const node = net.nodes[0]!;
    mkdirSync(node.dir, { recursive: true });
    const dir = join(net.dir, "store");
    const kernel = kernelIn(node.ns);
    kernels.push(kernel);
    const metrics = createMetrics(false);
    const logs: Running["logs"] = [];
    const logger: Logger = createLogger((line) => logs.push(JSON.parse(line)));
    const agent = new Agent({
      nodeName: node.name,
      network,
      store: new LocalStore({ dir, network, leaseTTLMs: 30_000 }),
      kernel,
      backend: () => createBackend(network, { kernel, logger }),
      underlay: {},
      subnetFile: node.subnetFile,
      ipamStore,
      resyncMs: 1_000,
      renewMs: 300,
      logger,
      metrics,
    });
    agents.push(agent);
    await agent.start();
    expect(agent.readiness().ready).toBe(true);
    const metric = async (name: string) => metricValue(await metrics.registry.metrics(), name);
    return { agent, node, ip: ipIn(node.ns), dir, ipamStore, metrics, logs, metric };
  }

  /**
   * Another node takes exactly this node's subnet, in one step: its clock runs past the lease
   * (as a node whose clock is ahead would see it), so it takes the claim over under the claim's
   * lock. Releasing the node first would leave a window in which the agent's own renewal
   * (every 300 ms) finds the claim gone and takes the same subnet back.
   */
  async function stealSubnet(r: Running, subnet: string[]) {
    const ahead = { ...systemClock, now: () => Date.now() + 3 * 30_000 };
    const other = new LocalStore({ dir: r.dir, network, leaseTTLMs: 30_000, clock: ahead });
    const thief = await other.acquire({ ...request("node-thief"), preferredSubnets: subnet });
    expect(thief.subnets).toEqual(subnet);
  }

  it("converges on a new subnet: the bridge's old gateway goes, and pods on the old subnet are reported", async () => {
    const r = await startAgent();
    const ipamStore = r.ipamStore;
    const first = readSubnetFile(r.node.subnetFile).nodeSubnets[0]!;
    const old = parseCidr(first);
    const gateway = `${formatIp(4, old.network + 1n)}/24`;
    const podIp = formatIp(4, old.network + 5n);
    // What the plugin left on the node for one pod: the bridge with its gateway, the reservation.
    await r.ip.batch(
      [
        ["link", "add", "cni0", "type", "bridge"],
        ["addr", "add", gateway, "dev", "cni0"],
        ["link", "set", "cni0", "up"],
      ],
      "create the pod bridge",
    );
    mkdirSync(ipamStore, { recursive: true });
    writeFileSync(join(ipamStore, podIp), "pod-c1\r\neth0");

    await stealSubnet(r, [first]);
    await until("the new subnet in the subnet file", () => readSubnetFile(r.node.subnetFile).nodeSubnets[0] !== first || undefined);
    await until("the old gateway off the bridge", async () => {
      const addrs = (await r.ip.addrs("cni0"))[0]?.addr_info ?? [];
      return addrs.every((a) => !contains(old, parseIp(a.local))) || undefined;
    });
    await until("the pod reported", async () => (await r.metric("twill_stale_pods")) === 1 || undefined);
    await until("a route to the thief's subnet", async () =>
      (await r.ip.routes(4, ["proto", "150"])).some((route) => route.dst === first) || undefined,
    );
    const failures = r.logs.filter((l) => l.msg === "Reconciling the datapath failed");
    expect(failures).toEqual([]);
    expect(await r.metric("twill_reconcile_errors_total")).toBe(0);
    const reported = r.logs.filter((l) => l.msg === "Pods on a subnet this node no longer holds need a restart");
    expect(reported).toHaveLength(1);
    expect(reported[0]!.pods).toEqual([{ network: "twill", ip: podIp, containerId: "pod-c1" }]);
    expect(r.logs.some((l) => l.msg === "Removed the address of a subnet this node no longer holds" && l.address === gateway)).toBe(true);

    const status = await gatherStatus(new LocalStore({ dir: r.dir, network, leaseTTLMs: 30_000 }), r.node.name, r.node.subnetFile, { ipamStore });
    expect(status.stalePods).toEqual([{ network: "twill", ip: podIp, containerId: "pod-c1" }]);
    expect(renderStatus(status, Date.now())).toContain(`pod pod-c1 has ${podIp} (network twill), outside this node's subnets: restart it`);
  });
});
