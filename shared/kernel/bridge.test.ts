import { describe, expect, it } from "vitest";
import { bridgeMismatch } from "./bridge.js";
import type { Link } from "./types.js";
import { stepLine } from "../../testkit/steps.js";

describe("bridge and veth", () => {
  const spec = { name: "cni0", mac: "02:00:00:00:00:01", mtu: 1400 };
  const link = (kind: string, extra: Partial<Link> = {}): Link => ({ index: 2, name: "cni0", up: true, lowerUp: true, mtu: 1400, kind, ...extra });

  it("says why a link cannot serve as the bridge", () => {
    expect(bridgeMismatch(link("bridge"), spec)).toBeNull();
    expect(bridgeMismatch(null, spec)).toBe('bridge "cni0" does not exist');
    expect(bridgeMismatch(link("veth"), spec)).toBe('"cni0" is a veth, not a bridge');
    expect(bridgeMismatch(link("bridge", { up: false }), spec)).toBe('bridge "cni0" is down');
    expect(bridgeMismatch(link("bridge", { mtu: 1500 }), spec)).toBe('bridge "cni0" has MTU 1500, want 1400');
  });

  it("creates the pod end straight in its namespace, the kernel picking its MAC unless given", () => {
    const line = stepLine({ op: "add-veth", veth: { name: "vethx", mac: "02:00:00:00:00:02", master: "cni0", peer: { name: "eth0", netns: "/proc/7/ns/net" } } });
    expect(line.join(" ")).toBe("link add name vethx address 02:00:00:00:00:02 master cni0 up type veth peer name eth0 netns /proc/7/ns/net");
    expect(stepLine({ op: "hairpin", dev: "vethx" }).join(" ")).toBe("link set dev vethx type bridge_slave hairpin on");
  });
});
