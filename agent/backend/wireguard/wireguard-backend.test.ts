import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { fakeWireguardDevice } from "../../../testkit/wireguard-device.js";
import type { DatapathChange, NodeKernel } from "../../../shared/kernel/node-kernel.js";
import type { RouteSpec } from "../../../shared/kernel/routes.js";
import { KernelError } from "../../../shared/kernel/types.js";
import { parseNetworkConfig } from "../../config.js";
import { nullLogger } from "../../../shared/log.js";
import type { NodeLease } from "../../types.js";
import { PrivateKey } from "./keys.js";
import { desiredPeers } from "./plan.js";
import { readWireguardReport } from "./wireguard-report.js";
import { UapiClient } from "./uapi.js";
import { chooseWireguardMode, deviceSpec, WireguardBackend, wireguardLeases, wireguardOverhead, wireguardRoutes } from "./wireguard-backend.js";

const network = (mode = "userspace") => parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "wireguard", Mode: mode } });
const local = { nodeName: "node-1", publicIP: "192.0.2.1", underlayDev: "eth0", underlayMTU: 1500 };

const lease = (name: string, i: number, backend: Partial<NodeLease["backend"]>): NodeLease => ({
  nodeName: name, publicIP: `192.0.2.${i}`, subnets: [`10.244.${i}.0/24`], backend: { type: "wireguard", ...backend },
});

describe("the wireguard backend's plain decisions", () => {
  it("takes WireGuard's measured overhead from the underlay MTU: 60 over IPv4, 80 over IPv6", () => {
    expect([wireguardOverhead(4), wireguardOverhead(6)]).toEqual([60, 80]);
    expect(deviceSpec(local, ["10.244.1.0/24", "fd00:10:244:1::/64"])).toEqual({ name: "twill-wg", mtu: 1440, addresses: ["10.244.1.0/32", "fd00:10:244:1::/128"] });
    expect(deviceSpec({ ...local, publicIP: "fd00:90::1" }, []).mtu).toBe(1420);
  });

  it("routes each admitted peer's subnets through the device, without a gateway, and none of a refused one", () => {
    const self = { nodeName: "node-1", privateKey: PrivateKey.generate(), listenPort: 51820, subnets: ["10.244.1.0/24"] };
    const good = lease("node-2", 2, { wgPublicKey: PrivateKey.generate().publicKey(), wgPort: 51820 });
    const keyless = lease("node-3", 3, {});
    const { peers, refused } = desiredPeers(self, wireguardLeases([good, keyless]), { clusterCIDRs: ["10.244.0.0/16"], persistentKeepalive: 0 });
    expect(wireguardRoutes(peers)).toEqual([{ dst: "10.244.2.0/24", via: "", dev: "twill-wg", onlink: false }]);
    expect(peers[0]).toMatchObject({ endpoint: "192.0.2.2:51820", allowedIps: ["10.244.2.0/24"] });
    expect(refused).toEqual([{ subject: "node-3", reason: "no WireGuard public key published" }]);
  });

  it("chooses the device: kernel when it can be made, wireguard-go where the kernel has none, a running wireguard-go kept in auto", async () => {
    const made: string[] = [];
    const kernel = (answer: "created" | "exists" | "unsupported") => async () => {
      made.push(answer);
      return answer;
    };
    const idle = async () => false;
    expect(await chooseWireguardMode("auto", idle, kernel("created"))).toEqual({ mode: "kernel", reason: "auto: the kernel has WireGuard" });
    expect(await chooseWireguardMode("auto", idle, kernel("exists"))).toEqual({ mode: "kernel", reason: "auto: the kernel has WireGuard" });
    expect(await chooseWireguardMode("auto", idle, kernel("unsupported"))).toEqual({ mode: "userspace", reason: "auto: the kernel has no WireGuard device type" });
    expect(await chooseWireguardMode("kernel", idle, kernel("created"))).toEqual({ mode: "kernel", reason: "configured" });
    await expect(chooseWireguardMode("kernel", idle, kernel("unsupported"))).rejects.toThrow(/this kernel has no WireGuard device type .*use "auto" or "userspace"/);
    made.length = 0;
    // Neither a running wireguard-go in auto nor userspace mode ever makes the kernel's device.
    expect(await chooseWireguardMode("auto", async () => true, kernel("created"))).toEqual({ mode: "userspace", reason: "auto: wireguard-go already runs this node's device" });
    expect(await chooseWireguardMode("userspace", idle, kernel("created"))).toEqual({ mode: "userspace", reason: "configured" });
    expect(made).toEqual([]);
  });
});

/** The kernel as the backend uses it: the device, its addresses, twill's routes and nft tables. */
function fakeKernel() {
  const state = { link: { index: 7, name: "twill-wg", up: false, lowerUp: false, mtu: 1420 }, addresses: [] as string[], routes: [] as RouteSpec[], tables: new Map<string, string>() };
  const kernel = {
    link: async (name: string) => (name === "twill-wg" ? { ...state.link } : null),
    addrs: async (dev?: string) =>
      dev === "twill-wg" ? [{ index: 7, name: dev, addresses: state.addresses.map((a) => ({ family: a.includes(":") ? 6 : 4, ip: a.split("/")[0], prefixLength: Number(a.split("/")[1]), scope: "global" })) }] : [],
    setLink: async (s: { mtu?: number; up?: boolean }) => void Object.assign(state.link, s.mtu !== undefined ? { mtu: s.mtu } : {}, s.up ? { up: true } : {}),
    replaceAddress: async (_dev: string, cidr: string) => void state.addresses.push(cidr),
    deleteAddress: async (_dev: string, cidr: string) => void (state.addresses = state.addresses.filter((a) => a !== cidr)),
    deleteLink: async () => false,
    ensureWireguardLink: async () => "exists" as const,
    ownedRoutes: async () => [...state.routes],
    applyDatapath: async (changes: DatapathChange[]) => {
      for (const c of changes) {
        state.routes = state.routes.filter((r) => r.dst !== (c.entry as RouteSpec).dst);
        if (c.op === "replace") state.routes.push(c.entry as RouteSpec);
      }
      return [];
    },
    nft: async (args: readonly string[], op: string, input?: string) => {
      if (args[0] === "-f") {
        state.tables.set("twill-wg", input!);
        return "";
      }
      const t = state.tables.get("twill-wg");
      if (t === undefined) throw new KernelError(op, "No such file or directory", { errno: 2 });
      return t;
    },
  };
  return { state, kernel: kernel as unknown as NodeKernel };
}

describe("WireguardBackend against a fake wireguard-go and kernel", () => {
  let dir: string;
  let fake: Awaited<ReturnType<typeof fakeWireguardDevice>> | null = null;
  afterEach(async () => {
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("publishes its key and port, configures the device whole, then touches only the peer that changed", async () => {
    dir = mkdtempSync(join(tmpdir(), "twill-wg-backend-"));
    fake = await fakeWireguardDevice(join(dir, "twill-wg.sock"));
    const { state, kernel } = fakeKernel();
    const registry = new Registry();
    const reportFile = join(dir, "wireguard.json");
    const backend = new WireguardBackend(network(), { keyFile: join(dir, "key"), dir, reportFile, checkTun: () => undefined }, { kernel, logger: nullLogger, registry });
    const data = await backend.prepare(local);
    expect(statSync(join(dir, "key")).mode & 0o777).toBe(0o600);
    expect(data).toMatchObject({ type: "wireguard", wgPort: 51820, underlayMTU: 1500, underlayIPs: ["192.0.2.1"] });
    expect(JSON.stringify(data)).not.toContain(readFileSync(join(dir, "key"), "utf8").trim());
    expect(await registry.metrics()).toContain('twill_wireguard_mode{mode="userspace"} 1');

    const own: NodeLease = { ...lease("node-1", 1, data), publicIP: "192.0.2.1" };
    const k2 = PrivateKey.generate().publicKey();
    const k3 = PrivateKey.generate().publicKey();
    const peers = [lease("node-2", 2, { wgPublicKey: k2, wgPort: 51820 }), lease("node-3", 3, { wgPublicKey: k3, wgPort: 51000 }), lease("node-4", 4, { wgPort: 51820 })];
    const report = await backend.reconcile(own, peers);
    expect(report.errors).toEqual([{ peer: "node-4", message: "no WireGuard public key published" }]);
    expect(state.link).toMatchObject({ up: true, mtu: 1440 });
    expect(state.addresses).toEqual(["10.244.1.0/32"]);
    expect(state.routes.map((r) => `${r.dst} ${r.via}/${r.dev}`).sort()).toEqual(["10.244.2.0/24 /twill-wg", "10.244.3.0/24 /twill-wg"]);
    expect(state.tables.get("twill-wg")).toContain('iifname "eth0" ip daddr 10.244.0.0/16 counter name underlay_to_pods drop');
    expect(fake!.device.listenPort).toBe(51820);
    expect([...fake!.device.peers.values()].map((p) => `${p.endpoint} ${p.allowed.join()}`).sort()).toEqual(["192.0.2.2:51820 10.244.2.0/24", "192.0.2.3:51000 10.244.3.0/24"]);
    // What `twilld status` shows: the mode, this node's public key, a row per peer, the refusal.
    const shown = readWireguardReport(reportFile)!;
    expect(shown).toMatchObject({ mode: "userspace", modeReason: "configured", device: "twill-wg", listenPort: 51820, publicKey: data.wgPublicKey, refused: [{ subject: "node-4" }] });
    expect(shown.peers.map((p) => [p.peer, p.endpoint, p.publicKey])).toEqual([["node-2", "192.0.2.2:51820", k2], ["node-3", "192.0.2.3:51000", k3]]);
    expect(JSON.stringify(shown)).not.toContain(readFileSync(join(dir, "key"), "utf8").trim());

    // In sync: nothing sent. node-3's key replaced: that peer alone is swapped.
    expect((await backend.reconcile(own, peers)).changes).toBe(0);
    const k3b = PrivateKey.generate().publicKey();
    await backend.reconcilePeers(own, [peers[0]!, lease("node-3", 3, { wgPublicKey: k3b, wgPort: 51000 })], ["node-3"]);
    const hex = (k: string) => Buffer.from(k, "base64").toString("hex");
    expect(fake!.sets.at(-1)).toEqual([`public_key=${hex(k3)}`, "remove=true", `public_key=${hex(k3b)}`, "endpoint=192.0.2.3:51000", "persistent_keepalive_interval=0", "replace_allowed_ips=true", "allowed_ip=10.244.3.0/24"]);
    expect([...fake!.device.peers.keys()].sort()).toEqual([hex(k2), hex(k3b)].sort());
    // node-2 gone: its peer and its route go.
    await backend.reconcile(own, [lease("node-3", 3, { wgPublicKey: k3b, wgPort: 51000 })]);
    expect(state.routes.map((r) => r.dst)).toEqual(["10.244.3.0/24"]);
    expect(fake!.device.peers.size).toBe(1);
    backend.close();
  });

  it("kernel mode: drives the kernel's device through its control, starts no wireguard-go, and says so", async () => {
    dir = mkdtempSync(join(tmpdir(), "twill-wg-backend-"));
    // The kernel's generic netlink stands in as a UAPI device: the same WireguardControl surface.
    fake = await fakeWireguardDevice(join(dir, "kernel.sock"));
    const { state, kernel } = fakeKernel();
    const reportFile = join(dir, "wireguard.json");
    let closed = false;
    const control = Object.assign(new UapiClient(join(dir, "kernel.sock")), { close: () => void (closed = true) });
    const registry = new Registry();
    const backend = new WireguardBackend(network("auto"), {
      keyFile: join(dir, "key"), dir, reportFile, kernelControl: () => control,
      checkTun: () => { throw new Error("kernel mode must not need /dev/net/tun"); },
    }, { kernel, logger: nullLogger, registry });
    const data = await backend.prepare(local);
    expect(await registry.metrics()).toContain('twill_wireguard_mode{mode="kernel"} 1');
    const k2 = PrivateKey.generate().publicKey();
    await backend.reconcile({ ...lease("node-1", 1, data), publicIP: "192.0.2.1" }, [lease("node-2", 2, { wgPublicKey: k2, wgPort: 51820 })]);
    expect(fake!.device.peers.size).toBe(1);
    expect(fake!.device.listenPort).toBe(51820);
    expect(state.routes.map((r) => `${r.dst} ${r.dev}`)).toEqual(["10.244.2.0/24 twill-wg"]);
    expect(readWireguardReport(reportFile)).toMatchObject({ mode: "kernel", modeReason: "auto: the kernel has WireGuard", wireguardGo: null });
    // No wireguard-go was started: its socket directory holds nothing of it.
    expect(existsSync(join(dir, "twill-wg.sock"))).toBe(false);
    backend.close();
    expect(closed).toBe(true);
  });
});
