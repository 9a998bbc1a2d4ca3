import { describe, expect, it } from "vitest";
import { sysctlPath } from "./sysctl.js";

describe("sysctl paths", () => {
  it("maps dotted keys, and takes path keys as they are (interface names may hold dots)", () => {
    expect(sysctlPath("net.ipv4.ip_forward")).toBe("/proc/sys/net/ipv4/ip_forward");
    expect(sysctlPath("net/ipv4/conf/eth0.10/forwarding")).toBe("/proc/sys/net/ipv4/conf/eth0.10/forwarding");
  });
});
