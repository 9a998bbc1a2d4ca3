import { Address4, Address6 } from "ip-address";
import { describe, expect, it } from "vitest";
import {
  contains, covers, formatAddress, formatCidr, formatIp, isLinkLocal6, lastAddress, overlaps, parseCidr, parseCidrOrNull, parseIp,
  parseIpOrNull, size,
} from "./cidr.js";

describe("parseIpOrNull and parseCidrOrNull", () => {
  it("give what parseIp and parseCidr give, and null where those throw", () => {
    expect(parseIpOrNull("10.0.0.1")).toEqual(parseIp("10.0.0.1"));
    expect(parseCidrOrNull("fd00::/64")).toEqual(parseCidr("fd00::/64"));
    for (const bad of ["10.0.0.01", "h", "", 5, null, undefined, "10.0.0.0/33"]) {
      expect(parseIpOrNull(bad)).toBeNull();
      expect(parseCidrOrNull(bad)).toBeNull();
    }
  });
});

describe("cidr", () => {
  it("parses IPv4 and clears host bits in the network", () => {
    const c = parseCidr("10.244.1.7/24");
    expect(formatCidr(c)).toBe("10.244.1.0/24");
    expect(formatAddress(c)).toBe("10.244.1.7/24");
    expect(formatIp(4, lastAddress(c))).toBe("10.244.1.255");
    expect(size(c)).toBe(256n);
  });

  it("parses IPv6 in canonical form", () => {
    const c = parseCidr("FD00:10:0:0::5/64");
    expect(formatCidr(c)).toBe("fd00:10::/64");
    expect(formatIp(6, lastAddress(c))).toBe("fd00:10::ffff:ffff:ffff:ffff");
  });

  it("handles the edges of both families", () => {
    expect(formatCidr(parseCidr("0.0.0.0/0"))).toBe("0.0.0.0/0");
    expect(formatIp(4, lastAddress(parseCidr("255.255.255.255/32")))).toBe("255.255.255.255");
    expect(formatCidr(parseCidr("::/0"))).toBe("::/0");
    expect(size(parseCidr("::/0"))).toBe(1n << 128n);
  });

  it.each(["10.0.0.0", "10.0.0.0/33", "10.0.0.300/24", "fd00::/129", "abc/8", "", "10.0.0.0/-1"])(
    "rejects %j", (text) => {
      expect(() => parseCidr(text)).toThrow(/invalid CIDR/);
    });

  it("rejects bad addresses", () => {
    expect(() => parseIp("10.0.0.0/8")).toThrow(/invalid IP/);
    expect(() => parseIp("1.2.3")).toThrow(/invalid IP/);
  });

  it("tests membership within a family only", () => {
    const c = parseCidr("10.0.0.0/8");
    expect(contains(c, parseIp("10.255.255.255"))).toBe(true);
    expect(contains(c, parseIp("11.0.0.0"))).toBe(false);
    expect(contains(c, parseIp("::a00:1"))).toBe(false);
    expect(covers(c, parseCidr("10.1.0.0/16"))).toBe(true);
    expect(covers(parseCidr("10.1.0.0/16"), c)).toBe(false);
    expect(overlaps(parseCidr("10.1.0.0/16"), c)).toBe(true);
    expect(overlaps(parseCidr("10.1.0.0/16"), parseCidr("10.2.0.0/16"))).toBe(false);
  });
});

describe("parsing and text forms against ip-address", () => {
  // ip-address is the reference implementation; twill's own code avoids its load time.

  it("agrees on random and edge IPv6 values", () => {
    const edges = [0n, 1n, (1n << 128n) - 1n, 0xffffn << 32n, 1n << 112n, 0x20010db8000000000001000000000001n];
    let x = 0x9e3779b97f4a7c15n;
    const values = [...edges];
    for (let i = 0; i < 2000; i++) {
      x = (x * 6364136223846793005n + 1442695040888963407n) & ((1n << 128n) - 1n);
      // Zero out random groups so "::" placement is exercised.
      let v = x;
      for (let g = 0; g < 8; g++) if ((x >> BigInt(g * 7)) & 1n) v &= ~(0xffffn << BigInt(16 * g));
      values.push(v);
    }
    for (const v of values) {
      const text = formatIp(6, v);
      expect(text).toBe(Address6.fromBigInt(v).correctForm());
      expect(parseIp(text).value).toBe(v);
      expect(parseIp(new Address6(text).canonicalForm()).value).toBe(v);
    }
  });

  it("agrees on IPv4 values", () => {
    for (const v of [0n, 1n, 0xffffffffn, 0x0a000001n, 0xc0a80101n, 0x7f000001n]) {
      expect(formatIp(4, v)).toBe(Address4.fromBigInt(v).address);
      expect(parseIp(formatIp(4, v)).value).toBe(v);
    }
  });

  it.each(["::ffff:10.1.2.3", "64:ff9b::192.0.2.33", "::", "1::", "::1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4"])(
    "reads %s as ip-address does", (text) => {
      expect(parseIp(text).value).toBe(new Address6(text).bigInt());
    });

  it.each(["1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "1:2:3:4:5:6:7", ":1:2:3:4:5:6:7", "1.2.3.4::", "g::1", "fe80::1%eth0", "010.0.0.1", "1.2.3.256", "1.2.3.-1"])(
    "rejects %s", (text) => {
      expect(() => parseIp(text)).toThrow(/invalid IP/);
    });
});

describe("isLinkLocal6", () => {
  it("is fe80::/10 and nothing beside it", () => {
    const linkLocal = (text: string) => isLinkLocal6(parseIp(text));
    expect(["fe80::1", "febf:ffff::1", "fe80::"].map(linkLocal)).toEqual([true, true, true]);
    expect(["fe7f::1", "fec0::1", "::1", "10.0.0.1"].map(linkLocal)).toEqual([false, false, false, false]);
  });
});
