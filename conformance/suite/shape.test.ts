import { describe, expect, it } from "vitest";
import { errorProblems, missingFromResult, namesVariable, parseSingleDocument, resultProblems } from "./shape.js";

describe("parseSingleDocument", () => {
  it("accepts one document with surrounding white space", () => {
    expect(parseSingleDocument('\n{"a":1}\n')).toEqual({ ok: true, doc: { a: 1 } });
  });
  it("rejects nothing, two documents, and a log line before the document", () => {
    expect(parseSingleDocument("")).toMatchObject({ ok: false, problem: "stdout is empty" });
    expect(parseSingleDocument('{"a":1}{"b":2}')).toMatchObject({ ok: false });
    expect(parseSingleDocument('level=info msg=hi\n{"a":1}')).toMatchObject({ ok: false, problem: expect.stringMatching(/not exactly one/) });
  });
});

describe("errorProblems", () => {
  it("accepts the spec's shape", () => {
    expect(errorProblems({ cniVersion: "1.1.0", code: 7, msg: "bad", details: "x" })).toEqual([]);
  });
  it("names each missing part", () => {
    expect(errorProblems({ code: 0, msg: "" })).toEqual(["error has no cniVersion", "error has code 0", "error has no msg"]);
    expect(errorProblems([])).toEqual(["error output is not a JSON object"]);
  });
});

describe("namesVariable", () => {
  it("accepts the variable's common spellings", () => {
    expect(namesVariable("invalid characters in containerID", "CNI_CONTAINERID")).toBe(true);
    expect(namesVariable("interface name is too long", "CNI_IFNAME")).toBe(true);
    expect(namesVariable("CNI_NETNS: required", "CNI_NETNS")).toBe(true);
    expect(namesVariable("something failed", "CNI_NETNS")).toBe(false);
  });
});

const iface = (sandbox?: string) => ({ name: "eth0", mac: "aa:bb:cc:dd:ee:ff", ...(sandbox ? { sandbox } : {}) });

describe("resultProblems", () => {
  it("wants ips[].version in 0.3.x and 0.4.0 results and none in 1.x", () => {
    const legacy = { cniVersion: "0.4.0", interfaces: [iface("/x")], ips: [{ version: "4", address: "10.0.0.2/24", interface: 0 }] };
    expect(resultProblems(legacy, "0.4.0")).toEqual([]);
    expect(resultProblems({ ...legacy, ips: [{ address: "10.0.0.2/24" }] }, "0.4.0")).toEqual([
      'ips[0].version is undefined, a 0.4.0 result needs "4"',
    ]);
    expect(resultProblems({ ...legacy, cniVersion: "1.0.0" }, "1.0.0")).toEqual(["ips[0].version is not part of a 1.0.0 result"]);
  });

  it("rejects 1.1.0 fields in older results and dangling interface indexes", () => {
    const r = { cniVersion: "1.0.0", interfaces: [{ ...iface(), mtu: 1450 }], ips: [{ address: "10.0.0.2/24", interface: 3 }], routes: [{ dst: "0.0.0.0/0", table: 100 }] };
    expect(resultProblems(r, "1.0.0")).toEqual([
      "interfaces[0].mtu is a 1.1.0 field in a 1.0.0 result",
      "ips[0].interface 3 indexes no interface",
      "routes[0].table is a 1.1.0 field in a 1.0.0 result",
    ]);
    expect(resultProblems({ ...r, cniVersion: "1.1.0", ips: [] }, "1.1.0")).toEqual([]);
  });

  it("checks the echoed version and the address form", () => {
    expect(resultProblems({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2" }] }, "1.1.0")).toEqual([
      'result cniVersion is "1.0.0", asked 1.1.0',
      "ips[0].address is not an address in CIDR form",
    ]);
  });
});

describe("missingFromResult", () => {
  const prev = {
    interfaces: [{ name: "net0", sandbox: "/ns" }],
    ips: [{ address: "192.0.2.10/24", interface: 0 }],
    routes: [{ dst: "198.51.100.0/24", gw: "192.0.2.1" }],
    dns: { nameservers: ["192.0.2.53"] },
  };
  it("finds nothing missing when the next result merged the previous one", () => {
    const next = {
      interfaces: [{ name: "eth0", sandbox: "/ns" }, ...prev.interfaces],
      ips: [{ address: "10.0.0.2/24", interface: 0 }, { address: "192.0.2.10/24", interface: 1 }],
      routes: [...prev.routes, { dst: "0.0.0.0/0" }],
      dns: prev.dns,
    };
    expect(missingFromResult(prev, next)).toEqual([]);
  });
  it("lists what a plugin dropped, and an address moved to another interface", () => {
    const next = { interfaces: [{ name: "eth0", sandbox: "/ns" }], ips: [{ address: "192.0.2.10/24", interface: 0 }] };
    expect(missingFromResult(prev, next)).toEqual([
      "interface net0",
      "address 192.0.2.10/24",
      "route 198.51.100.0/24 via 192.0.2.1",
      "nameserver 192.0.2.53",
    ]);
  });
});
