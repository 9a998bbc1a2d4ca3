import { describe, expect, it } from "vitest";
import { formatCidr } from "../../shared/net/cidr.js";
import { claimDecision, leaseName, leaseView, legacyPlan, takenByOthers } from "./kubernetes-lease-view.js";
import { NOW, lease, node } from "../../testkit/kube/views.js";

describe("leaseName", () => {
  it("names a Lease after its subnet, for both families, as a DNS subdomain", () => {
    expect(leaseName("10.244.3.0/24")).toBe("twill-10-244-3-0-24");
    expect(leaseName("fd00:10:244::/64")).toBe("twill-fd00-10-244---64");
    // Canonical: the same subnet written differently is the same Lease.
    expect(leaseName("fd00:10:244:0::/64")).toBe(leaseName("fd00:10:244::/64"));
    for (const n of [leaseName("10.0.0.0/8"), leaseName("fd00::/48")]) expect(n).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
  });
});

describe("leaseView", () => {
  it("reads wire JSON", () => {
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

});
