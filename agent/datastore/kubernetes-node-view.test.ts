import { describe, expect, it } from "vitest";
import { parseNetworkConfig } from "../config.js";
import { DatastoreError } from "../errors.js";
import type { BackendData } from "../types.js";
import { ANNOTATIONS, annotationChanges, decodeBackend, nodeAnnotations, nodeFingerprint, nodeView, subnetSource } from "./kubernetes-node-view.js";
import { backend, node } from "../../testkit/kube/views.js";

describe("nodeView", () => {
  it("reads typed objects and wire JSON alike", () => {
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

describe("decodeBackend", () => {
  const decode = (data: unknown, type = "vxlan") =>
    decodeBackend({ [ANNOTATIONS.backendType]: type, [ANNOTATIONS.backendData]: typeof data === "string" ? data : JSON.stringify(data) });

  it("hands out every field with its declared type, and nothing else", () => {
    const full = { type: "vxlan", vtepMAC: "02:00:00:00:00:01", vni: 16777215, port: 4789, underlayMTU: 9000, underlayIPs: ["192.0.2.1", "fe80::1"] };
    expect(decode({ ...full, extra: { deep: true } })).toEqual({ ok: true, backend: full });
    expect(decode({}, "host-gw")).toEqual({ ok: true, backend: { type: "host-gw" } });
    expect(decode({ type: "bgp", as: 4294967295 }, "bgp")).toEqual({ ok: true, backend: { type: "bgp", as: 4294967295 } });
    const wg = { type: "wireguard", wgPublicKey: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", wgPort: 51820 };
    expect(decode(wg, "wireguard")).toEqual({ ok: true, backend: wg });
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
      [{ as: 0 }, /field "as" is 0, not an AS number/],
      [{ as: "65001" }, /field "as" is "65001"/],
      [{ wgPort: 0 }, /field "wgPort" is 0/],
      [{ wgPublicKey: 5 }, /field "wgPublicKey" is 5, not a string/],
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

});
