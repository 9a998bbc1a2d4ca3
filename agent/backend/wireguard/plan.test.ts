import { describe, expect, it } from "vitest";
import { PrivateKey } from "./keys.js";
import { desiredPeers, planDevice, type DesiredPeer, type WireguardLease, type WireguardSelf } from "./plan.js";
import type { UapiDevice, UapiPeer } from "./uapi.js";

const key = (): PrivateKey => PrivateKey.generate();
const SELF_KEY = key();
const self: WireguardSelf = { nodeName: "node-1", privateKey: SELF_KEY, listenPort: 51820, subnets: ["10.244.1.0/24", "fd10:244:1::/64"] };
const settings = { clusterCIDRs: ["10.244.0.0/16", "fd10:244::/32"], persistentKeepalive: 0 };

const pub = new Map<number, string>([2, 3, 4, 5].map((i) => [i, key().publicKey()]));
const lease = (i: number, over: Partial<WireguardLease> = {}): WireguardLease => ({
  nodeName: `node-${i}`,
  publicIP: `10.20.0.${i}`,
  subnets: [`10.244.${i}.0/24`, `fd10:244:${i}::/64`],
  publicKey: pub.get(i),
  port: 51820,
  ...over,
});
const peerOf = (i: number): DesiredPeer => ({
  nodeName: `node-${i}`,
  publicKey: pub.get(i)!,
  endpoint: `10.20.0.${i}:51820`,
  allowedIps: [`10.244.${i}.0/24`, `fd10:244:${i}::/64`],
  persistentKeepalive: 0,
});
/** The device as it reports a peer it already has in sync with `p`. */
const reported = (p: DesiredPeer, over: Partial<UapiPeer> = {}): UapiPeer => ({
  publicKey: p.publicKey,
  endpoint: p.endpoint,
  allowedIps: [...p.allowedIps].reverse(),
  persistentKeepalive: p.persistentKeepalive,
  lastHandshakeSec: 1796612711,
  rxBytes: 1,
  txBytes: 1,
  ...over,
});
const device = (peers: UapiPeer[], over: Partial<UapiDevice> = {}): UapiDevice => ({ privateKey: SELF_KEY, listenPort: 51820, fwmark: 0, peers, ...over });

describe("desiredPeers", () => {
  it("makes one peer per other node: its key, its public IP and port as endpoint, its subnets as allowed IPs", () => {
    const { peers, refused } = desiredPeers(self, [lease(3), lease(1, { publicKey: SELF_KEY.publicKey() }), lease(2)], settings);
    expect(refused).toEqual([]);
    expect(peers).toEqual([peerOf(2), peerOf(3)]);
  });

  it("writes an IPv6 endpoint in brackets, canonical", () => {
    const { peers } = desiredPeers(self, [lease(2, { publicIP: "FD00:20:0::2" })], settings);
    expect(peers[0]?.endpoint).toBe("[fd00:20::2]:51820");
  });

  it("refuses a lease with a malformed key for itself alone", () => {
    const { peers, refused } = desiredPeers(self, [lease(2, { publicKey: "c2hvcnQ=" }), lease(3), lease(4, { publicKey: undefined })], settings);
    expect(peers).toEqual([peerOf(3)]);
    expect(refused).toEqual([
      { subject: "node-2", reason: "malformed WireGuard public key (8 characters; 32 bytes in canonical base64 expected)" },
      { subject: "node-4", reason: "no WireGuard public key published" },
    ]);
  });

  it("refuses a bad port, a bad public IP, and a peer publishing this node's own key", () => {
    const { peers, refused } = desiredPeers(
      self,
      [lease(2, { port: "51820" }), lease(3, { publicIP: "nowhere" }), lease(4, { publicKey: SELF_KEY.publicKey() }), lease(5, { port: 0 })],
      settings,
    );
    expect(peers).toEqual([]);
    expect(refused.map((r) => `${r.subject}: ${r.reason}`)).toEqual([
      'node-2: no valid WireGuard port published ("51820")',
      'node-3: public IP "nowhere" is not an address',
      "node-4: publishes this node's own WireGuard public key",
      "node-5: no valid WireGuard port published (0)",
    ]);
  });

  it("refuses subnets outside the cluster or over this node's own, keeping the peer's good ones", () => {
    const { peers, refused } = desiredPeers(self, [lease(2, { subnets: ["10.244.2.0/24", "192.168.0.0/24", "10.244.1.128/25", "junk"] })], settings);
    expect(peers).toEqual([{ ...peerOf(2), allowedIps: ["10.244.2.0/24"] }]);
    expect(refused.map((r) => r.reason)).toEqual([
      "subnet 192.168.0.0/24 is outside the cluster CIDRs",
      "subnet 10.244.1.128/25 overlaps this node's own",
      'subnet "junk" is not a CIDR',
    ]);
  });

  it("refuses a peer left with no subnet", () => {
    const { peers, refused } = desiredPeers(self, [lease(2, { subnets: ["192.168.0.0/24"] })], settings);
    expect(peers).toEqual([]);
    expect(refused.at(-1)).toEqual({ subject: "node-2", reason: "no admissible subnet" });
  });

  it("refuses for both what two leases both claim: one key, or overlapping subnets", () => {
    const sameKey = desiredPeers(self, [lease(2), lease(3, { publicKey: pub.get(2) }), lease(4)], settings);
    expect(sameKey.peers).toEqual([peerOf(4)]);
    expect(sameKey.refused).toEqual([
      { subject: "node-2", reason: "publishes the same WireGuard public key as node-3" },
      { subject: "node-3", reason: "publishes the same WireGuard public key as node-2" },
    ]);
    const overlap = desiredPeers(self, [lease(2), lease(3, { subnets: ["10.244.3.0/24", "10.244.2.128/25"] })], settings);
    expect(overlap.peers).toEqual([{ ...peerOf(2), allowedIps: ["fd10:244:2::/64"] }, { ...peerOf(3), allowedIps: ["10.244.3.0/24"] }]);
    expect(overlap.refused).toEqual([
      { subject: "node-2", reason: "subnet 10.244.2.0/24 overlaps node-3's" },
      { subject: "node-3", reason: "subnet 10.244.2.128/25 overlaps node-2's" },
    ]);
  });

  it("carries the keepalive setting", () => {
    expect(desiredPeers(self, [lease(2)], { ...settings, persistentKeepalive: 25 }).peers[0]?.persistentKeepalive).toBe(25);
  });
});

describe("planDevice", () => {
  it("configures a fresh device whole: key, port, every peer", () => {
    const req = planDevice(self, [peerOf(2), peerOf(3)], { privateKey: null, listenPort: 0, fwmark: 0, peers: [] });
    expect(req.privateKey?.equals(SELF_KEY)).toBe(true);
    expect(req.listenPort).toBe(51820);
    expect(req.peers).toEqual([
      { op: "set", publicKey: pub.get(2), endpoint: "10.20.0.2:51820", persistentKeepalive: 0, allowedIps: ["10.244.2.0/24", "fd10:244:2::/64"] },
      { op: "set", publicKey: pub.get(3), endpoint: "10.20.0.3:51820", persistentKeepalive: 0, allowedIps: ["10.244.3.0/24", "fd10:244:3::/64"] },
    ]);
  });

  it("sends nothing when the device is in sync (allowed IPs in any order and form)", () => {
    const req = planDevice(self, [peerOf(2), peerOf(3)], device([reported(peerOf(3)), reported(peerOf(2), { allowedIps: ["fd10:244:2:0::/64", "10.244.2.0/24"] })]));
    expect(req).toEqual({ peers: [] });
  });

  it("adds only the peer that joined", () => {
    const req = planDevice(self, [peerOf(2), peerOf(3), peerOf(4)], device([reported(peerOf(2)), reported(peerOf(3))]));
    expect(req.peers).toEqual([{ op: "set", publicKey: pub.get(4), endpoint: "10.20.0.4:51820", persistentKeepalive: 0, allowedIps: peerOf(4).allowedIps }]);
    expect(req.privateKey).toBeUndefined();
  });

  it("removes only the peer that left, and peers twill does not know", () => {
    const stranger = key().publicKey();
    const req = planDevice(self, [peerOf(2)], device([reported(peerOf(2)), reported(peerOf(3)), reported({ ...peerOf(4), publicKey: stranger })]));
    expect(req.peers).toEqual([
      { op: "remove", publicKey: pub.get(3) },
      { op: "remove", publicKey: stranger },
    ]);
  });

  it("changes only the fields that differ on a peer that stays, as an update", () => {
    const req = planDevice(
      self,
      [peerOf(2), { ...peerOf(3), persistentKeepalive: 25 }],
      device([reported(peerOf(2), { endpoint: "10.20.0.99:51820" }), reported(peerOf(3), { allowedIps: ["10.244.3.0/24"] })]),
    );
    expect(req.peers).toEqual([
      { op: "set", publicKey: pub.get(2), updateOnly: true, endpoint: "10.20.0.2:51820" },
      { op: "set", publicKey: pub.get(3), updateOnly: true, persistentKeepalive: 25, allowedIps: peerOf(3).allowedIps },
    ]);
  });

  it("replaces a peer whose key changed: the old key removed, the new one added whole", () => {
    const rotated = key().publicKey();
    const req = planDevice(self, [peerOf(2), { ...peerOf(3), publicKey: rotated }], device([reported(peerOf(2)), reported(peerOf(3))]));
    expect(req.peers).toEqual([
      { op: "remove", publicKey: pub.get(3) },
      { op: "set", publicKey: rotated, endpoint: "10.20.0.3:51820", persistentKeepalive: 0, allowedIps: peerOf(3).allowedIps },
    ]);
  });

  it("sets this node's key when the device holds another (a rotated or replaced key), and a changed port", () => {
    const req = planDevice(self, [peerOf(2)], device([reported(peerOf(2))], { privateKey: key(), listenPort: 51821 }));
    expect(req.privateKey?.equals(SELF_KEY)).toBe(true);
    expect(req.listenPort).toBe(51820);
    expect(req.peers).toEqual([]);
  });
});
