import { describe, expect, it } from "vitest";
import { masqScript, masqTableName, parseMasqTable, wantedElements } from "./nft.js";

const spec = { network: "pods", sources: ["10.1.0.5/24"], keep: ["10.1.0.0/16"] };

// `nft list table` output as nftables 1.0.6 prints it.
const listing = (pods4: string, keep4: string, rules = 2) => `table inet twill-masq-pods {
	set pods4 {
		type ipv4_addr
		flags interval
		auto-merge
		elements = { ${pods4} }
	}

	set keep4 {
		type ipv4_addr
		flags interval
		auto-merge
		elements = { ${keep4} }
	}

	set pods6 {
		type ipv6_addr
		flags interval
		auto-merge
	}

	set keep6 {
		type ipv6_addr
		flags interval
		auto-merge
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
${[
  '\t\tip saddr @pods4 ip daddr != @keep4 masquerade comment "twill-masq-v1"',
  '\t\tip6 saddr @pods6 ip6 daddr != @keep6 masquerade comment "twill-masq-v1"',
  '\t\tip saddr @pods4 ip daddr != @keep4 masquerade comment "twill-masq-v1"',
]
  .slice(0, rules)
  .join("\n")}
	}
}
`;

describe("masquerade table", () => {
  it("one table per network; nft identifiers start with a letter", () => {
    expect(masqTableName("1net")).toBe("twill-masq-1net");
  });

  it("masquerades the pod subnet except towards pods, cluster and multicast", () => {
    expect(wantedElements(spec)).toEqual({ pods4: ["10.1.0.0/24"], keep4: ["10.1.0.0/24", "10.1.0.0/16", "224.0.0.0/4"] });
    expect(wantedElements({ network: "n", sources: ["fd00:1::5/64"], keep: [] })).toEqual({ pods6: ["fd00:1::/64"], keep6: ["fd00:1::/64", "ff00::/8"] });
  });

  it("builds everything when the table is missing: rules replaced as a whole, elements added", () => {
    const script = masqScript(spec, null)!;
    const lines = script.trim().split("\n");
    expect(lines.filter((l) => l.startsWith("add rule"))).toHaveLength(2);
    expect(lines.indexOf("flush chain inet twill-masq-pods postrouting")).toBeLessThan(lines.findIndex((l) => l.startsWith("add rule")));
    expect(script).toContain("add element inet twill-masq-pods pods4 { 10.1.0.0/24 }");
    expect(script).toContain("add element inet twill-masq-pods keep4 { 10.1.0.0/24, 10.1.0.0/16, 224.0.0.0/4 }");
  });

  it("changes nothing when the table already serves the pod, merged ranges included", () => {
    expect(masqScript(spec, parseMasqTable(listing("10.1.0.0/24", "10.1.0.0/16, 224.0.0.0/4")))).toBeNull();
    expect(masqScript(spec, parseMasqTable(listing("10.0.255.0-10.1.0.255", "10.0.0.0/8, 224.0.0.0/4")))).toBeNull();
  });

  it("adds only the missing elements of a new subnet, keeping the rules", () => {
    const have = parseMasqTable(listing("10.2.0.0/24", "10.2.0.0/24, 224.0.0.0/4"));
    const script = masqScript(spec, have)!;
    expect(script).not.toContain("add rule");
    expect(script).not.toContain("flush");
    expect(script).toContain("add element inet twill-masq-pods pods4 { 10.1.0.0/24 }");
    expect(script).toContain("add element inet twill-masq-pods keep4 { 10.1.0.0/24, 10.1.0.0/16 }");
  });

  it("replaces the rules when one is missing or doubled", () => {
    for (const rules of [1, 3]) {
      const script = masqScript(spec, parseMasqTable(listing("10.1.0.0/24", "10.1.0.0/16, 224.0.0.0/4", rules)))!;
      expect(script).toContain("flush chain");
      expect(script).not.toContain("add element");
    }
  });
});
