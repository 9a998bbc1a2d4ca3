import { describe, expect, it } from "vitest";
import { parseNetworkConfig } from "../../config.js";
import { nullLogger } from "../../../shared/log.js";
import type { NodeLease } from "../../types.js";
import { PrivateKey } from "./keys.js";
import { desiredPeers } from "./plan.js";
import { deviceSpec, WireguardBackend, wireguardLeases, wireguardOverhead, wireguardRoutes } from "./wireguard-backend.js";

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

  it("refuses kernel mode until the kernel device is implemented", () => {
    const deps = { kernel: {} as never, logger: nullLogger };
    expect(() => new WireguardBackend(network("kernel"), { keyFile: "/nonexistent", dir: null }, deps)).toThrow(/kernel WireGuard device is not implemented yet/);
    expect(new WireguardBackend(network("auto"), { keyFile: "/nonexistent", dir: null }, deps).overhead(4)).toBe(60);
  });
});
