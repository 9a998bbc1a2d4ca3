import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IpRoute } from "../shared/kernel/iproute.js";
import { nullLogger } from "../shared/log.js";
import { readSubnetFile } from "../shared/subnet-file.js";
import { Agent } from "./agent.js";
import { createBackend } from "./backend/index.js";
import { parseNetworkConfig } from "./config.js";
import { LocalStore } from "./datastore/local.js";
import { request, until } from "./datastore/store-contract.js";
import { createMetrics } from "./metrics.js";
import { NodeNet } from "./testing/node-net.js";

/** The run loop in-process, driving the real backend inside a node namespace. */
describe("Agent", () => {
  let net: NodeNet | null = null;
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
    await net?.destroy();
    net = null;
  });

  it("acquires again after losing its lease, and rewrites the subnet file", async () => {
    net = await NodeNet.create(1);
    const node = net.nodes[0]!;
    mkdirSync(node.dir, { recursive: true });
    const network = parseNetworkConfig({ Network: "10.6.0.0/23", SubnetLen: 24 });
    const dir = join(net.dir, "store");
    const ip = new IpRoute(`/run/netns/${node.ns}`);
    const metrics = createMetrics(false);
    const agent = new Agent({
      nodeName: node.name,
      network,
      store: new LocalStore({ dir, network, leaseTTLMs: 30_000, pollMs: 100 }),
      ip,
      backend: () => createBackend(network, { ip, logger: nullLogger }),
      underlay: {},
      subnetFile: node.subnetFile,
      resyncMs: 1_000,
      renewMs: 300,
      logger: nullLogger,
      metrics,
    });
    agents.push(agent);
    await agent.start();
    expect(agent.readiness().ready).toBe(true);
    const first = readSubnetFile(node.subnetFile).nodeSubnets;

    // An operator releases node-0 and another node takes exactly its subnet.
    const other = new LocalStore({ dir, network, leaseTTLMs: 30_000 });
    await other.release(node.name);
    const thief = await other.acquire({ ...request("node-thief"), preferredSubnets: first });
    expect(thief.subnets).toEqual(first);

    const second = await until("the agent writing its new subnet", () => {
      const now = readSubnetFile(node.subnetFile).nodeSubnets;
      return now.join() !== first.join() ? now : undefined;
    });
    expect(second).toHaveLength(1);
    expect(second).not.toEqual(first);
    await until("the agent ready again", () => agent.readiness().ready || undefined);
    const page = await metrics.registry.getSingleMetricAsString("twill_datastore_errors_total");
    expect(page).toMatch(/twill_datastore_errors_total\{op="renew"\} [1-9]/);
    // The thief is a peer now: the datapath routes its subnet.
    await until("a route to the thief's subnet", async () =>
      (await ip.routes(4, ["proto", "150"])).some((r) => r.dst === first[0]) || undefined,
    );
  });
});
