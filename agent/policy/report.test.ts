import { describe, expect, it } from "vitest";
import { renderPolicyReport } from "./report.js";

describe("twilld status: NetworkPolicy", () => {
  it("says why nothing is enforced", () => {
    expect(renderPolicyReport({ enabled: false, reason: "the etcd datastore has no API to read NetworkPolicies from", policies: [], drops: [] }, 0)).toEqual([
      "NetworkPolicy: not enforced: the etcd datastore has no API to read NetworkPolicies from",
    ]);
  });

  it("lists the policies selecting local pods and the pods that dropped packets", () => {
    const lines = renderPolicyReport(
      {
        enabled: true,
        appliedAt: 1_000,
        policies: [
          { policy: "default/deny-all", types: ["ingress", "egress"], pods: ["default/a", "default/b"] },
          { policy: "shop/web", types: ["ingress"], pods: ["shop/web-1"] },
        ],
        drops: [
          { pod: "default/a", ingress: 3, egress: 0 },
          { pod: "default/b", ingress: 0, egress: 0 },
        ],
        ruleset: { rules: 20, elements: 7, bytes: 900, compileMs: 1, applyMs: 9 },
        error: "nft said no",
      },
      6_000,
    );
    expect(lines).toEqual([
      "NetworkPolicy: enforced (applied 5s ago, 20 rules, 7 set elements)",
      "Warning:      the last policy apply failed: nft said no",
      "Policies selecting this node's pods (2):",
      "POLICY            TYPES           PODS",
      "default/deny-all  ingress,egress  default/a,default/b",
      "shop/web          ingress         shop/web-1",
      "Dropped:      default/a: 3 in, 0 out",
    ]);
  });

  it("names each policy that could not be compiled, why, and the pods it denies", () => {
    const lines = renderPolicyReport(
      {
        enabled: true,
        policies: [{ policy: "shop/odd", types: ["egress"], pods: ["shop/a"] }],
        refused: [{ policy: "shop/odd", reason: 'egress[0]: invalid CIDR "10.0.0.0/8x"', pods: ["shop/a"] }],
        drops: [],
      },
      0,
    );
    expect(lines).toContain('Refused:      shop/odd: egress[0]: invalid CIDR "10.0.0.0/8x"; enforced as allowing nothing for shop/a');
  });
});
