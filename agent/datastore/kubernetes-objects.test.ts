import { describe, expect, it } from "vitest";
import { formatCidr } from "../../shared/net/cidr.js";
import { parseNetworkConfig } from "../config.js";
import { DatastoreError } from "../errors.js";
import type { BackendData } from "../types.js";
import {
  ANNOTATIONS,
  annotationChanges,
  claimDecision,
  decodeBackend,
  leaseName,
  leaseView,
  legacyPlan,
  nextExpiry,
  nodeAnnotations,
  nodeFingerprint,
  nodeView,
  publishedLeases,
  subnetSource,
  takenByOthers,
  unreadableObjects,
  withLegacy,
  type LeaseView,
  type NodeView,
} from "./kubernetes-objects.js";

const NOW = 1_000_000;
const backend = { type: "vxlan", vtepMAC: "02:00:00:00:00:01", vni: 1 };

const node = (name: string, extra: Partial<NodeView> = {}, leased?: string[]): NodeView => ({
  name,
  podCIDRs: [],
  annotations: { ...(nodeAnnotations("192.0.2.1", backend, leased ?? null) as Record<string, string>) },
  ...extra,
});
// nodeAnnotations gives null for "no leased subnets"; a Node never shows a null annotation.
const clean = (n: NodeView): NodeView => ({
  ...n,
  annotations: Object.fromEntries(Object.entries(n.annotations).filter(([, v]) => v !== null)),
});

const lease = (subnet: string, holder: string | undefined, renewTime = NOW - 1_000, durationSeconds = 60): LeaseView => ({
  name: leaseName(subnet),
  subnet,
  managed: true,
  ...(holder ? { holder } : {}),
  durationSeconds,
  renewTime,
  acquireTime: renewTime - 5_000,
  transitions: 0,
});

describe("leaseName", () => {
  it("names a Lease after its subnet, for both families, as a DNS subdomain", () => {
    expect(leaseName("10.244.3.0/24")).toBe("twill-10-244-3-0-24");
    expect(leaseName("fd00:10:244::/64")).toBe("twill-fd00-10-244---64");
    // Canonical: the same subnet written differently is the same Lease.
    expect(leaseName("fd00:10:244:0::/64")).toBe(leaseName("fd00:10:244::/64"));
    for (const n of [leaseName("10.0.0.0/8"), leaseName("fd00::/48")]) expect(n).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
  });
});

describe("nodeView and leaseView", () => {
  it("read typed objects and wire JSON alike", () => {
    const wire = nodeView({
      metadata: { name: "a", uid: "u1", annotations: { x: "y" }, creationTimestamp: "2026-01-01T00:00:00Z" },
      spec: { podCIDR: "10.244.1.0/24" },
      status: { conditions: [{ type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" }] },
    });
    expect(wire).toEqual({
      name: "a",
      uid: "u1",
      podCIDRs: ["10.244.1.0/24"],
      annotations: { x: "y" },
      createdAt: Date.parse("2026-01-01T00:00:00Z"),
      networkUnavailable: { status: "True", reason: "NoRouteCreated" },
    });
    const typed = nodeView({ metadata: { name: "a", creationTimestamp: new Date(5) }, spec: { podCIDRs: ["fd00:0:0:0::/64", "10.244.1.0/24"] } });
    expect(typed.podCIDRs).toEqual(["fd00::/64", "10.244.1.0/24"]);
    expect(typed.createdAt).toBe(5);

    const l = leaseView({
      metadata: {
        name: "twill-10-244-1-0-24",
        resourceVersion: "7",
        labels: { "app.kubernetes.io/managed-by": "twilld" },
        annotations: { "twill.dev/subnet": "10.244.1.0/24" },
      },
      spec: { holderIdentity: "a", leaseDurationSeconds: 30, renewTime: "2026-01-01T00:00:01.250000Z", leaseTransitions: 2 },
    });
    expect(l).toEqual({
      name: "twill-10-244-1-0-24",
      subnet: "10.244.1.0/24",
      managed: true,
      holder: "a",
      durationSeconds: 30,
      renewTime: Date.parse("2026-01-01T00:00:01.250Z"),
      transitions: 2,
      resourceVersion: "7",
    });
  });
});

describe("claimDecision", () => {
  it("renews its own Lease, takes over a lapsed one, leaves a live or foreign one", () => {
    expect(claimDecision(lease("10.0.0.0/24", "a"), "a", NOW)).toBe("ours");
    expect(claimDecision(lease("10.0.0.0/24", "a", NOW - 120_000), "a", NOW)).toBe("ours");
    expect(claimDecision(lease("10.0.0.0/24", "b"), "a", NOW)).toBe("taken");
    expect(claimDecision(lease("10.0.0.0/24", "b", NOW - 61_000), "a", NOW)).toBe("take-over");
    expect(claimDecision(lease("10.0.0.0/24", undefined), "a", NOW)).toBe("take-over");
    expect(claimDecision({ ...lease("10.0.0.0/24", "b", 0), managed: false }, "a", NOW)).toBe("taken");
  });
});

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

describe("a node switching backend", () => {
  const hostGw: BackendData = { type: "host-gw", underlayMTU: 1500 };
  const vxlan: BackendData = { type: "vxlan", vtepMAC: "02:00:00:00:00:01", vni: 1, port: 4789, underlayMTU: 1500 };

  it("publishes the new type and data in one patch", () => {
    const before = nodeAnnotations("192.0.2.1", hostGw, ["10.244.9.0/24"]) as Record<string, string>;
    expect(annotationChanges(before, nodeAnnotations("192.0.2.1", vxlan, ["10.244.9.0/24"]))).toEqual({
      [ANNOTATIONS.backendType]: "vxlan",
      [ANNOTATIONS.backendData]: JSON.stringify(vxlan),
    });
  });

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

describe("nextExpiry", () => {
  it("is the earliest lapse among live Leases", () => {
    expect(nextExpiry([lease("10.0.1.0/24", "a", NOW, 10), lease("10.0.2.0/24", "b", NOW, 5), lease("10.0.3.0/24", "c", 0, 1)], NOW)).toBe(
      NOW + 5_000,
    );
    expect(nextExpiry([], NOW)).toBeUndefined();
  });
});

describe("annotationChanges", () => {
  it("patches only what differs, and removes what is null", () => {
    const wanted = nodeAnnotations("192.0.2.1", backend, null);
    const current = { [ANNOTATIONS.publicIP]: "192.0.2.1", [ANNOTATIONS.backendType]: "vxlan", [ANNOTATIONS.subnets]: "10.0.0.0/24" };
    expect(annotationChanges(current, wanted)).toEqual({
      [ANNOTATIONS.backendData]: JSON.stringify(backend),
      [ANNOTATIONS.subnets]: null,
    });
    const published = { ...current, [ANNOTATIONS.backendData]: JSON.stringify(backend) };
    delete (published as Record<string, string>)[ANNOTATIONS.subnets];
    expect(annotationChanges(published, wanted)).toEqual({});
  });
});

describe("subnetSource", () => {
  const v4 = parseNetworkConfig({ Network: "10.244.0.0/16" });
  const dual = parseNetworkConfig({ Network: "10.244.0.0/16", IPv6Network: "fd00:10:244::/56" });

  it("uses podCIDRs in cluster-CIDR order", () => {
    expect(subnetSource(node("a", { podCIDRs: ["fd00:10:244:1::/64", "10.244.1.0/24"] }), dual, 0)).toEqual({
      kind: "podCIDRs",
      subnets: ["10.244.1.0/24", "fd00:10:244:1::/64"],
    });
  });

  it("leases when no node has podCIDRs, and waits when others have", () => {
    expect(subnetSource(node("a"), v4, 0)).toEqual({ kind: "lease" });
    expect(() => subnetSource(node("a"), v4, 3)).toThrow(/waiting for kube-controller-manager/);
  });

  it("rejects podCIDRs that do not fit the network", () => {
    expect(() => subnetSource(node("a", { podCIDRs: ["10.99.1.0/24"] }), v4, 0)).toThrow(DatastoreError);
    expect(() => subnetSource(node("a", { podCIDRs: ["10.244.1.0/24"] }), dual, 0)).toThrow(/none inside cluster CIDR fd00:10:244::\/56/);
    expect(() => subnetSource(node("a", { podCIDRs: ["10.244.1.0/24", "fd00:99::/64"] }), v4, 0)).toThrow(/outside the cluster CIDRs/);
  });
});

describe("takenByOthers", () => {
  it("holds other nodes' podCIDRs and live Leases, not the node's own or lapsed ones", () => {
    const taken = takenByOthers(
      "a",
      [node("a", { podCIDRs: ["10.244.1.0/24"] }), node("b", { podCIDRs: ["10.244.2.0/24"] })],
      [lease("10.244.3.0/24", "a"), lease("10.244.4.0/24", "c"), lease("10.244.5.0/24", "d", 0)],
      NOW,
    );
    expect(taken.map(formatCidr)).toEqual(["10.244.2.0/24", "10.244.4.0/24"]);
  });
});

describe("nodeFingerprint", () => {
  it("changes with twill's annotations and podCIDRs, not with a status heartbeat or foreign annotations", () => {
    const raw = {
      metadata: { name: "a", annotations: { [ANNOTATIONS.publicIP]: "192.0.2.1" } },
      spec: { podCIDRs: ["10.244.1.0/24"] },
      status: { conditions: [{ type: "Ready", status: "True" }] },
    };
    const base = nodeFingerprint(nodeView(raw));
    expect(nodeFingerprint(nodeView({ ...raw, status: { conditions: [{ type: "Ready", status: "False" }] } }))).toBe(base);
    expect(nodeFingerprint(nodeView({ ...raw, metadata: { ...raw.metadata, annotations: { ...raw.metadata.annotations, other: "x" } } }))).toBe(base);
    expect(nodeFingerprint(nodeView({ ...raw, metadata: { name: "a", annotations: { [ANNOTATIONS.publicIP]: "192.0.2.2" } } }))).not.toBe(base);
    expect(nodeFingerprint(nodeView({ ...raw, spec: { podCIDRs: ["10.244.2.0/24"] } }))).not.toBe(base);
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

describe("decodeBackend", () => {
  const decode = (data: unknown, type = "vxlan") =>
    decodeBackend({ [ANNOTATIONS.backendType]: type, [ANNOTATIONS.backendData]: typeof data === "string" ? data : JSON.stringify(data) });

  it("hands out every field with its declared type, and nothing else", () => {
    const full = { type: "vxlan", vtepMAC: "02:00:00:00:00:01", vni: 16777215, port: 4789, underlayMTU: 9000, underlayIPs: ["192.0.2.1", "fe80::1"] };
    expect(decode({ ...full, extra: { deep: true } })).toEqual({ ok: true, backend: full });
    expect(decode({}, "host-gw")).toEqual({ ok: true, backend: { type: "host-gw" } });
    expect(decodeBackend({})).toBeNull();
  });

  it("refuses a field of the wrong type or out of range, naming it", () => {
    const cases: [unknown, RegExp][] = [
      [{ vtepMAC: 5 }, /field "vtepMAC" is 5, not a string/],
      [{ vni: 1.5 }, /field "vni" is 1\.5, not an integer/],
      [{ vni: 16777216 }, /field "vni"/],
      [{ vni: "1" }, /field "vni" is "1"/],
      [{ port: 0 }, /field "port" is 0/],
      [{ port: 65536 }, /field "port"/],
      [{ underlayMTU: 67 }, /field "underlayMTU" is 67/],
      [{ underlayMTU: null }, /field "underlayMTU" is null/],
      [{ underlayIPs: "192.0.2.1" }, /field "underlayIPs" is "192\.0\.2\.1", not a list of strings/],
      [{ underlayIPs: ["192.0.2.1", 7] }, /field "underlayIPs"/],
      [{ type: 3 }, /field "type" is 3, not a backend name/],
      [{ type: "" }, /field "type"/],
      [[1, 2], /is not a JSON object/],
      ["null", /is not a JSON object/],
      ["{", /is not JSON/],
    ];
    for (const [data, reason] of cases) {
      const got = decode(data);
      expect(got?.ok, JSON.stringify(data)).toBe(false);
      expect(got && !got.ok ? got.reason : "", JSON.stringify(data)).toMatch(reason);
    }
  });

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
  it("copies the node's own old Leases, unless it already holds the subnet in twill's namespace", () => {
    const legacy = [lease("10.244.1.0/24", "a"), lease("10.244.2.0/24", "a", 0), lease("10.244.3.0/24", "a")];
    const current = [lease("10.244.3.0/24", "a")];
    // The lapsed one too: a node keeps its lapsed Lease as long as nobody took it over.
    expect(legacyPlan("a", legacy, current).copy.map((l) => l.subnet)).toEqual(["10.244.1.0/24", "10.244.2.0/24"]);
    expect(legacyPlan("a", legacy, current).taken).toEqual([]);
  });

  it("takes every other node's old Lease, live or lapsed, and an unreadable one by its name; ignores foreign Leases", () => {
    const unreadable = leaseView({
      metadata: { name: "twill-10-244-7-0-24", labels: { "app.kubernetes.io/managed-by": "twilld" }, annotations: {} },
      spec: { holderIdentity: "a", leaseDurationSeconds: 60, renewTime: new Date(NOW) },
    });
    const legacy = [
      lease("10.244.4.0/24", "b"),
      lease("10.244.5.0/24", "c", 0),
      lease("10.244.6.0/24", undefined),
      unreadable,
      { ...lease("10.244.8.0/24", "b"), managed: false },
    ];
    const plan = legacyPlan("a", legacy, []);
    expect(plan.copy).toEqual([]);
    expect(plan.taken.map(formatCidr)).toEqual(["10.244.4.0/24", "10.244.5.0/24", "10.244.6.0/24", "10.244.7.0/24"]);
  });

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
