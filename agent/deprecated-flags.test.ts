import { describe, expect, it } from "vitest";
import { createLogger } from "../shared/log.js";
import { warnDeprecatedFlags } from "./deprecated-flags.js";

describe("deprecated flags", () => {
  const logged = (a: Parameters<typeof warnDeprecatedFlags>[0]) => {
    const lines: { level: string; msg: string; [k: string]: unknown }[] = [];
    warnDeprecatedFlags(a, createLogger((l) => lines.push(JSON.parse(l))));
    return lines;
  };

  it("says that --ipam-dir is not read, and which data dir is used instead", () => {
    expect(logged({ "ipam-dir": "/srv/cni", "ipam-store": "/var/lib/cni/networks/twill" })).toEqual([
      expect.objectContaining({ level: "warn", msg: expect.stringMatching(/^--ipam-dir is deprecated/), ipamDir: "/srv/cni", dataDir: "/var/lib/cni/networks" }),
    ]);
  });

  it("says nothing when no deprecated flag is given", () => {
    expect(logged({ "ipam-store": "/var/lib/cni/networks/twill" })).toEqual([]);
  });
});
