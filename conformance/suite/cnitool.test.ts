import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { findNetworkConfig, libcniArgs } from "./cnitool.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync("/tmp/cnitool-test-");
  mkdirSync(join(dir, "net.d"));
  const put = (name: string, text: string) => writeFileSync(join(dir, "net.d", name), text);
  put("10-a.conf", JSON.stringify({ name: "podnet", type: "bridge" }));
  put("20-b.conflist", JSON.stringify({ name: "podnet", plugins: [] }));
  put("30-c.json", "{ not json");
  put("40-d.conf", JSON.stringify({ name: "other", type: "ptp" }));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("cnitool", () => {
  it("finds a network by name, .conflist files before .conf, skipping files that do not parse", () => {
    expect(findNetworkConfig(join(dir, "net.d"), "podnet")).toBe(join(dir, "net.d", "20-b.conflist"));
    expect(findNetworkConfig(join(dir, "net.d"), "other")).toBe(join(dir, "net.d", "40-d.conf"));
    expect(() => findNetworkConfig(join(dir, "net.d"), "none")).toThrow(/no net configuration with name "none"/);
  });

  it("maps cnitool's command line onto twill-libcni's", () => {
    const env = { NETCONFPATH: join(dir, "net.d"), CNI_CACHE_DIR: "/tmp/cache" };
    const conflist = join(dir, "net.d", "20-b.conflist");
    expect(libcniArgs(["add", "podnet", "/var/run/netns/p"], env)).toEqual(["add", "/var/run/netns/p", "--conflist", conflist, "--cache-dir", "/tmp/cache"]);
    expect(libcniArgs(["gc", "podnet"], { ...env, CNI_CACHE_DIR: undefined })).toEqual(["gc", "--conflist", conflist, "--valid-attachments", "[]"]);
    expect(libcniArgs(["status", "other"], env)).toEqual(["status", "--conflist", join(dir, "net.d", "40-d.conf"), "--cache-dir", "/tmp/cache"]);
  });

  it("refuses a command line cnitool would refuse", () => {
    const env = { NETCONFPATH: join(dir, "net.d") };
    expect(() => libcniArgs(["add", "podnet"], env)).toThrow(/usage/);
    expect(() => libcniArgs(["status", "podnet", "/x"], env)).toThrow(/usage/);
    expect(() => libcniArgs(["frob", "podnet"], env)).toThrow(/usage/);
  });
});
