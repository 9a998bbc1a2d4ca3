import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { addNetns, deleteNetns, inNetns } from "../../testkit/netns.js";
import { DIST_BIN, runCni } from "../../testkit/pods.js";
import { listOwnedRoutes } from "../../testkit/iproute.js";
import { wireguardKeyFile } from "./wireguard-node.js";
import { Testbed, type TestNode } from "./testbed.js";
import { ping } from "./traffic.js";

/**
 * `twilld uninstall` on a node of a running testbed, as an operator runs it after deleting the
 * DaemonSet: refused while a pod is attached, then, with the agent stopped and the pod gone,
 * nothing of twill's is left (bridge, VTEP, routes, nftables tables, the installed plugin and
 * conflist, state, IPAM store), and the reference bridge + host-local work on the same node.
 * The testbed's directory is named for twill (uninstall only removes paths that are).
 */

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});

function uninstall(t: Testbed, n: TestNode, ...more: string[]) {
  return inNetns(n.ns, [join(DIST_BIN, "twilld"), "uninstall", "--node-name", n.name, "--datastore", "local", "--store-dir", t.twilld!.storeDir,
    "--state-dir", n.dir, "--subnet-file", n.subnetFile, "--ipam-store", join(n.dir, "ipam", "twill"),
    "--cni-bin-dir", join(n.dir, "cni", "bin"), "--cni-conf-dir", join(n.dir, "cni", "net.d"), "--log-dir", join(n.dir, "log"),
    "--wireguard-key", wireguardKeyFile(n), ...more]);
}

async function twillTables(ns: string): Promise<string[]> {
  const out = JSON.parse(String((await inNetns(ns, ["nft", "-j", "list", "tables"])).stdout)) as { nftables: { table?: { family: string; name: string } }[] };
  return out.nftables.flatMap((e) => (e.table && e.table.name.startsWith("twill") ? [`${e.table.family} ${e.table.name}`] : []));
}

describe("twilld uninstall", () => {
  it("refuses while a pod is attached; afterwards nothing of twill's is left and another CNI works", async () => {
    tb = await Testbed.create({ agent: "twilld", backend: "vxlan", nodes: 2, prefix: `twill${process.pid.toString(36)}u-` });
    await tb.startAgents();
    const [n1] = tb.nodes as [TestNode];
    const pod = await tb.addPod(n1);
    await tb.addPod(tb.node("node-2"));
    // What the DaemonSet's init container installs.
    mkdirSync(join(n1.dir, "cni", "bin"), { recursive: true });
    mkdirSync(join(n1.dir, "cni", "net.d"), { recursive: true });
    mkdirSync(join(n1.dir, "log"), { recursive: true });
    copyFileSync(join(DIST_BIN, "noop"), join(n1.dir, "cni", "bin", "twill"));
    copyFileSync(join(DIST_BIN, "noop"), join(n1.dir, "cni", "bin", "twill-ipam"));
    writeFileSync(join(n1.dir, "cni", "net.d", "10-twill.conflist"), "{}\n");
    expect(await twillTables(n1.ns)).toContain("inet twill");
    expect((await listOwnedRoutes(tb.ip(n1))).length).toBeGreaterThan(0);

    const refused = await uninstall(tb, n1);
    expect(refused.exitCode).toBe(1);
    expect(String(refused.stdout)).toMatch(/Refused: 1 pod interface\(s\) still attached to cni0/);
    expect(await tb.ip(n1).link("cni0")).not.toBeNull();

    await tb.stopAgent(n1);
    await tb.deletePod(pod);
    const dry = await uninstall(tb, n1, "--dry-run");
    expect(String(dry.stdout)).toMatch(/Would:\n {2}delete link cni0/);
    expect(await tb.ip(n1).link("cni0")).not.toBeNull();

    const done = await uninstall(tb, n1);
    expect(done.exitCode, String(done.stdout) + String(done.stderr)).toBe(0);
    expect(await tb.ip(n1).link("cni0")).toBeNull();
    expect(await tb.ip(n1).link("twill.1")).toBeNull();
    expect(await listOwnedRoutes(tb.ip(n1))).toEqual([]);
    expect(await twillTables(n1.ns)).toEqual([]);
    for (const p of [join(n1.dir, "cni", "bin", "twill"), join(n1.dir, "cni", "bin", "twill-ipam"), join(n1.dir, "cni", "net.d", "10-twill.conflist"), n1.subnetFile, join(n1.dir, "ipam", "twill"), join(n1.dir, "log")]) {
      expect(existsSync(p), p).toBe(false);
    }
    // Run again: nothing left to do.
    expect(String((await uninstall(tb, n1)).stdout)).toMatch(/Nothing of twill's is on this node/);

    // A user switching away: the reference bridge + host-local with a static config, on the same node.
    const podNs = `${tb.prefix}after`;
    await addNetns(podNs);
    try {
      const net = {
        binary: "/usr/lib/cni/bridge",
        path: "/usr/lib/cni",
        conf: {
          cniVersion: "1.0.0", name: "after", type: "bridge", bridge: "cni0", isGateway: true,
          ipam: { type: "host-local", ranges: [[{ subnet: "10.99.1.0/24" }]], dataDir: join(tb.dir, "after-ipam") },
        },
      };
      const result = await runCni(n1.ns, net, { command: "ADD", containerId: "after-1", podNs });
      expect(JSON.stringify(result)).toContain("10.99.1.2/24");
      expect((await ping(n1.ns, "10.99.1.2", { count: 2, intervalS: 0.2 })).ok).toBe(true);
      await runCni(n1.ns, net, { command: "DEL", containerId: "after-1", podNs });
    } finally {
      await deleteNetns(podNs);
    }
  });
});
