import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../errors.js";
import { EtcdClient, checkEndpoints, connectFailure, readEtcdTls } from "./etcd-client.js";

describe("checkEndpoints", () => {
  it("takes http:// and https:// URLs, without a trailing slash", () => {
    expect(checkEndpoints(["http://127.0.0.1:2379/", "https://etcd-0:2379"], {})).toEqual(["http://127.0.0.1:2379", "https://etcd-0:2379"]);
  });
  it("refuses what is not an http(s) URL, and TLS files with a plain HTTP endpoint", () => {
    expect(() => checkEndpoints(["127.0.0.1:2379"], {})).toThrow(ConfigError);
    expect(() => checkEndpoints(["unix:///run/etcd.sock"], {})).toThrow(/only http:\/\/ and https:\/\//);
    expect(() => checkEndpoints(["http://127.0.0.1:2379"], { ca: "PEM" })).toThrow(/plain HTTP but TLS files are given.*use https:\/\//);
    expect(() => checkEndpoints([], {})).toThrow(/no endpoints/);
  });
});

describe("readEtcdTls", () => {
  it("reads the PEM files, and names the flag of one it cannot read", () => {
    const dir = mkdtempSync(join(tmpdir(), "twill-etcd-tls-"));
    try {
      writeFileSync(join(dir, "ca.pem"), "CA");
      writeFileSync(join(dir, "c.pem"), "CERT");
      writeFileSync(join(dir, "k.pem"), "KEY");
      expect(readEtcdTls({})).toEqual({});
      expect(readEtcdTls({ caFile: join(dir, "ca.pem") })).toEqual({ ca: "CA" });
      expect(readEtcdTls({ caFile: join(dir, "ca.pem"), certFile: join(dir, "c.pem"), keyFile: join(dir, "k.pem") })).toEqual({ ca: "CA", cert: "CERT", key: "KEY" });
      expect(() => readEtcdTls({ certFile: join(dir, "c.pem"), keyFile: join(dir, "none.pem") })).toThrow(/--etcd-keyfile .*none\.pem: .*ENOENT/);
      expect(() => readEtcdTls({ certFile: join(dir, "c.pem") })).toThrow(/--etcd-certfile and --etcd-keyfile go together/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("connectFailure", () => {
  const err = (message: string, code: string) => Object.assign(new Error(message), { code });
  it("says which TLS setting to give", () => {
    const required = err("error:0A00045C:SSL routines::tlsv13 alert certificate required", "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
    expect(connectFailure(required, false)).toMatch(/asks for a client certificate \(give --etcd-certfile and --etcd-keyfile\)/);
    expect(connectFailure(required, true)).toMatch(/does not accept this client certificate/);
    expect(connectFailure(err("self-signed certificate in certificate chain", "SELF_SIGNED_CERT_IN_CHAIN"), false)).toMatch(/not trusted \(give its CA with --etcd-cafile\)/);
    expect(connectFailure(err("connect ECONNREFUSED 127.0.0.1:2379", "ECONNREFUSED"), false)).toBe("connect ECONNREFUSED 127.0.0.1:2379");
  });
});

describe("EtcdClient's kept-alive connections", () => {
  it("sends a request again on a new connection when etcd closed the kept-alive one unread", async () => {
    // A gateway that answers one request per connection and drops the connection on the next,
    // as etcd does when it closed an idle one while the client was reusing it.
    const served = new WeakSet<Socket>();
    const server: Server = createServer((req, res) => {
      if (served.has(req.socket)) return req.socket.destroy();
      served.add(req.socket);
      req.resume().on("end", () => res.end(JSON.stringify({ header: { revision: "7" } })));
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const client = new EtcdClient([`http://127.0.0.1:${(server.address() as AddressInfo).port}`]);
    try {
      for (let i = 0; i < 3; i++) expect((await client.range("k")).revision).toBe(7);
    } finally {
      client.close();
      server.close();
    }
  });
});
