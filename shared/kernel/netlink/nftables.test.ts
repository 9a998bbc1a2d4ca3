import { describe, expect, it } from "vitest";
import { intervalsOf, ruleComment, type SetElement } from "./nftables.js";

const v4 = (text: string): bigint => text.split(".").reduce((v, p) => (v << 8n) | BigInt(p), 0n);
const el = (text: string, end: boolean): SetElement => ({ key: v4(text), end, bytes: 4 });

describe("nftables over netlink", () => {
  it("pairs an interval set's start and end elements into inclusive intervals, in any order", () => {
    // As the kernel dumps `{ 10.1.0.0/24, 10.244.0.0/16, 224.0.0.0/4 }` (nft --debug=netlink).
    const elements = [
      el("240.0.0.0", true), el("224.0.0.0", false), el("10.245.0.0", true), el("10.244.0.0", false),
      el("10.1.1.0", true), el("10.1.0.0", false), el("0.0.0.0", true),
    ];
    expect(intervalsOf(elements)).toEqual([
      [v4("10.1.0.0"), v4("10.1.0.255")],
      [v4("10.244.0.0"), v4("10.244.255.255")],
      [v4("224.0.0.0"), v4("239.255.255.255")],
    ]);
  });

  it("an interval reaching the top of the address space has no end element", () => {
    expect(intervalsOf([el("0.0.0.0", true), el("240.0.0.0", false)])).toEqual([[v4("240.0.0.0"), v4("255.255.255.255")]]);
    expect(intervalsOf([])).toEqual([]);
  });

  it("reads a rule's comment from nft's userdata", () => {
    const udata = Uint8Array.from([0, 14, ...new TextEncoder().encode("twill-masq-v1"), 0]);
    expect(ruleComment(udata)).toBe("twill-masq-v1");
    expect(ruleComment(Uint8Array.from([5, 1, 9]))).toBeNull();
    expect(ruleComment(undefined)).toBeNull();
  });
});
