import { describe, expect, it } from "vitest";
import { hostVethName } from "../../plugins/twill/names.js";
import { vethProbe, type LinkViews } from "./sandbox.js";

const views = (sysfs: Record<string, number>, own: { name: string; index?: number }[]): LinkViews => ({
  sysfs: () => Object.keys(sysfs),
  sysfsIndex: (name) => sysfs[name],
  own: () => own,
});
const live = { containerID: "sandbox-live", ifname: "eth0", plugin: "twill" };
const dead = { containerID: "sandbox-dead", ifname: "eth0", plugin: "twill" };

describe("the sandbox's veth as the sign it is up", () => {
  const sysfs = { lo: 1, eth0: 2, cni0: 3, [hostVethName(live.containerID, live.ifname)]: 7 };

  it("up when the twill veth of the attachment is on the node; gone when not, for twill's attachments only", () => {
    const probe = vethProbe(views(sysfs, [{ name: "lo" }, { name: "eth0", index: 2 }, { name: "cni0" }]));
    expect(probe(live)).toBe("up");
    expect(probe(dead)).toBe("gone");
    expect(probe({ ...dead, plugin: "bridge" })).toBe("unknown");
    const { plugin: _p, ...unrecorded } = dead;
    expect(probe(unrecorded)).toBe("unknown");
    expect(probe({ containerID: "", ifname: "" })).toBe("unknown");
  });

  it("knows nothing when /sys/class/net is not this process's network namespace, or cannot be read", () => {
    // Another namespace's sysfs: an interface of ours is missing, or has another index.
    expect(vethProbe(views(sysfs, [{ name: "lo" }, { name: "ens5" }]))(dead)).toBe("unknown");
    expect(vethProbe(views(sysfs, [{ name: "lo" }, { name: "eth0", index: 9 }]))(dead)).toBe("unknown");
    // Only lo: every namespace has one.
    expect(vethProbe(views(sysfs, [{ name: "lo" }]))(dead)).toBe("unknown");
    const unreadable: LinkViews = { ...views(sysfs, [{ name: "eth0" }]), sysfs: () => { throw new Error("EACCES"); } };
    expect(vethProbe(unreadable)(live)).toBe("unknown");
  });
});
