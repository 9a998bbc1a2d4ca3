import { describe, expect, it } from "vitest";
import { formatCidr } from "../../shared/net/cidr.js";
import { ipBlockIntervals, parseCidrSloppy, readPodIp } from "./addresses.js";

// k8s.io/utils/net ParseCIDRSloppy is Go's net.ParseCIDR of Go 1.16 (kubernetes#100895): the
// cases below are those of its forked ip_test.go and what ValidateIPBlock lets through.
describe("ipBlock CIDRs as the apiserver reads them", () => {
  it.each([
    ["010.0.0.0/8", "10.0.0.0/8"],
    ["127.001.002.003/32", "127.1.2.3/32"],
    ["127.010.020.030/32", "127.10.20.30/32"],
    ["0010.0.0.0/08", "10.0.0.0/8"],
    ["10.1.2.3/8", "10.0.0.0/8"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["fd00:0000:00000::/064", "fd00::/64"],
    ["FD00::1/128", "fd00::1/128"],
    ["0:0:0:0:000000:ffff:127.1.2.3/128", "127.1.2.3/32"],
    ["::ffff:010.0.0.0/104", "10.0.0.0/8"],
    ["::ffff:0:0/80", "::/80"],
    ["2001:db8::1/32", "2001:db8::/32"],
  ])("reads %j as %s", (text, want) => {
    expect(formatCidr(parseCidrSloppy(text))).toBe(want);
  });

  it.each(["10.0.0.256/8", "10.0.0.0/33", "10.0.0/8", "10.0.0.0", "10.0.0.0/8x", "10.0.0.0/-1", " 10.0.0.0/8", "fe80::1%eth0/64", "12345::/16", "fd00::/129", ":::1/128", "1.2.3.4.5/32", ""])(
    "refuses %j",
    (text) => {
      expect(() => parseCidrSloppy(text)).toThrow(/invalid CIDR/);
    },
  );

  it("cuts sloppy except blocks out of a sloppy block", () => {
    expect(ipBlockIntervals("010.0.0.0/8", ["010.000.000.000/9"]).intervals).toEqual([[0x0a800000n, 0x0affffffn]]);
  });

  it("reads pod addresses as the apiserver does, rewriting only what the strict parser refuses", () => {
    expect(readPodIp("010.000.000.005")).toBe("10.0.0.5");
    expect(readPodIp("fd00:0::00005")).toBe("fd00:0::5");
    expect(readPodIp("fd00::5")).toBe("fd00::5");
    expect(readPodIp("10.0.0.5 ")).toBeUndefined();
    expect(readPodIp('10.0.0.5" ; flush')).toBeUndefined();
    expect(readPodIp("nope")).toBeUndefined();
  });
});
