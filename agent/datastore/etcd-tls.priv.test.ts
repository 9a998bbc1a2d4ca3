import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startDaemon, waitUntilReady, type Daemon } from "../../testkit/daemon.js";
import { etcdArgs, etcdPath } from "../../testkit/kube/binaries.js";
import { TWILLD } from "../../testkit/node-net.js";
import { follow, request } from "../../testkit/store-contract.js";
import { until } from "../../testkit/until.js";
import { parseNetworkConfig } from "../config.js";
import { EtcdClient, readEtcdTls, type EtcdTlsFiles } from "./etcd-client.js";
import { EtcdStore } from "./etcd.js";

/**
 * An etcd that serves clients over TLS and asks each for a certificate (--client-cert-auth),
 * with a CA, server and client certificates made by openssl in a temp dir.
 */

let dir: string;
let etcd: Daemon | null = null;
let endpoint: string;
const pem = (name: string) => join(dir, name);
const trusted: EtcdTlsFiles = { caFile: "", certFile: "", keyFile: "" };

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

/** A key and a certificate for `cn` signed by the CA `ca`, with the given extensions. */
function issue(ca: string, name: string, cn: string, extensions: string): void {
  writeFileSync(pem(`${name}.ext`), extensions);
  openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
  openssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-days", "1", "-out", `${name}.crt`, "-extfile", `${name}.ext`);
}

function makeCa(name: string): void {
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "1", "-subj", `/CN=${name}`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "twill-etcd-tls-"));
  makeCa("ca");
  makeCa("other-ca");
  // clientAuth too: etcd's JSON gateway dials etcd's own gRPC with the server certificate.
  issue("ca", "server", "etcd", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
  issue("ca", "client", "twilld", "extendedKeyUsage=clientAuth\n");
  issue("other-ca", "stranger", "twilld", "extendedKeyUsage=clientAuth\n");
  Object.assign(trusted, { caFile: pem("ca.crt"), certFile: pem("client.crt"), keyFile: pem("client.key") });

  endpoint = `https://127.0.0.1:${await freePort()}`;
  const peer = `http://127.0.0.1:${await freePort()}`;
  etcd = startDaemon("etcd", etcdPath, [
    ...etcdArgs(pem("data"), endpoint, peer),
    `--cert-file=${pem("server.crt")}`, `--key-file=${pem("server.key")}`, `--trusted-ca-file=${pem("ca.crt")}`, "--client-cert-auth",
  ], pem("etcd.log"));
  const probe = new EtcdClient([endpoint], 2_000, readEtcdTls(trusted));
  try {
    await waitUntilReady(etcd, "serving TLS clients", async () => (await probe.range("probe"), true), 30_000);
  } finally {
    probe.close();
  }
});

afterAll(async () => {
  await etcd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const network = parseNetworkConfig({ Network: "10.244.0.0/16" });
const open = (tls: EtcdTlsFiles, prefix = "/tls/") => new EtcdStore({ endpoints: [endpoint], prefix, network, leaseTTLMs: 30_000, tls });

describe("etcd over TLS with client certificates", () => {
  it("claims, lists and watches with the CA and a client certificate the server trusts", async () => {
    const a = open(trusted);
    const watcherStore = open(trusted);
    const watcher = follow(watcherStore);
    try {
      const lease = await a.acquire(request("node-a"));
      expect(lease.subnets).toHaveLength(1);
      await until("the watch seeing node-a", () => watcher.names().includes("node-a"));
      expect((await open(trusted).list()).map((l) => l.nodeName)).toEqual(["node-a"]);
    } finally {
      watcher.stop();
      await a.close();
      await watcherStore.close();
    }
  });

  it("fails saying a client certificate is wanted when none is given", async () => {
    const store = open({ caFile: trusted.caFile });
    await expect(store.acquire(request("node-b"))).rejects.toThrow(/asks for a client certificate \(give --etcd-certfile and --etcd-keyfile\)/);
    await store.close();
  });

  it("fails saying the certificate is refused when another CA signed it", async () => {
    const store = open({ caFile: trusted.caFile, certFile: pem("stranger.crt"), keyFile: pem("stranger.key") });
    await expect(store.list()).rejects.toThrow(/does not accept this client certificate/);
    await store.close();
  });

  it("fails saying the server certificate is not trusted without its CA", async () => {
    const store = open({ certFile: trusted.certFile, keyFile: trusted.keyFile });
    await expect(store.list()).rejects.toThrow(/server certificate is not trusted \(give its CA with --etcd-cafile\)/);
    await store.close();
  });

  it.runIf(existsSync(TWILLD))("takes the files from twilld's flags and from TWILL_ETCD_* variables", () => {
    const common = ["nodes", "--datastore=etcd", `--etcd-endpoints=${endpoint}`, "--etcd-prefix=/tls/", "--output=json"];
    const byFlags = spawnSync(TWILLD, [...common, `--etcd-cafile=${trusted.caFile}`, `--etcd-certfile=${trusted.certFile}`, `--etcd-keyfile=${trusted.keyFile}`], { encoding: "utf8" });
    expect(byFlags.status, byFlags.stderr).toBe(0);
    const env = { ...process.env, TWILL_ETCD_CAFILE: trusted.caFile, TWILL_ETCD_CERTFILE: trusted.certFile, TWILL_ETCD_KEYFILE: trusted.keyFile };
    const byEnv = spawnSync(TWILLD, common, { encoding: "utf8", env });
    expect(byEnv.status, byEnv.stderr).toBe(0);
    expect(byEnv.stdout).toBe(byFlags.stdout);
    const without = spawnSync(TWILLD, [...common, `--etcd-cafile=${trusted.caFile}`], { encoding: "utf8" });
    expect(without.status).not.toBe(0);
    expect(without.stdout + without.stderr).toMatch(/asks for a client certificate/);
  });
});
