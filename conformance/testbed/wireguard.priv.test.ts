import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { PrivateKey } from "../../agent/backend/wireguard/keys.js";
import { WireguardGoSupervisor } from "../../agent/backend/wireguard/wireguard-go.js";
import { readSubnetFile } from "../../shared/subnet-file.js";
import { ipIn } from "../../testkit/netns.js";
import { until } from "../../testkit/until.js";
import { failures, podAddress, reachability } from "./matrix.js";
import { Testbed, WIREGUARD_PORT, type Pod, type TestNode } from "./testbed.js";
import { underlayCounters } from "./underlay-counters.js";
import { devicePublicKey as publicKeyOf, wireguardFiles, wireguardKeyFile, wireguardUapi } from "./wireguard-node.js";
import { ping, pingStream } from "./traffic.js";

/**
 * The wireguard backend end to end, in auto mode, which on this kernel (no WireGuard) takes
 * userspace mode: the real twilld on every node, each
 * running its wireguard-go (its socket in the node's own directory), pods attached by the real
 * plugin. Between nodes the switch must see nothing but WireGuard's UDP: every pod packet
 * crosses the underlay encrypted.
 */

let tb: Testbed | null = null;
afterEach(async () => {
  await tb?.destroy();
  tb = null;
});


async function cluster(): Promise<Testbed> {
  tb = await Testbed.create({ agent: "twilld", backend: "wireguard", nodes: 3, ipFamily: "dual", resyncMs: 2_000 });
  await tb.startAgents();
  for (const n of tb.nodes) await tb.addPod(n);
  return tb;
}

const uapi = wireguardUapi;
/** The public key of node `n`'s device, from the device's own answer. */
async function devicePublicKey(n: TestNode): Promise<string> {
  const key = await publicKeyOf(n);
  if (!key) throw new Error(`${n.name}'s device has no key`);
  return key;
}

describe("wireguard backend, userspace mode (wireguard-go), dual-stack pods on an IPv4 underlay", () => {
  it("every pod reaches every other through the tunnel at MTU 1440; between nodes only UDP to the WireGuard port, no pod address in clear", async () => {
    const t = await cluster();
    const counters = await underlayCounters(t, WIREGUARD_PORT);
    expect(failures(await reachability(t.pods, 4))).toEqual([]);
    expect(failures(await reachability(t.pods, 6))).toEqual([]);

    const [p1, p2] = t.pods as [Pod, Pod];
    // The largest packet that fits: 1440 less IPv4's 20 and ICMP's 8, not fragmented; one byte more is refused locally.
    const fits = await ping(p1.ns, podAddress(p2), { size: 1412, dontFragment: true });
    expect(fits.ok, fits.output).toBe(true);
    expect((await ping(p1.ns, podAddress(p2), { size: 1413, dontFragment: true })).output).toMatch(/too long|mtu ?= ?1440/i);

    const seen = await counters();
    expect(seen.podsInClear).toBe(0);
    expect(seen.other).toBe(0);
    expect(seen.tunnel).toBeGreaterThan(0);

    for (const n of t.nodes) {
      expect(readSubnetFile(n.subnetFile).mtu).toBe(1440);
      const dev = await ipIn(n.ns).link("twill-wg");
      expect(dev?.mtu).toBe(1440);
      // Every other node is a peer, allowed its two subnets, at its public IP.
      const device = await uapi(n).get();
      expect(device.listenPort).toBe(WIREGUARD_PORT);
      const want = t.nodes.filter((o) => o !== n).map((o) => `${o.ip}:${WIREGUARD_PORT} ${[...o.subnets].sort().join(",")}`).sort();
      expect(device.peers.map((p) => `${p.endpoint} ${[...p.allowedIps].sort().join(",")}`).sort()).toEqual(want);
      // Its socket is in the node's own directory, and its key file is the node's alone.
      expect(readFileSync(wireguardKeyFile(n), "utf8").trim()).toHaveLength(44);
    }
    expect(existsSync("/run/wireguard/twill-wg.sock")).toBe(false);
    for (const p of t.pods) expect((await ipIn(p.ns).link("eth0"))?.mtu).toBe(1440);

    // Not a member: the underlay's router, with a plain route to node-2's pods via node-2, gets nothing through in clear.
    const n2 = t.node("node-2");
    await ipIn(t.underlay.routerNs).batch([["route", "add", n2.subnets.find((s) => !s.includes(":"))!, "via", n2.ip]], "route node-2's pods in clear");
    const bypass = await ping(t.underlay.routerNs, podAddress(p2), { count: 2, intervalS: 0.2, timeoutS: 1 });
    expect(bypass.ok, bypass.output).toBe(false);
    expect((await ipIn(n2.ns).nftCounters("twill-wg"))?.get("underlay_to_pods")).toBeGreaterThanOrEqual(2);

    // Not a member either: the router runs a WireGuard device of its own, with its own key and
    // node-2 (whose public key is no secret) as its peer. node-2 never answers its handshake.
    const intruder = new WireguardGoSupervisor({ dir: join(t.dir, "intruder"), netns: `/run/netns/${t.underlay.routerNs}` });
    try {
      await intruder.start();
      await until("the intruder's wireguard-go answers", () => intruder.answering(), 10_000);
      const n2Key = await devicePublicKey(n2);
      await intruder.uapi.set({
        privateKey: PrivateKey.generate(), listenPort: WIREGUARD_PORT,
        peers: [{ op: "set", publicKey: n2Key, endpoint: `${n2.ip}:${WIREGUARD_PORT}`, allowedIps: ["10.244.0.0/16"], persistentKeepalive: 1 }],
      });
      const pod4 = n2.subnets.find((x) => !x.includes(":"))!;
      await ipIn(t.underlay.routerNs).batch([["link", "set", "twill-wg", "up"], ["address", "add", "10.99.0.1/32", "dev", "twill-wg"], ["route", "replace", pod4, "dev", "twill-wg"]], "route node-2's pods through the intruder's device");
      const tunnelled = await ping(t.underlay.routerNs, podAddress(p2), { count: 3, intervalS: 0.3, timeoutS: 1 });
      expect(tunnelled.ok, tunnelled.output).toBe(false);
      const seenByIntruder = (await intruder.uapi.get()).peers[0]!;
      expect(seenByIntruder.txBytes).toBeGreaterThan(0);
      expect(seenByIntruder.lastHandshakeSec).toBe(0);
      expect(seenByIntruder.rxBytes).toBe(0);
      expect((await uapi(n2).get()).peers.map((x) => x.publicKey)).not.toContain((await intruder.uapi.get()).privateKey!.publicKey());
    } finally {
      const pid = intruder.state().pid;
      intruder.stop();
      if (pid !== null) process.kill(pid, "SIGTERM");
    }

    // What an operator sees: the mode, wireguard-go, and each peer with a handshake since the pods talked.
    const [n1, , n3] = t.nodes as [TestNode, TestNode, TestNode];
    const status = await until("node-1's status shows a handshake with each peer", async () => {
      const s = await t.twilld!.status(n1);
      return t.nodes.filter((o) => o !== n1).every((o) => new RegExp(`${o.name} +${o.ip.replace(/\./g, "\\.")}:${WIREGUARD_PORT} +\\S+ +\\d+\\w* ago`).test(s)) ? s : false;
    }, 10_000);
    // auto: this kernel has no WireGuard (creating the device answers EOPNOTSUPP), so wireguard-go.
    expect(status).toMatch(/WireGuard: +userspace \(auto: the kernel has no WireGuard device type\), wireguard-go running \(pid \d+\), restarts 0/);
    expect(status).toContain(`public key ${await devicePublicKey(n1)}`);
    expect(status).toMatch(/WireGuard peers \(2\):/);

    // node-3 leaves for good: `twilld leave` deletes its device, wireguard-go ends with it, and the others drop the peer.
    const pid = Number(readFileSync(wireguardFiles(n3).pid, "utf8"));
    await t.leave(n3);
    expect(await ipIn(n3.ns).link("twill-wg")).toBeNull();
    await until("node-3's wireguard-go has ended", () => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, "utf8").split(" ")[2] === "Z", 10_000);
    for (const n of [n1, n2]) {
      await until(`${n.name} dropped node-3's peer`, async () => (await uapi(n).get()).peers.length === 1, 20_000);
    }
  });

  it("a node's key replaced (key file deleted, twilld restarted) while pods ping: its peers swap the key, pods reconnect; wireguard-go killed comes back", async () => {
    const t = await cluster();
    expect(failures(await reachability(t.pods, 4))).toEqual([]);
    const [n1, n2, n3] = t.nodes as [TestNode, TestNode, TestNode];
    const oldKey = await devicePublicKey(n2);

    // 20 pings a second from node-1's pod to node-2's for 20 s, across the rotation.
    const flow = pingStream(t.pods[0]!.ns, podAddress(t.pods[1]!), 400);
    await sleep(1_000);
    await t.stopAgent(n2);
    rmSync(wireguardKeyFile(n2));
    await t.startAgents([n2]);
    // The new twilld adopted the device wireguard-go kept, and gave it the new key.
    expect(t.twilld!.logged(n2, "Adopted running wireguard-go")).toHaveLength(1);
    const newKey = await until("node-2's device has its new key", async () => {
      const k = await devicePublicKey(n2);
      return k !== oldKey ? k : false;
    }, 10_000);
    for (const n of [n1, n3]) {
      await until(`${n.name} has node-2's new key and not the old one`, async () => {
        const keys = (await uapi(n).get()).peers.map((p) => p.publicKey);
        return keys.includes(newKey) && !keys.includes(oldKey);
      }, 20_000);
    }
    const seen = await flow;
    // The path came back on its own before the stream ended (the figure is in scripts/bench backends).
    expect(seen.trailingAnswered, seen.output.slice(-400)).toBeGreaterThanOrEqual(20);
    expect(failures(await reachability(t.pods, 4))).toEqual([]);

    // wireguard-go killed: the device and its routes go; twilld starts it again and configures it whole.
    const pid = Number(readFileSync(wireguardFiles(n3).pid, "utf8"));
    expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("wireguard-go");
    process.kill(pid, "SIGKILL");
    await until("node-3's wireguard-go restarted", () => t.twilld!.logged(n3, "Started wireguard-go").length === 2, 15_000);
    await until("node-3's pods reachable again", async () => (await ping(t.pods[0]!.ns, podAddress(t.pods[2]!))).ok, 20_000);
    expect(failures(await reachability(t.pods, 4))).toEqual([]);
  });
});
