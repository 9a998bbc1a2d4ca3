import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { readSubnetFile } from "../../shared/subnet-file.js";
import { ipIn } from "../../testkit/netns.js";
import { until } from "../../testkit/until.js";
import { podAddress } from "./matrix.js";
import { Testbed, type TestNode } from "./testbed.js";
import { ping } from "./traffic.js";

/**
 * The underlay's MTU raised on running nodes (a jumbo-frame rollout: the switch, then each
 * node's eth0): without a restart, twilld follows it (the VTEP, the subnet file, what it
 * publishes), pods made afterwards get the larger MTU and a DF ping of that size crosses
 * nodes; pods made before keep theirs.
 */

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});

const JUMBO = 9000;

describe("the underlay's MTU changed on running nodes", () => {
  it("twilld follows it: VTEP, subnet file, new pods; old pods keep theirs", async () => {
    tb = await Testbed.create({ agent: "twilld", backend: "vxlan", nodes: 2, resyncMs: 1_000 });
    await tb.startAgents();
    const [n1, n2] = tb.nodes as [TestNode, TestNode];
    const old = await tb.addPod(n1);
    expect(readSubnetFile(n1.subnetFile).mtu).toBe(1450);

    const sw = ipIn(tb.underlay.switchNs);
    for (const dev of ["br-a", "n1", "n2"]) await sw.batch([["link", "set", dev, "mtu", JUMBO]], `raise ${dev}'s MTU`);
    for (const n of [n1, n2]) await tb.ip(n).batch([["link", "set", "eth0", "mtu", JUMBO]], `raise ${n.name}'s eth0 MTU`);

    for (const n of [n1, n2]) {
      await until(`${n.name}'s subnet file says ${JUMBO - 50}`, () => readSubnetFile(n.subnetFile).mtu === JUMBO - 50, 15_000);
      await until(`${n.name}'s VTEP follows`, async () => (await tb!.ip(n).link("twill.1"))?.mtu === JUMBO - 50, 15_000);
    }
    expect(tb.twilld!.logged(n1, "Underlay MTU changed; following it")).toEqual([expect.objectContaining({ from: 1500, to: JUMBO, podMtu: JUMBO - 50 })]);

    const a = await tb.addPod(n1);
    const b = await tb.addPod(n2);
    expect((await ipIn(a.ns).link("eth0"))?.mtu).toBe(JUMBO - 50);
    expect((await ipIn(old.ns).link("eth0"))?.mtu).toBe(1450);
    const big = await ping(a.ns, podAddress(b), { size: JUMBO - 50 - 28, dontFragment: true, count: 2, intervalS: 0.2 });
    expect(big.ok, big.output).toBe(true);
    // The old pod still reaches the new one at its own MTU.
    expect((await ping(old.ns, podAddress(b), { size: 1450 - 28, dontFragment: true, count: 2, intervalS: 0.2 })).ok).toBe(true);
    expect(readFileSync(n1.subnetFile, "utf8")).toContain(`"mtu": ${JUMBO - 50}`);
  });
});
