import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { checkListenAddress, parseListenAddress, startHttpServer } from "./http.js";

describe("parseListenAddress", () => {
  it("takes an IPv4 or bracketed IPv6 address with a port, the wildcard only when spelled out", () => {
    expect(parseListenAddress("127.0.0.1:9402")).toEqual({ host: "127.0.0.1", port: 9402 });
    expect(parseListenAddress("[::1]:9402")).toEqual({ host: "::1", port: 9402 });
    expect(parseListenAddress("192.168.1.10:9402")).toEqual({ host: "192.168.1.10", port: 9402 });
    expect(parseListenAddress("0.0.0.0:9402")).toEqual({ host: "0.0.0.0", port: 9402 });
    expect(parseListenAddress("[::]:9402")).toEqual({ host: "::", port: 9402 });
  });

  it("refuses an address left out, which would serve every interface of the node", () => {
    expect(() => parseListenAddress(":9402")).toThrow(/is not IP:PORT \(127\.0\.0\.1:9402 this node only.*0\.0\.0\.0:9402 or \[::\]:9402 every address\)/);
  });

  it.each(["localhost:9402", "node-a:9402", "::1:9402", "[127.0.0.1]:9402", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:x"])("refuses %s", (text) => {
    expect(() => parseListenAddress(text)).toThrow(/is not IP:PORT/);
  });
});

describe("checkListenAddress", () => {
  it("passes an empty address (serving off) and a valid one, refuses the rest", () => {
    expect(checkListenAddress("")).toBe("");
    expect(checkListenAddress("127.0.0.1:9402")).toBe("127.0.0.1:9402");
    expect(() => checkListenAddress(":9402")).toThrow(/is not IP:PORT/);
  });
});

describe("startHttpServer", () => {
  it("listens on the address given", async () => {
    const server = await startHttpServer("127.0.0.1:0", new Registry(), () => ({ ready: true, reason: "test" }));
    try {
      const { address, port } = server.address() as AddressInfo;
      expect(address).toBe("127.0.0.1");
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect([res.status, await res.text()]).toEqual([200, "ready: test\n"]);
    } finally {
      server.close();
    }
  });
});
