import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeCacheDir } from "../../testkit/kube/binaries.js";
import { addNetns, deleteNetns, inNetns } from "../../testkit/netns.js";
import { until } from "../../testkit/until.js";

/**
 * The images scripts/lib/image/test-images builds for Kubernetes' e2e tests, without a cluster:
 * each image's root filesystem unpacked, and the commands the [sig-network] tests run in it
 * (test/e2e/network and test/e2e/framework/network of v1.20, through `kubectl exec ... /bin/sh
 * -c`) run there with chroot, in a network namespace of the test's own, against agnhost's
 * netexec from the agnhost image. A tool that is missing, crashes (Debian's busybox-static wget
 * on -T) or does not do its job fails here, by name, instead of as a timeout in an e2e case.
 */

const REPO = join(import.meta.dirname, "..", "..");
const IMAGES = join(kubeCacheDir(), "images");
const canRun = process.getuid?.() === 0 && existsSync(join(kubeCacheDir(), "bin", "agnhost")) && existsSync(join(kubeCacheDir(), "src"));

const HTTP = 8080;
const UDP = 8081;
const NS = `twill-images-${process.pid}`;

/** An OCI archive of test-images (one layer) unpacked into `dir`. */
async function unpack(archive: string, dir: string): Promise<void> {
  const oci = join(dir, ".oci");
  mkdirSync(oci, { recursive: true });
  await execa("tar", ["-xf", archive, "-C", oci]);
  const blob = (digest: string) => join(oci, "blobs", "sha256", digest.replace(/^sha256:/, ""));
  const index = JSON.parse(readFileSync(join(oci, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), "utf8")) as { layers: { digest: string }[] };
  expect(manifest.layers).toHaveLength(1);
  await execa("tar", ["-xf", blob(manifest.layers[0]!.digest), "-C", dir]);
  rmSync(oci, { recursive: true });
}

describe.skipIf(!canRun)("the e2e test images' tools (scripts/lib/image/test-images)", () => {
  const work = mkdtempSync(join(tmpdir(), "twill-images-"));
  const root = (image: string) => join(work, image);
  let server: ResultPromise | undefined;

  /**
   * `argv` in the image's root with /proc and /dev, as a container has them, in the test's
   * namespace; the mounts are made in the private mount namespace `ip netns exec` enters.
   */
  const inImage = (image: string, argv: string[], timeout = 30_000) =>
    inNetns(NS, ["sh", "-c", 'mount -t proc proc "$0/proc" && mount --bind /dev "$0/dev" && exec chroot "$0" "$@"', root(image), ...argv], { timeout });
  /** A test's command line, as `kubectl exec POD -- /bin/sh -c CMD` runs it. */
  const sh = (image: string, cmd: string, timeout?: number) => inImage(image, ["/bin/sh", "-c", cmd], timeout);
  const ok = async (image: string, cmd: string): Promise<string> => {
    const r = await sh(image, cmd);
    expect(r.exitCode, `${image}: ${cmd}\n${r.stdout}\n${r.stderr}${r.signal ? `\nkilled by ${r.signal}` : ""}`).toBe(0);
    return r.stdout;
  };

  beforeAll(async () => {
    const built = await execa(join(REPO, "scripts/lib/image/test-images"), { reject: false });
    if (built.exitCode !== 0) throw new Error(`test-images failed:\n${built.stderr}`);
    for (const image of ["agnhost", "busybox", "debian-iptables"]) await unpack(join(IMAGES, `${image}.oci.tar`), root(image));
    await addNetns(NS);
    // What the e2e tests talk to: agnhost's netexec, as their endpoint pods run it.
    server = inImage("agnhost", ["/agnhost", "netexec", `--http-port=${HTTP}`, `--udp-port=${UDP}`], 0);
    await until("netexec serving", async () => (await sh("agnhost", `curl -s http://127.0.0.1:${HTTP}/healthz`)).exitCode === 0, 30_000);
  }, 300_000);

  afterAll(async () => {
    server?.kill("SIGKILL");
    await server?.catch(() => undefined);
    await deleteNetns(NS);
    rmSync(work, { recursive: true, force: true });
  });

  describe("agnhost", () => {
    it("runs the Services tests' wget loop (wget -q -T 1 -O -) and reports a refused connection as a failure, not a crash", async () => {
      // service.go verifyServeHostnameServiceUp, from a hostNetwork pod and a pod.
      const out = await ok("agnhost", `for i in $(seq 1 3); do wget -q -T 1 -O - http://127.0.0.1:${HTTP}/hostname 2>&1 || true; echo; done`);
      expect(out.split("\n").filter(Boolean)).toEqual([hostname(), hostname(), hostname()]);
      expect(await ok("agnhost", `wget -T 5 -qO- "http://127.0.0.1:${HTTP}/echo?msg=twill"`)).toBe("twill");
      const refused = await sh("agnhost", "wget -q -T 1 -O - http://127.0.0.1:1/");
      expect(refused.signal, refused.stderr).toBeUndefined();
      expect(refused.exitCode).toBeGreaterThan(0);
      expect(refused.exitCode).toBeLessThan(128);
    });

    it("runs curl as the Networking tests do: dial through netexec over UDP, status codes, timeouts", async () => {
      const dial = await ok("agnhost", `curl -g -q -s 'http://127.0.0.1:${HTTP}/dial?request=hostname&protocol=udp&host=127.0.0.1&port=${UDP}&tries=1'`);
      expect(JSON.parse(dial)).toEqual({ responses: [hostname()] });
      expect(await ok("agnhost", `curl -g -q -s -o /dev/null -w %{http_code} http://127.0.0.1:${HTTP}/healthz`)).toBe("200");
      expect(await ok("agnhost", `curl -g -q -s --max-time 15 --connect-timeout 1 http://127.0.0.1:${HTTP}/hostName`)).toBe(hostname());
      expect((await sh("agnhost", "curl -q -s --connect-timeout 2 http://127.0.0.1:1/")).exitCode).not.toBe(0);
    });

    it("runs netcat-openbsd's nc under bash: UDP with a source port, TCP port checks", async () => {
      // conntrack.go and service.go: UDP to netexec, which answers `hostname`; -z checks of TCP.
      expect(await ok("agnhost", `echo hostName | nc -w 1 -u 127.0.0.1 ${UDP}`)).toBe(hostname());
      expect(await ok("agnhost", `echo hostname | nc -u -w 5 -p 31001 127.0.0.1 ${UDP}`)).toBe(hostname());
      await ok("agnhost", `nc -zv -t -w 2 127.0.0.1 ${HTTP}`);
      expect((await sh("agnhost", "nc -zv -t -w 2 127.0.0.1 1")).exitCode).not.toBe(0);
      expect(await ok("agnhost", 'echo "$BASH_VERSION"')).not.toBe("");
      expect(await ok("agnhost", "ip -o addr show dev lo")).toContain("127.0.0.1/8");
    });

    it("runs ss as the NodePort test does to see whether a port is listened on", async () => {
      const ss = (port: number) => sh("agnhost", `ss -ant46 'sport = :${port}' | tail -n +2 | grep LISTEN`);
      expect((await ss(HTTP)).exitCode).toBe(0);
      expect((await ss(1)).exitCode).not.toBe(0);
    });
  });

  describe("busybox", () => {
    it("runs wget with a timeout, nc to a server, and the applets a pod's script uses", async () => {
      expect(await ok("busybox", `wget -q -T 1 -O - http://127.0.0.1:${HTTP}/hostname`)).toBe(hostname());
      // kube_proxy.go's client: `nc HOST 9000` in a shell loop.
      const http = await ok("busybox", `printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 ${HTTP}`);
      expect(http).toMatch(/^HTTP\/1\.0 200 OK/);
      expect(http.trimEnd().endsWith(hostname())).toBe(true);
      expect(await ok("busybox", "sleep 0 && seq 1 3 | tr '\\n' ' '")).toBe("1 2 3 ");
    });
  });

  describe("debian-iptables", () => {
    it("lists a node's connection with conntrack as the KubeProxy test greps it, after iptables turned tracking on", async () => {
      // A rule with the conntrack match, from the image's iptables, turns tracking on in the namespace.
      await ok("debian-iptables", "iptables -w -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT");
      expect(await ok("debian-iptables", "iptables -w -S INPUT")).toContain("--ctstate RELATED,ESTABLISHED -j ACCEPT");
      // A connection held open to netexec (nc's stdin stays open), as the test's client leaks one.
      const held = inImage("agnhost", ["nc", "127.0.0.1", String(HTTP)], 90_000);
      try {
        const line = await until("conntrack to list the held connection", async () => {
          const r = await sh("debian-iptables", `conntrack -L -f ipv4 -d 127.0.0.1 | grep -m 1 'ESTABLISHED.*dport=${HTTP}'`);
          return r.exitCode === 0 && r.stdout;
        }, 20_000);
        // kube_proxy.go reads the timeout as the third field.
        const fields = line.trim().split(/\s+/);
        expect(fields[0]).toBe("tcp");
        expect(Number(fields[2])).toBeGreaterThan(0);
      } finally {
        held.kill("SIGKILL");
        await held.catch(() => undefined);
      }
    });
  });
});
