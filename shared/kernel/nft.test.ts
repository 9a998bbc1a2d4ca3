import { describe, expect, it } from "vitest";
import { masqScript, masqTableName } from "./nft.js";

describe("masqScript", () => {
  const script = masqScript({ network: "pods", sources: ["10.1.0.5/24"], keep: ["10.1.0.0/16"] });

  it("one table per network, rules replaced as a whole, so a re-run never duplicates", () => {
    expect(masqTableName("1net")).toBe("twill-masq-1net");
    const lines = script.trim().split("\n");
    expect(lines.filter((l) => l.startsWith("add rule"))).toHaveLength(2);
    expect(lines.indexOf("flush chain inet twill-masq-pods postrouting")).toBeLessThan(lines.findIndex((l) => l.startsWith("add rule")));
  });

  it("masquerades the pod subnet except towards the pods, the cluster and multicast", () => {
    expect(script).toContain("add element inet twill-masq-pods pods4 { 10.1.0.0/24 }");
    expect(script).toContain("add element inet twill-masq-pods keep4 { 10.1.0.0/24, 10.1.0.0/16, 224.0.0.0/4 }");
    expect(script).not.toContain("add element inet twill-masq-pods pods6");
  });

  it("handles IPv6 sources", () => {
    const s = masqScript({ network: "n", sources: ["fd00:1::5/64"], keep: [] });
    expect(s).toContain("add element inet twill-masq-n pods6 { fd00:1::/64 }");
    expect(s).toContain("keep6 { fd00:1::/64, ff00::/8 }");
  });
});
