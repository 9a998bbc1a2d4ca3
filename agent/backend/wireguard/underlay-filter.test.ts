import { describe, expect, it } from "vitest";
import { KernelError } from "../../../shared/kernel/types.js";
import { ensureUnderlayFilter, underlayFilterRuleset } from "./underlay-filter.js";

describe("the underlay filter", () => {
  it("drops pod destinations of both families arriving on the underlay device, after translated connections", () => {
    const text = underlayFilterRuleset("eth0", ["10.244.0.0/16", "fd00:10:244::/56"]);
    const rules = text.split("\n").filter((l) => l.startsWith("    iifname"));
    expect(rules).toEqual([
      '    iifname "eth0" ct status snat accept',
      '    iifname "eth0" ct status dnat accept',
      '    iifname "eth0" ip daddr 10.244.0.0/16 counter name underlay_to_pods drop',
      '    iifname "eth0" ip6 daddr fd00:10:244::/56 counter name underlay_to_pods drop',
    ]);
  });

  it("lets the hosts the operator names in, by family, before the drops", () => {
    const text = underlayFilterRuleset("eth0", ["10.244.0.0/16", "fd00:10:244::/56"], ["192.168.90.2/32", "fd00:90::2/128", "198.51.100.0/24"]);
    const rules = text.split("\n").filter((l) => l.startsWith("    iifname"));
    expect(rules.slice(2, 4)).toEqual([
      '    iifname "eth0" ip saddr { 192.168.90.2/32, 198.51.100.0/24 } counter name allowed_unencrypted accept',
      '    iifname "eth0" ip6 saddr { fd00:90::2/128 } counter name allowed_unencrypted accept',
    ]);
    expect(rules[4]).toContain("drop");
    expect(underlayFilterRuleset("eth0", ["10.244.0.0/16"])).not.toContain("saddr");
  });

  it("installs the table when missing or changed, and leaves it when only its counter moved", async () => {
    let table: string | null = null;
    const scripts: string[] = [];
    const ip = {
      nft: async (args: readonly string[], op: string, input?: string) => {
        if (args[0] === "-f") {
          scripts.push(input!);
          table = "table inet twill-wg {\n\tcounter underlay_to_pods {\n\t\tpackets 0 bytes 0\n\t}\n}\n";
          return "";
        }
        if (table === null) throw new KernelError(op, "No such file or directory", { errno: 2 });
        return table;
      },
    };
    const ruleset = underlayFilterRuleset("eth0", ["10.244.0.0/16"]);
    const first = await ensureUnderlayFilter(ip, ruleset, null);
    expect(first.changed).toBe(true);
    expect(scripts[0]).toBe(`table inet twill-wg {}\ndelete table inet twill-wg\n${ruleset}`);
    table = table!.replace("packets 0 bytes 0", "packets 7 bytes 588");
    expect(await ensureUnderlayFilter(ip, ruleset, first.listing)).toEqual({ listing: first.listing, changed: false });
    table = "table inet twill-wg {\n}\n";
    expect((await ensureUnderlayFilter(ip, ruleset, first.listing)).changed).toBe(true);
    expect(scripts).toHaveLength(2);
  });
});
