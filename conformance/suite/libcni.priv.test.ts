import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { run } from "../../shared/kernel/exec.js";
import { attachmentProblems, hostSide, remainingProblems } from "./attachment.js";
import { netnsPath } from "../../testkit/netns.js";
import { Namespaces, readNamespace } from "./namespaces.js";
import { runPrefix } from "./suite.js";
import { TWILL_BIN } from "./twill-fixture.js";

// twill as a container runtime sees it: through libcni (twill-libcni, built by
// scripts/build-libcni), with its result cache, capability args and chained plugins.
// Debian's libcni 1.1.2 parses results up to 1.0.0, so these conflists say 1.0.0.

const LIBCNI = process.env.TWILL_LIBCNI_BIN ?? "/var/cache/twill/bin/twill-libcni";
const libcniBuilt = (() => {
  try {
    accessSync(LIBCNI, constants.X_OK);
    return true;
  } catch {
    return false;
  }
})();

const CNI_PATH = `${TWILL_BIN}:/usr/lib/cni`;
const HOST_PORT = 18080;
const POD_PORT = 8080;

let namespaces: Namespaces;
let dir: string;
let node: string;
let servers: ResultPromise[];

beforeEach(async () => {
  namespaces = new Namespaces(runPrefix());
  dir = mkdtempSync("/tmp/twill-libcni-");
  node = await namespaces.create("node");
  servers = [];
});

afterEach(async () => {
  for (const s of servers) s.kill();
  await Promise.allSettled(servers);
  await namespaces.removeAll();
  rmSync(dir, { recursive: true, force: true });
});

function writeSubnetFile(name: string, nodeSubnet: string): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify({ clusterCIDRs: ["10.251.0.0/16"], nodeSubnets: [nodeSubnet], mtu: 1450, backend: "vxlan", ipMasq: false }));
  return path;
}

function twillPlugin(subnetFile: string) {
  return {
    type: "twill",
    bridge: "cni0",
    isDefaultGateway: true,
    subnetFile,
    logFile: join(dir, "twill.log"),
    ipam: { type: "twill-ipam", dataDir: join(dir, "ipam") },
  };
}

function writeConflist(name: string, cniVersion: string, plugins: unknown[]): string {
  const path = join(dir, `${name}.conflist`);
  writeFileSync(path, JSON.stringify({ cniVersion, name, plugins }, null, 2));
  return path;
}

interface Pod {
  ns: string;
  netns: string;
  id: string;
}

async function newPod(n: number): Promise<Pod> {
  const ns = await namespaces.create(`pod${n}`);
  return { ns, netns: netnsPath(ns), id: `libcni-${ns}` };
}

/** twill-libcni inside the node namespace, as a runtime on that node runs it. */
async function libcni(command: string, conflist: string, pod: Pod | null, extra: string[] = []) {
  const args = [command, ...(pod ? [pod.netns, "--container-id", pod.id] : []), "--conflist", conflist, "--cni-path", CNI_PATH, "--cache-dir", join(dir, "cache"), ...extra];
  return run(["ip", "netns", "exec", node, LIBCNI, ...args]);
}

async function libcniOk(command: string, conflist: string, pod: Pod | null, extra: string[] = []): Promise<string> {
  const r = await libcni(command, conflist, pod, extra);
  expect(r.code, `twill-libcni ${command}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

const cacheFile = (network: string, pod: Pod) => join(dir, "cache", "results", `${network}-${pod.id}-eth0`);

async function expectAttached(pod: Pod, result: unknown): Promise<void> {
  const problems = attachmentProblems(result, { ifname: "eth0", netns: pod.netns }, await readNamespace(pod.ns), await readNamespace(node));
  expect(problems).toEqual([]);
}

/** A TCP server in the pod answering one line; resolves once it listens. */
async function startPodServer(pod: Pod): Promise<void> {
  const script = `require("net").createServer((c) => c.end("twill-pong\\n")).listen(${POD_PORT}, "0.0.0.0", () => console.log("listening"));`;
  const server = execa("ip", ["netns", "exec", pod.ns, process.execPath, "-e", script], { reject: false, cleanup: true });
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.stdout!.on("data", (b: Buffer) => b.toString().includes("listening") && resolve());
    void server.then((r) => reject(new Error(`pod server exited: ${r.stderr}`)));
  });
}

/** Connects from the node namespace and returns what the far end said. */
async function tcpFromNode(host: string, port: number): Promise<string> {
  const script = `const s = require("net").connect(${port}, ${JSON.stringify(host)}); let d = ""; s.on("data", (b) => (d += b)); s.on("end", () => { process.stdout.write(d); }); s.on("error", (e) => { console.error(e.message); process.exit(1); }); s.setTimeout(10000, () => { console.error("timeout"); process.exit(1); });`;
  const r = await run(["ip", "netns", "exec", node, process.execPath, "-e", script]);
  return r.code === 0 ? r.stdout.trim() : `error: ${r.stderr.trim()}`;
}

describe.skipIf(!libcniBuilt)("twill through libcni", () => {
  it("ADD, CHECK and DEL with libcni's result cache", async () => {
    const conflist = writeConflist("conformance", "1.0.0", [twillPlugin(writeSubnetFile("subnet.json", "10.251.3.0/24"))]);
    const pod = await newPod(1);
    const result = JSON.parse(await libcniOk("add", conflist, pod));
    expect(existsSync(cacheFile("conformance", pod))).toBe(true);
    const cached = JSON.parse(readFileSync(cacheFile("conformance", pod), "utf8"));
    expect(cached).toMatchObject({ kind: "cniCacheV1", containerId: pod.id, ifName: "eth0", networkName: "conformance" });
    await expectAttached(pod, result);

    await libcniOk("check", conflist, pod);

    const host = hostSide(result, "eth0", await readNamespace(pod.ns), await readNamespace(node));
    expect(host.length).toBeGreaterThan(0);
    await libcniOk("del", conflist, pod);
    expect(existsSync(cacheFile("conformance", pod))).toBe(false);
    expect(remainingProblems("eth0", await readNamespace(pod.ns), host, await readNamespace(node))).toEqual([]);
    // The cache is gone, so this DEL has no prevResult: it must still succeed.
    await libcniOk("del", conflist, pod);
  });

  it("chains twill, portmap, bandwidth and tuning: port, qdisc and sysctl work, CHECK passes, DEL removes all", async () => {
    const conflist = writeConflist("chain", "1.0.0", [
      twillPlugin(writeSubnetFile("subnet.json", "10.251.5.0/24")),
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
      { type: "bandwidth", capabilities: { bandwidth: true } },
      { type: "tuning", sysctl: { "net.ipv4.conf.eth0.arp_filter": "1" } },
    ]);
    const capArgs = JSON.stringify({
      portMappings: [{ hostPort: HOST_PORT, containerPort: POD_PORT, protocol: "tcp" }],
      bandwidth: { ingressRate: 100_000_000, ingressBurst: 1_000_000, egressRate: 100_000_000, egressBurst: 1_000_000 },
    });
    const pod = await newPod(1);
    const result = JSON.parse(await libcniOk("add", conflist, pod, ["--cap-args", capArgs]));
    await expectAttached(pod, result);

    // portmap: the host port on the node reaches the pod.
    await startPodServer(pod);
    const gateway: string = result.ips[0].gateway;
    expect(await tcpFromNode(gateway, HOST_PORT)).toBe("twill-pong");

    // bandwidth: a token bucket on the pod's host veth.
    const host = hostSide(result, "eth0", await readNamespace(pod.ns), await readNamespace(node));
    const veth = host.find((l) => l.linkinfo?.info_kind === "veth")!;
    expect(veth, "host veth").toBeDefined();
    const qdiscs = await run(["tc", "-n", node, "qdisc", "show", "dev", veth.ifname]);
    expect(qdiscs.stdout).toMatch(/qdisc tbf/);

    // tuning: the sysctl is set inside the pod.
    const sysctl = await run(["ip", "netns", "exec", pod.ns, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_filter"]);
    expect(sysctl.stdout.trim()).toBe("1");

    // Reference portmap 1.1.x fails CHECK of its own rules, looking for them in ip6tables too
    // (containernetworking/plugins#819); without portMappings it skips, and the others check.
    const { portMappings: _skipped, ...checkable } = JSON.parse(capArgs) as Record<string, unknown>;
    await libcniOk("check", conflist, pod, ["--cap-args", JSON.stringify(checkable)]);

    const nodeBefore = await readNamespace(node);
    await libcniOk("del", conflist, pod, ["--cap-args", capArgs]);
    const nodeAfter = await readNamespace(node);
    expect(remainingProblems("eth0", await readNamespace(pod.ns), host, nodeAfter)).toEqual([]);
    // bandwidth's ifb device for egress shaping goes with it.
    const added = nodeBefore.links.filter((l) => l.linkinfo?.info_kind === "ifb");
    expect(added.length, "bandwidth's ifb device").toBeGreaterThan(0);
    expect(nodeAfter.links.filter((l) => added.some((a) => a.ifindex === l.ifindex))).toEqual([]);
    const nat = await run(["ip", "netns", "exec", node, "iptables-save", "-t", "nat"]);
    expect(nat.stdout).not.toContain(`--dport ${HOST_PORT}`);
    expect(await tcpFromNode(gateway, HOST_PORT)).toMatch(/^error/);
  });

  it("GC through libcni deletes the cached attachments the runtime no longer lists and frees their addresses", async () => {
    // A /29 node subnet: a handful of addresses, so a freed one shows as one more ADD.
    const conflist = writeConflist("gcnet", "1.0.0", [twillPlugin(writeSubnetFile("small.json", "10.251.6.0/29"))]);
    const pods: Pod[] = [];
    for (let i = 1; ; i++) {
      const pod = await newPod(i);
      const r = await libcni("add", conflist, pod);
      if (r.code !== 0) {
        await libcniOk("del", conflist, pod);
        break;
      }
      pods.push(pod);
      expect(i, "the /29 pool never ran out").toBeLessThan(16);
    }
    expect(pods.length).toBeGreaterThan(1);
    const [gone, ...kept] = pods;
    const valid = JSON.stringify(kept.map((p) => ({ containerID: p.id, ifname: "eth0" })));
    await libcniOk("gc", conflist, null, ["--valid-attachments", valid]);

    expect(existsSync(cacheFile("gcnet", gone!))).toBe(false);
    // libcni 1.1.2's cache has no netns, so that DEL came with an empty CNI_NETNS: twill finds
    // the host veth by its derived name, and deleting it takes the pod's end along.
    expect((await readNamespace(gone!.ns)).links.map((l) => l.ifname)).not.toContain("eth0");
    for (const p of kept) {
      expect(existsSync(cacheFile("gcnet", p))).toBe(true);
      await libcniOk("check", conflist, p);
    }
    const extra = [await newPod(90), await newPod(91)];
    await libcniOk("add", conflist, extra[0]!);
    expect((await libcni("add", conflist, extra[1]!)).code, "GC freed more than the one unlisted attachment").not.toBe(0);
  });

  it("STATUS at 1.1.0 is 0 on a ready node and 50 when the node's subnet file is missing", async () => {
    const ready = writeConflist("ready", "1.1.0", [twillPlugin(writeSubnetFile("subnet.json", "10.251.7.0/24"))]);
    await libcniOk("status", ready, null);
    const notReady = writeConflist("notready", "1.1.0", [twillPlugin(join(dir, "missing.json"))]);
    const r = await libcni("status", notReady, null);
    expect(r.code).not.toBe(0);
    expect(JSON.parse(r.stderr.trim().split("\n").pop()!)).toMatchObject({ code: 50 });
  });
});
