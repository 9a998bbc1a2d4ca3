import { describe, expect, it } from "vitest";
import { masqueradeRuleset } from "./masq.js";

describe("masqueradeRuleset", () => {
  it("masquerades pod traffic leaving the cluster network, per family, and nothing else", () => {
    const text = masqueradeRuleset(["10.244.0.0/16", "fd00:10:244::/48"]);
    expect(text).toContain("type nat hook postrouting priority srcnat; policy accept;");
    expect(text).toContain("ip saddr 10.244.0.0/16 ip daddr != { 10.244.0.0/16, 224.0.0.0/4 } masquerade");
    expect(text).toContain("ip6 saddr fd00:10:244::/48 ip6 daddr != { fd00:10:244::/48, ff00::/8 } masquerade");
    expect(text.match(/masquerade/g)).toHaveLength(2);
  });
});
