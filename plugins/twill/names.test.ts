import { describe, expect, it } from "vitest";
import { bridgeMac, digest, hostVethMac, hostVethName, podMac, seededMac } from "./names.js";

const UNICAST_LOCAL = (mac: string) => (parseInt(mac.slice(0, 2), 16) & 3) === 2;

describe("derived names", () => {
  it("host veth: veth + 11 hex, 15 characters, stable, distinct per container and ifname", () => {
    const a = hostVethName("abc", "eth0");
    expect(a).toMatch(/^veth[0-9a-f]{11}$/);
    expect(a).toHaveLength(15);
    expect(hostVethName("abc", "eth0")).toBe(a);
    expect(hostVethName("abc", "eth1")).not.toBe(a);
    expect(hostVethName("abd", "eth0")).not.toBe(a);
    // The separator keeps ("ab", "ceth0") apart from ("abc", "eth0").
    expect(hostVethName("ab", "ceth0")).not.toBe(a);
  });

  it("seeded MACs are locally administered unicast and stable", () => {
    for (const m of [seededMac("x"), bridgeMac("cni0"), hostVethMac("c", "eth0")]) {
      expect(m).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      expect(UNICAST_LOCAL(m)).toBe(true);
    }
    expect(bridgeMac("cni0")).toBe(bridgeMac("cni0"));
    expect(bridgeMac("cni0")).not.toBe(bridgeMac("cni1"));
  });

  it("pod MAC follows the IPv4 address, so a reused IP keeps its MAC", () => {
    expect(podMac(["10.1.2.3/24"], "c1", "eth0")).toBe("0a:58:0a:01:02:03");
    expect(podMac(["fd00::5/64", "10.1.2.3/24"], "c2", "eth0")).toBe("0a:58:0a:01:02:03");
  });

  it("pod MAC without IPv4 is seeded by the attachment", () => {
    const m = podMac(["fd00::5/64"], "c1", "eth0");
    expect(UNICAST_LOCAL(m)).toBe(true);
    expect(m).not.toBe(podMac(["fd00::5/64"], "c2", "eth0"));
  });
});

describe("digest", () => {
  it("spreads near-identical seeds over the high bits names use", () => {
    const names = new Set(Array.from({ length: 20000 }, (_, i) => hostVethName(`container-${i}`, "eth0")));
    expect(names.size).toBe(20000);
    expect(digest("a")).not.toEqual(digest("b"));
    expect(digest("a")[0]! ^ digest("b")[0]!).not.toBe(0);
  });
});
