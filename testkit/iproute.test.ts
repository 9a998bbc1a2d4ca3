import { describe, expect, it } from "vitest";
import { parseNftCounters } from "./iproute.js";

describe("parseNftCounters", () => {
  it("reads named counters from nft's JSON", () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: "1.0.6" } },
        { counter: { family: "inet", name: "drop_0_in", table: "twill-policy", handle: 4, packets: 7, bytes: 420 } },
        { counter: { family: "inet", name: "drop_0_eg", table: "twill-policy", handle: 5, packets: 0, bytes: 0 } },
      ],
    });
    expect([...parseNftCounters(json)]).toEqual([["drop_0_in", 7], ["drop_0_eg", 0]]);
  });
});
