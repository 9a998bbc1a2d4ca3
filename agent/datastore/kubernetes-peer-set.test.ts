import { describe, expect, it } from "vitest";
import { formatCidr } from "../../shared/net/cidr.js";
import type { BackendData } from "../types.js";
import { claimDecision, leaseView, takenByOthers, withLegacy } from "./kubernetes-lease-view.js";
import { ANNOTATIONS } from "./kubernetes-node-view.js";
import { publishedLeases, unreadableObjects } from "./kubernetes-peer-set.js";
import { lapseDelay } from "./watch-emitter.js";
import { NOW, backend, clean, lease, node } from "../../testkit/kube/views.js";

describe("publishedLeases", () => {
  it("lists annotated nodes with podCIDRs, and leased nodes with their live Leases", () => {
    const nodes = [
      clean(node("kcm", { podCIDRs: ["10.244.9.0/24"], createdAt: 42 })),
      clean(node("leased", {}, ["10.244.1.0/24"])),
      clean(node("lapsed", {}, ["10.244.2.0/24"])),
      clean(node("stolen", {}, ["10.244.3.0/24"])),
      { name: "bare", podCIDRs: ["10.244.8.0/24"], annotations: {} },
      clean(node("no-subnet")),
    ];
    const leases = [
      lease("10.244.1.0/24", "leased"),
      lease("10.244.2.0/24", "lapsed", NOW - 61_000),
      lease("10.244.3.0/24", "other"),
    ];
    const set = publishedLeases(nodes, leases, NOW);
    expect(set).toEqual([
      { nodeName: "kcm", subnets: ["10.244.9.0/24"], publicIP: "192.0.2.1", backend, acquiredAt: 42 },
      {
        nodeName: "leased",
        subnets: ["10.244.1.0/24"],
        publicIP: "192.0.2.1",
        backend,
        expiresAt: NOW - 1_000 + 60_000,
        acquiredAt: NOW - 6_000,
      },
    ]);
  });

  it("skips a node whose backend data is not JSON instead of failing the whole view", () => {
    const broken = clean(node("x", { podCIDRs: ["10.244.9.0/24"] }));
    broken.annotations[ANNOTATIONS.backendData] = "{";
    expect(publishedLeases([broken, clean(node("y", { podCIDRs: ["10.244.8.0/24"] }))], [], NOW).map((l) => l.nodeName)).toEqual(["y"]);
  });
});

describe("the peer set's next lapse", () => {
  it("is a leased node's first Lease to lapse: the moment the set changes without an API event", () => {
    const twice = clean(node("twice", {}, ["10.244.1.0/24", "10.244.2.0/24"]));
    const leases = [lease("10.244.1.0/24", "twice", NOW, 30), lease("10.244.2.0/24", "twice", NOW, 60)];
    const set = publishedLeases([twice], leases, NOW);
    expect(lapseDelay(set, NOW)).toBe(30_001);
    const later = publishedLeases([twice], leases, NOW + 30_001);
    expect(later.map((l) => l.subnets)).toEqual([["10.244.2.0/24"]]);
    expect(lapseDelay(later, NOW + 30_001)).toBe(30_000);
  });

  it("is none for nodes on spec.podCIDRs, which never lapse", () => {
    expect(lapseDelay(publishedLeases([clean(node("kcm", { podCIDRs: ["10.244.9.0/24"] }))], [], NOW), NOW)).toBeUndefined();
  });
});

describe("a node switching backend", () => {
  const hostGw: BackendData = { type: "host-gw", underlayMTU: 1500 };

  it("reads a half-published record (type and data disagree) by its data, which is complete", () => {
    const n = clean(node("x", { podCIDRs: ["10.244.9.0/24"] }));
    n.annotations[ANNOTATIONS.publicIP] = "192.0.2.9";
    n.annotations[ANNOTATIONS.backendType] = "vxlan";
    n.annotations[ANNOTATIONS.backendData] = JSON.stringify(hostGw);
    expect(publishedLeases([n], [], NOW)[0]!.backend).toEqual(hostGw);
    // Views are never changed once made (their decoding is remembered): a new view.
    const later = { ...n, annotations: { ...n.annotations, [ANNOTATIONS.backendData]: JSON.stringify({ vtepMAC: "02:00:00:00:00:09" }) } };
    expect(publishedLeases([later], [], NOW)[0]!.backend).toEqual({ type: "vxlan", vtepMAC: "02:00:00:00:00:09" });
  });
});

describe("unreadable objects", () => {
  const raw = (subnetAnnotation: string | undefined, holder = "live", renew = new Date(NOW - 600_000)) =>
    leaseView({
      metadata: {
        name: "twill-10-244-1-0-24",
        labels: { "app.kubernetes.io/managed-by": "twilld" },
        annotations: subnetAnnotation === undefined ? {} : { "twill.dev/subnet": subnetAnnotation },
      },
      spec: { holderIdentity: holder, leaseDurationSeconds: 60, renewTime: renew },
    });

  it("never frees or takes over a managed Lease whose subnet annotation is missing, garbage or another subnet", () => {
    for (const bad of [undefined, "garbage", "10.244.2.0/24"]) {
      const l = raw(bad);
      expect(l.unreadable).toBeDefined();
      // Lapsed by its renewTime, yet not free.
      expect(claimDecision(l, "a", NOW)).toBe("taken");
      expect(takenByOthers("a", [], [l], NOW).map(formatCidr)).toEqual(["10.244.1.0/24"]);
      expect(unreadableObjects([], [l], "kube-system")).toEqual([
        { kind: "claim", key: "Lease kube-system/twill-10-244-1-0-24", reason: l.unreadable },
      ]);
    }
    expect(raw("10.244.1.0/24").unreadable).toBeUndefined();
  });

  it("keeps a node's subnet whose Lease cannot be read, and a node's last good view when its annotations stop decoding", () => {
    const lastGood = new Map();
    const good = clean(node("live", {}, ["10.244.1.0/24"]));
    const before = publishedLeases([good], [lease("10.244.1.0/24", "live")], NOW, lastGood);
    expect(before.map((l) => l.subnets)).toEqual([["10.244.1.0/24"]]);
    expect(publishedLeases([good], [raw("garbage")], NOW, lastGood).map((l) => l.subnets)).toEqual([["10.244.1.0/24"]]);
    const torn = { ...good, annotations: { ...good.annotations, [ANNOTATIONS.backendData]: "{not json" } };
    expect(publishedLeases([torn], [lease("10.244.1.0/24", "live")], NOW, lastGood).map((l) => [l.nodeName, l.subnets, l.backend])).toEqual([
      ["live", ["10.244.1.0/24"], backend],
    ]);
    expect(unreadableObjects([torn], [], "kube-system").map((r) => r.key)).toEqual(["Node live"]);
  });

  it("hands out the same lease object while a node and its Leases are unchanged, and a new one when they change", () => {
    const lastGood = new Map();
    const a = clean(node("a", { podCIDRs: ["10.244.1.0/24"] }));
    const b = clean(node("b", {}, ["10.244.2.0/24"]));
    const leases = [lease("10.244.2.0/24", "b")];
    const first = publishedLeases([a, b], leases, NOW, lastGood);
    const second = publishedLeases([a, b], leases, NOW, lastGood);
    expect(second[0]).toBe(first[0]);
    expect(second[1]).toBe(first[1]);
    // b renewed its Lease: a new expiry, a new object; a is still the same.
    const third = publishedLeases([a, b], [lease("10.244.2.0/24", "b", NOW)], NOW, lastGood);
    expect(third[0]).toBe(first[0]);
    expect(third[1]).not.toBe(first[1]);
    expect(third[1]!.expiresAt).toBe(NOW + 60_000);
    // A new view of a (an update from the API) with another address.
    const moved = { ...a, annotations: { ...a.annotations, [ANNOTATIONS.publicIP]: "192.0.2.9" } };
    expect(publishedLeases([moved, b], leases, NOW, lastGood)[0]!.publicIP).toBe("192.0.2.9");
  });
});

describe("a Node with spec.podCIDRs", () => {
  it("has exactly those: a twill.dev/subnets annotation beside them is ignored and reported", () => {
    // The forged annotation is even backed by a live Lease the node holds: still not its subnet.
    const forged = clean(node("forged", { podCIDRs: ["10.244.9.0/24"] }, ["10.244.0.0/16"]));
    const leases = [lease("10.244.0.0/16", "forged")];
    expect(publishedLeases([forged], leases, NOW).map((l) => [l.nodeName, l.subnets])).toEqual([["forged", ["10.244.9.0/24"]]]);
    expect(unreadableObjects([forged], leases, "twill-system")).toEqual([
      { kind: "node", key: "Node forged", reason: expect.stringMatching(/twill\.dev\/subnets "10\.244\.0\.0\/16" ignored: the Node's spec\.podCIDRs 10\.244\.9\.0\/24/) },
    ]);
  });

  it("reports nothing when the annotation names the podCIDRs themselves", () => {
    const same = clean(node("same", { podCIDRs: ["10.244.9.0/24", "fd00:10:244:9::/64"] }, ["fd00:10:244:9::/64", "10.244.9.0/24"]));
    expect(unreadableObjects([same], [], "twill-system")).toEqual([]);
    expect(publishedLeases([same], [], NOW)[0]!.subnets).toEqual(["10.244.9.0/24", "fd00:10:244:9::/64"]);
  });

  it("joins two problems of one Node into one record", () => {
    const both = clean(node("both", { podCIDRs: ["10.244.9.0/24"] }, ["10.244.1.0/24"]));
    both.annotations[ANNOTATIONS.backendData] = JSON.stringify({ ...backend, vni: -1 });
    const found = unreadableObjects([both], [], "twill-system");
    expect(found).toHaveLength(1);
    expect(found[0]!.reason).toMatch(/"vni" is -1, .*; twill\.dev\/subnets "10\.244\.1\.0\/24" ignored/);
  });
});

describe("decodeBackend in the peer set", () => {
  it("keeps one Node with \"vtepMAC\": 5 out of the peer set, alone, and names the field", () => {
    const bad = clean(node("bad", { podCIDRs: ["10.244.1.0/24"] }));
    bad.annotations[ANNOTATIONS.backendData] = JSON.stringify({ ...backend, vtepMAC: 5 });
    const good = clean(node("good", { podCIDRs: ["10.244.2.0/24"] }));
    const set = publishedLeases([bad, good], [], NOW);
    expect(set.map((l) => l.nodeName)).toEqual(["good"]);
    expect(set[0]!.backend.vtepMAC).toBe("02:00:00:00:00:01");
    expect(unreadableObjects([bad, good], [], "twill-system")).toEqual([
      { kind: "node", key: "Node bad", reason: 'twill.dev/backend-data field "vtepMAC" is 5, not a string' },
    ]);
  });
});

describe("moving the Leases of an older twilld out of kube-system", () => {
  it("keeps in the peer set a node not upgraded yet, by its live old Lease, and reads a moved node from twill's namespace", () => {
    const old = clean(node("old", {}, ["10.244.1.0/24"]));
    const moved = clean(node("moved", {}, ["10.244.2.0/24"]));
    const legacy = [lease("10.244.1.0/24", "old"), lease("10.244.2.0/24", "moved", NOW - 30_000)];
    const current = [lease("10.244.2.0/24", "moved", NOW)];
    const merged = withLegacy(current, legacy);
    expect(merged.map((l) => [l.subnet, l.renewTime])).toEqual([
      ["10.244.2.0/24", NOW],
      ["10.244.1.0/24", NOW - 1_000],
    ]);
    const set = publishedLeases([old, moved], merged, NOW);
    expect(set.map((l) => [l.nodeName, l.subnets, l.expiresAt])).toEqual([
      ["old", ["10.244.1.0/24"], NOW - 1_000 + 60_000],
      ["moved", ["10.244.2.0/24"], NOW + 60_000],
    ]);
    // Once the old Lease lapses, the node not upgraded leaves the set, as it would have before.
    expect(publishedLeases([old, moved], merged, NOW + 59_500).map((l) => l.nodeName)).toEqual(["moved"]);
    expect(withLegacy(current, [])).toBe(current);
  });
});
