import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type Daemon } from "../../../testkit/daemon.js";
import { inNetns, ipIn } from "../../../testkit/netns.js";
import { NodeNet, type SimNode } from "../../../testkit/node-net.js";
import { until } from "../../../testkit/until.js";
import { PrivateKey } from "./keys.js";
import { desiredPeers, planDevice, type WireguardLease } from "./plan.js";
import { UapiClient, UapiError, type SetRequest } from "./uapi.js";

/**
 * Two real wireguard-go devices, one per node namespace (testkit's NodeNet: node-0 192.0.2.10,
 * node-1 192.0.2.11 on one bridge), configured only through uapi.ts from plans made by
 * plan.ts, pinging each other's pod addresses through the tunnel.
 *
 * wireguard-go keeps its UAPI socket at /var/run/wireguard/<ifname>.sock and watches that
 * path even when given a socket by WG_UAPI_FD; on one machine, nodes with the same device
 * name would share it. Each is started inside the mount namespace `ip netns exec` makes, with
 * the node's own directory bound over /run/wireguard, so every node's socket is its own file
 * and nothing is mounted outside. wireguard-go runs in the foreground under the PID it was
 * started with and is stopped by it; the namespaces go with the NodeNet, also when a test fails.
 */

const DEV = "twill-wg";
const PORT = 51820;
const CLUSTER = ["10.244.0.0/16"];
/** Underlay MTU 1500 less WireGuard's 60 bytes over IPv4. */
const MTU = 1440;

const subnet = (i: number): string => `10.244.${10 + i}.0/24`;
/** A "pod" address on the node: the subnet's .1 on lo, reached from the other node through the tunnel. */
const podIp = (i: number): string => `10.244.${10 + i}.1`;

interface WgNode {
  node: SimNode;
  key: PrivateKey;
  daemon: Daemon;
  uapi: UapiClient;
  socket: string;
}

describe("wireguard-go driven through its UAPI socket", () => {
  let net: NodeNet;
  const nodes: WgNode[] = [];

  const lease = (n: WgNode): WireguardLease => ({ nodeName: n.node.name, publicIP: n.node.ip, subnets: [subnet(nodes.indexOf(n))], publicKey: n.key.publicKey(), port: PORT });
  /** Plans `n`'s device from the leases of `peers` (plus extra ones) and applies the plan; returns what was sent. */
  const reconcile = async (n: WgNode, peers: WgNode[], extra: WireguardLease[] = []): Promise<SetRequest> => {
    const self = { nodeName: n.node.name, privateKey: n.key, listenPort: PORT, subnets: [subnet(nodes.indexOf(n))] };
    const { peers: desired, refused } = desiredPeers(self, [...peers.map(lease), ...extra], { clusterCIDRs: CLUSTER, persistentKeepalive: 0 });
    expect(refused).toEqual([]);
    const req = planDevice(self, desired, await n.uapi.get());
    await n.uapi.set(req);
    return req;
  };
  const ping = (from: WgNode, to: number) => inNetns(from.node.ns, ["ping", "-c", "1", "-W", "1", podIp(to)], { reject: false });
  const log = (n: WgNode) => () => n.daemon.logTail();

  beforeAll(async () => {
    net = await NodeNet.create(2);
    for (const [i, node] of net.nodes.entries()) {
      const dir = join(node.dir, "wireguard");
      mkdirSync(dir, { recursive: true });
      const args = ["netns", "exec", node.ns, "env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=debug", "sh", "-c",
        'cd "$0" && mount -t tmpfs -o mode=0755 twill-run /run && mkdir /run/wireguard && mount --bind . /run/wireguard && exec wireguard-go "$1"', dir, DEV];
      const daemon = startDaemon(`wireguard-go ${node.name}`, "ip", args, join(net.dir, `${node.name}-wireguard-go.log`));
      const socket = join(dir, `${DEV}.sock`);
      nodes.push({ node, key: PrivateKey.generate(), daemon, socket, uapi: new UapiClient(socket) });
      await ipIn(node.ns).exec(["addr", "add", `${podIp(i)}/32`, "dev", "lo"], `pod address on ${node.name}`);
    }
    for (const n of nodes) await until(`${n.node.name}'s wireguard-go answering on its socket`, () => n.uapi.get(), undefined, log(n));
  });

  afterAll(async () => {
    // SIGTERM to the PID it was started with (`ip netns exec`, env and sh all exec'd into wireguard-go).
    for (const n of nodes.splice(0)) await n.daemon.stop();
    await net?.destroy();
  });

  it("runs each wireguard-go in the foreground under its PID, its socket in the node's own directory", () => {
    for (const n of nodes) {
      expect(readFileSync(`/proc/${n.daemon.pid}/comm`, "utf8").trim()).toBe("wireguard-go");
      expect(existsSync(n.socket)).toBe(true);
    }
    expect(existsSync(`/run/wireguard/${DEV}.sock`)).toBe(false);
  });

  it("configures both devices from the leases and pings pod addresses through the tunnel", async () => {
    const [a, b] = nodes as [WgNode, WgNode];
    for (const [i, n] of nodes.entries()) {
      const first = await reconcile(n, nodes.filter((o) => o !== n));
      expect(first.privateKey?.equals(n.key)).toBe(true);
      expect(first.peers).toHaveLength(1);
      // What the backend will do: the device up at the underlay MTU less WireGuard's overhead,
      // the node's subnet address on it (the source of node-to-pod traffic must be an allowed
      // IP at the peer), the peer's subnet routed through it.
      const other = 1 - i;
      await ipIn(n.node.ns).batch(
        [
          ["link", "set", DEV, "mtu", String(MTU), "up"],
          ["addr", "add", `${subnet(i).replace(/\/24$/, "")}/32`, "dev", DEV],
          ["route", "add", subnet(other), "dev", DEV],
        ],
        `route ${n.node.name}'s peer subnet through ${DEV}`,
      );
    }
    expect((await ping(a, 1)).exitCode).toBe(0);
    expect((await ping(b, 0)).exitCode).toBe(0);
    const peer = (await a.uapi.get()).peers[0]!;
    expect(peer).toMatchObject({ publicKey: b.key.publicKey(), endpoint: `${b.node.ip}:${PORT}`, allowedIps: [subnet(1)] });
    expect(peer.lastHandshakeSec).toBeGreaterThan(0);
    // Full-size packets pass whole at this MTU (1440 bytes: 1412 of ICMP payload).
    const big = await inNetns(a.node.ns, ["ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1412", podIp(1)], { reject: false });
    expect(big.exitCode).toBe(0);
  });

  it("sends nothing once the device is in sync", async () => {
    const [a, b] = nodes as [WgNode, WgNode];
    expect(await reconcile(a, [b])).toEqual({ peers: [] });
  });

  it("adds and removes a third peer without touching the session with the other node", async () => {
    const [a, b] = nodes as [WgNode, WgNode];
    const before = (await a.uapi.get()).peers.find((p) => p.publicKey === b.key.publicKey())!;
    const third: WireguardLease = { nodeName: "node-9", publicIP: "192.0.2.99", subnets: ["10.244.99.0/24"], publicKey: PrivateKey.generate().publicKey(), port: PORT };
    const added = await reconcile(a, [b], [third]);
    expect(added.peers).toEqual([expect.objectContaining({ op: "set", publicKey: third.publicKey })]);
    const removed = await reconcile(a, [b]);
    expect(removed.peers).toEqual([{ op: "remove", publicKey: third.publicKey }]);
    const after = (await a.uapi.get()).peers;
    expect(after.map((p) => p.publicKey)).toEqual([b.key.publicKey()]);
    expect(after[0]!.lastHandshakeSec).toBe(before.lastHandshakeSec);
    expect((await ping(a, 1)).exitCode).toBe(0);
  });

  it("follows a node's new key: that node sets it, its peer replaces that one peer, and traffic flows", async () => {
    const [a, b] = nodes as [WgNode, WgNode];
    const oldKey = b.key.publicKey();
    b.key = PrivateKey.generate();
    const own = await reconcile(b, [a]);
    expect(own.privateKey?.equals(b.key)).toBe(true);
    expect(own.peers).toEqual([]);
    const peers = await reconcile(a, [b]);
    expect(peers.peers).toEqual([
      { op: "remove", publicKey: oldKey },
      expect.objectContaining({ op: "set", publicKey: b.key.publicKey() }),
    ]);
    await until("pods reaching each other with node-1's new key", async () => (await ping(a, 1)).exitCode === 0, undefined, log(a));
    expect((await a.uapi.get()).peers.map((p) => p.publicKey)).toEqual([b.key.publicKey()]);
  });

  it("answers a bad value with errno -22, which the client throws, keeping the lines before it", async () => {
    const [a] = nodes as [WgNode];
    const junk = PrivateKey.generate().publicKey();
    const err = await a.uapi.set({ peers: [{ op: "set", publicKey: junk, allowedIps: ["10.244.0.0/33"] }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UapiError);
    expect((err as UapiError).errno).toBe(-22);
    // Not a transaction: the peer opened before the bad line is there, which is why the
    // planner sends only checked values and reads the device again after an error.
    expect((await a.uapi.get()).peers.map((p) => p.publicKey)).toContain(junk);
  });

  it("stops on SIGTERM to its PID, taking its device and its socket with it", async () => {
    const n = nodes.at(-1)!;
    await n.daemon.stop();
    expect(existsSync(n.socket)).toBe(false);
    const links = await inNetns(n.node.ns, ["ip", "-o", "link", "show"]);
    expect(links.stdout).not.toContain(DEV);
  });
});
