import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { libc } from "../../../shared/kernel/netlink/libc.js";
import { addNetns, deleteNetns, inNetns, ipIn, kernelIn, netnsPath } from "../../../testkit/netns.js";
import { PrivateKey } from "./keys.js";
import { KernelWireguardClient, NoKernelWireguardError } from "./kernel-client.js";
import { planDevice } from "./plan.js";

/**
 * The kernel WireGuard device through twill's own netlink, in a namespace of the test's own.
 * Whether the kernel has WireGuard is observed first with iproute2 (`ip link add … type
 * wireguard` inside the namespace), independently of the code under test: without it (a
 * kernel built without the module) the device type is refused and nlctrl knows no family;
 * with it, the device is made, configured and read back through the same SetRequest and
 * UapiDevice as wireguard-go.
 */

const ns = `twkwg${process.pid.toString(36)}`;
const DEV = "twill-wg";
let kernelHasWireguard = false;

const client = () => new KernelWireguardClient(DEV, libc()!, netnsPath(ns));
const linkNames = async () => (await ipIn(ns).links()).map((l) => l.ifname);

beforeAll(async () => {
  await addNetns(ns);
  const probe = await inNetns(ns, ["ip", "link", "add", "twprobe", "type", "wireguard"]);
  kernelHasWireguard = probe.exitCode === 0;
  if (kernelHasWireguard) await ipIn(ns).deleteLink("twprobe");
});
afterAll(() => deleteNetns(ns));

describe("a kernel without WireGuard", () => {
  it("refuses the device type: ensureWireguardLink answers unsupported and nothing is made", async (ctx) => {
    if (kernelHasWireguard) ctx.skip();
    const kernel = kernelIn(ns);
    try {
      expect(await kernel.ensureWireguardLink(DEV, 1420)).toBe("unsupported");
      expect(await ipIn(ns).link(DEV)).toBeNull();
      expect(await linkNames()).toEqual(["lo"]);
    } finally {
      kernel.close();
    }
  });

  it("has no generic netlink family \"wireguard\": the client says so, for get and set", async (ctx) => {
    if (kernelHasWireguard) ctx.skip();
    const wg = client();
    try {
      const get = wg.get();
      await expect(get).rejects.toBeInstanceOf(NoKernelWireguardError);
      await expect(get).rejects.toThrow(`failed to read WireGuard device "${DEV}": the kernel has no WireGuard (generic netlink family "wireguard" not found)`);
      await expect(wg.set({ listenPort: 51820 })).rejects.toThrow(/the kernel has no WireGuard/);
    } finally {
      wg.close();
    }
  });

  it("refuses wireguard-go's TUN under the device's name instead of taking it for the kernel's device", async () => {
    await ipIn(ns).exec(["tuntap", "add", "dev", DEV, "mode", "tun"], "create a TUN device");
    const kernel = kernelIn(ns);
    try {
      await expect(kernel.ensureWireguardLink(DEV, 1420)).rejects.toThrow(`"${DEV}" is a tun, not a WireGuard device`);
    } finally {
      kernel.close();
      await ipIn(ns).deleteLink(DEV);
    }
  });
});

describe("a kernel with WireGuard (skipped where it has none)", () => {
  const PEER_A = "72Pdv6UxeV8vhOh3TIybQ8Nw/TfFoPiU0iDGRr0oSlM=";
  const PEER_B = "/q15P3CQqn9u4zP/NwXYaG62rQZcAd9KRkaNyERJ/2Y=";

  it("makes the device, configures it in several messages and reads back what plan.ts expects", async (ctx) => {
    if (!kernelHasWireguard) ctx.skip();
    const kernel = kernelIn(ns);
    const wg = client();
    try {
      expect(await kernel.ensureWireguardLink(DEV, 1420)).toBe("created");
      expect(await kernel.ensureWireguardLink(DEV, 1420)).toBe("exists");
      expect(await wg.get()).toMatchObject({ privateKey: null, peers: [] });

      const self = { privateKey: PrivateKey.generate(), listenPort: 51820 };
      const many = Array.from({ length: 300 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`).sort();
      const desired = [
        { nodeName: "a", publicKey: PEER_A, endpoint: "[fd00:20::2]:51820", allowedIps: ["10.244.2.0/24", "fd10:244:2::/64"], persistentKeepalive: 25 },
        { nodeName: "b", publicKey: PEER_B, endpoint: "10.20.0.3:51820", allowedIps: many, persistentKeepalive: 0 },
      ];
      await wg.set(planDevice(self, desired, await wg.get()));
      const device = await wg.get();
      expect(device.privateKey?.equals(self.privateKey)).toBe(true);
      expect(device.listenPort).toBe(51820);
      expect(device.peers.map((p) => [p.publicKey, p.endpoint, p.persistentKeepalive, p.allowedIps.length])).toEqual([
        [PEER_A, "[fd00:20::2]:51820", 25, 2],
        [PEER_B, "10.20.0.3:51820", 0, 300],
      ]);
      expect(planDevice(self, desired, device)).toEqual({ peers: [] });

      await wg.set(planDevice(self, desired.slice(0, 1), device));
      expect((await wg.get()).peers.map((p) => p.publicKey)).toEqual([PEER_A]);
    } finally {
      wg.close();
      kernel.close();
      await ipIn(ns).deleteLink(DEV);
    }
  });
});
