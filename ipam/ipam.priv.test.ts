import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TestNode, type Call } from "../testkit/cni-node.js";
import { isIpName } from "./store.js";

// The real dist/bin/twill-ipam, started with a clean environment inside a node namespace,
// as a runtime or the reference bridge starts it.
const IPAM = resolve("dist/bin/twill-ipam");
const HOST_LOCAL = "/usr/lib/cni/host-local";
const BRIDGE = "/usr/lib/cni/bridge";
const PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

let node: TestNode;
beforeEach(async () => {
  node = await TestNode.create();
});
afterEach(async () => {
  await node.destroy();
});

const dataDir = () => join(node.dir, "ipam");
const storeDir = () => join(dataDir(), "net1");
const conf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.1.0", name: "net1", type: "twill-ipam",
  ipam: { type: "twill-ipam", dataDir: dataDir(), ...ipam }, ...extra,
});
const v4 = (subnet: string, more: Record<string, string> = {}) => ({ ranges: [[{ subnet, ...more }]] });
const call = (containerId: string, more: Call = {}): Call => ({ containerId, netns: "/var/run/netns/none", binary: IPAM, ...more });
const ipam = (command: string, c: object, more: Call = {}) => node.cni(command, c, { binary: IPAM, ...more });
const hostLocal = (command: string, c: object, id: string) =>
  node.cni(command, { ...c, type: "host-local", ipam: { ...(c as { ipam: object }).ipam, type: "host-local" }, cniVersion: "1.0.0" }, call(id, { binary: HOST_LOCAL }));
const reservations = () => (existsSync(storeDir()) ? readdirSync(storeDir()).filter((f) => /^[0-9a-f.:]+$/.test(f) && /[.:]/.test(f)).sort() : []);
const indexFiles = () => readdirSync(join(storeDir(), ".twill", "by-id")).sort();

/** Every file of the store with its content: "untouched" means this does not change. */
function snapshot(dir = storeDir()): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, prefix: string) => {
    if (!existsSync(d)) return;
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p, `${prefix}${name}/`);
      else out[`${prefix}${name}`] = readFileSync(p, "utf8");
    }
  };
  walk(dir, "");
  return out;
}

/** The plugin with exactly this environment and this stdin, for cases the harness cannot express. */
async function rawCall(env: Record<string, string>, stdin: string) {
  const r = await execa("ip", ["netns", "exec", node.node, IPAM], { input: stdin, env: { PATH, ...env }, extendEnv: false, reject: false });
  return { code: r.exitCode, doc: String(r.stdout).trim() ? JSON.parse(String(r.stdout)) : undefined };
}

describe("twill-ipam executable", () => {
  it("answers VERSION with no config beyond the version", async () => {
    const r = await ipam("VERSION", { cniVersion: "0.4.0" });
    expect(r.code).toBe(0);
    expect(r.doc).toEqual({ cniVersion: "0.4.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
  });

  const good = () => JSON.stringify(conf(v4("10.20.0.0/24")));
  const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "bad", CNI_NETNS: "/var/run/netns/none", CNI_IFNAME: "eth0", CNI_PATH: "/usr/lib/cni" };
  const without = (key: string) => Object.fromEntries(Object.entries(env).filter(([k]) => k !== key));
  const withConf = (over: Record<string, unknown>) => JSON.stringify({ ...conf(v4("10.20.0.0/24")), ...over });
  const withIpam = (over: Record<string, unknown>) => JSON.stringify(conf({ ...v4("10.20.0.0/24"), ...over }));
  it.each<[string, Record<string, string>, () => string, number, RegExp]>([
    ["no CNI_NETNS", without("CNI_NETNS"), good, 4, /CNI_NETNS/],
    ["no CNI_IFNAME", without("CNI_IFNAME"), good, 4, /CNI_IFNAME/],
    ["no CNI_CONTAINERID", without("CNI_CONTAINERID"), good, 4, /CNI_CONTAINERID/],
    ["a path trick in CNI_CONTAINERID", { ...env, CNI_CONTAINERID: "../../x" }, good, 4, /CNI_CONTAINERID: invalid container ID "..\/..\/x"/],
    ["an unknown CNI_COMMAND", { ...env, CNI_COMMAND: "MAKE" }, good, 4, /CNI_COMMAND/],
    ["a CNI_ARGS pair without '='", { ...env, CNI_ARGS: "IgnoreUnknown=1;IP" }, good, 4, /CNI_ARGS/],
    ["stdin that is not JSON", env, () => "{nope", 6, /not valid JSON/],
    ["no cniVersion", env, () => withConf({ cniVersion: undefined }), 6, /cniVersion/],
    ["an unsupported cniVersion", env, () => withConf({ cniVersion: "0.2.0" }), 1, /incompatible CNI version 0.2.0/],
    ["no network name", env, () => withConf({ name: undefined }), 7, /name/],
    ["a path trick in the network name", env, () => withConf({ name: "../etc" }), 7, /invalid network name "..\/etc"/],
    ["an invalid CIDR", env, () => withIpam({ ranges: [[{ subnet: "10.0.0.0/33" }]] }), 7, /ipam.ranges\[0\]\[0\].subnet: invalid CIDR "10.0.0.0\/33"/],
    ["a /32", env, () => withIpam({ ranges: [[{ subnet: "10.0.0.1/32" }]] }), 7, /too small to allocate from/],
    ["a /127", env, () => withIpam({ ranges: [[{ subnet: "fd00::/127" }]] }), 7, /too small to allocate from/],
    ["a rangeStart outside the subnet", env, () => withIpam({ ranges: [[{ subnet: "10.0.0.0/24", rangeStart: "10.1.0.1" }]] }), 7, /rangeStart "10.1.0.1" is outside/],
    ["a relative dataDir", env, () => withIpam({ dataDir: "var/lib" }), 7, /ipam.dataDir must be an absolute path, got "var\/lib"/],
    ["a multicast subnet", env, () => withIpam({ ranges: [[{ subnet: "224.1.0.0/24" }]] }), 2, /unsupported value for "ipam.ranges\[0\]\[0\].subnet": "224.1.0.0\/24/],
    ["a requested address outside every range", env, () => withConf({ runtimeConfig: { ips: ["10.99.0.5"] } }), 7, /requested address runtimeConfig.ips 10.99.0.5 is in no range set/],
  ])("rejects %s with the right code and leaves the store untouched", async (_what, e, stdin, code, msg) => {
    expect((await ipam("ADD", conf(v4("10.20.0.0/24")), call("existing"))).code).toBe(0);
    const before = snapshot(dataDir());
    const r = await rawCall(e, stdin());
    expect(r.code).toBe(1);
    expect(r.doc).toMatchObject({ code, msg: expect.stringMatching(msg) });
    expect(snapshot(dataDir())).toEqual(before);
  });

  it("gives 200 concurrent ADD processes 200 distinct addresses from a /24", async () => {
    const c = conf(v4("10.30.0.0/24"));
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => ipam("ADD", c, call(`c${i}`))));
    expect(results.filter((r) => r.code !== 0).map((r) => r.stdout)).toEqual([]);
    const ips = results.map((r) => r.doc.ips[0].address);
    expect(new Set(ips).size).toBe(200);
    expect(reservations()).toHaveLength(200);
    expect(indexFiles()).toHaveLength(200);
  });

  it("fills a pool of exactly 200 addresses across a /24 and a /23 with 200 concurrent ADDs, and then is full", async () => {
    // 100 addresses from each range: a lost race anywhere would surface as an exhaustion error.
    const c = conf({ ranges: [[
      { subnet: "10.31.0.0/24", rangeStart: "10.31.0.101", rangeEnd: "10.31.0.200" },
      { subnet: "10.32.0.0/23", rangeStart: "10.32.1.1", rangeEnd: "10.32.1.100" },
    ]] });
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => ipam("ADD", c, call(`p${i}`))));
    expect(results.filter((r) => r.code !== 0).map((r) => r.stdout)).toEqual([]);
    const ips = results.map((r) => r.doc.ips[0].address as string);
    expect(new Set(ips).size).toBe(200);
    expect(ips.filter((a) => a.endsWith("/24"))).toHaveLength(100);
    expect(ips.filter((a) => a.endsWith("/23"))).toHaveLength(100);
    expect((await ipam("ADD", c, call("one-more"))).doc).toMatchObject({
      code: 110, msg: "no IP addresses available in range set 10.31.0.101-10.31.0.200,10.32.1.1-10.32.1.100",
    });
    expect((await ipam("STATUS", c, {})).doc).toMatchObject({ code: 50 });
  });

  it("names the range when the pool is exhausted, and keeps nothing of the failed ADD", async () => {
    const c = conf(v4("10.40.0.0/29"));
    for (let i = 0; i < 5; i++) expect((await ipam("ADD", c, call(`c${i}`))).code).toBe(0);
    const before = snapshot();
    const r = await ipam("ADD", c, call("c5"));
    expect([r.code, r.doc]).toEqual([1, { cniVersion: "1.1.0", code: 110, msg: "no IP addresses available in range set 10.40.0.2-10.40.0.6", details: "" }]);
    expect(snapshot()).toEqual(before);
    expect((await ipam("STATUS", c, {})).doc).toMatchObject({ code: 50, msg: "no IP addresses available in range set 10.40.0.2-10.40.0.6" });
  });

  it("releases on DEL, twice, and without CNI_NETNS", async () => {
    const c = conf(v4("10.50.0.0/24"));
    const added = await ipam("ADD", c, call("c1"));
    expect(added.doc.ips).toEqual([{ address: "10.50.0.2/24", gateway: "10.50.0.1" }]);
    for (let i = 0; i < 2; i++) {
      const r = await ipam("DEL", c, call("c1", { netns: undefined }));
      expect([r.code, r.stdout]).toEqual([0, ""]);
      expect(reservations()).toEqual([]);
    }
    expect(indexFiles()).toEqual([]);
    // Round-robin: the freed address is not handed out again at once.
    expect((await ipam("ADD", c, call("c2"))).doc.ips[0].address).toBe("10.50.0.3/24");
  });

  it("gives one IPv4 and one IPv6 address to a dual-stack ADD", async () => {
    const c = conf({ ranges: [[{ subnet: "10.60.0.0/24" }], [{ subnet: "fd00:60::/64" }]] }, { cniVersion: "0.4.0" });
    const r = await ipam("ADD", c, call("c1"));
    expect(r.doc.ips).toEqual([
      { version: "4", address: "10.60.0.2/24", gateway: "10.60.0.1" },
      { version: "6", address: "fd00:60::2/64", gateway: "fd00:60::1" },
    ]);
    expect(JSON.parse(readFileSync(join(storeDir(), ".twill", "by-id", "c1@eth0"), "utf8")).ips).toEqual(["10.60.0.2", "fd00:60::2"]);
  });

  it("keeps dual-stack reservations paired: an ADD that gets IPv4 but not IPv6 gives the IPv4 back", async () => {
    // The IPv6 range holds one address; the IPv4 one has plenty.
    const c = conf({ ranges: [[{ subnet: "10.63.0.0/24" }], [{ subnet: "fd00:63::/64", rangeStart: "fd00:63::2", rangeEnd: "fd00:63::2" }]] });
    expect((await ipam("ADD", c, call("c1"))).doc.ips.map((i: { address: string }) => i.address)).toEqual(["10.63.0.2/24", "fd00:63::2/64"]);
    const before = snapshot();
    const r = await ipam("ADD", c, call("c2"));
    expect([r.code, r.doc]).toEqual([1, { cniVersion: "1.1.0", code: 110, msg: "no IP addresses available in range set fd00:63::2-fd00:63::2", details: "" }]);
    // Nothing of the failed ADD is left: no IPv4 reservation, no index entry, no moved position.
    expect(snapshot()).toEqual(before);
    expect(reservations()).toEqual(["10.63.0.2", "fd00:63::2"]);
    expect(indexFiles()).toEqual(["c1@eth0"]);
    // And the IPv4 address the failed ADD held for a moment is free: the next pair gets .3 once IPv6 frees up.
    expect((await ipam("DEL", c, call("c1"))).code).toBe(0);
    expect((await ipam("ADD", c, call("c2"))).doc.ips.map((i: { address: string }) => i.address)).toEqual(["10.63.0.3/24", "fd00:63::2/64"]);
    expect(reservations()).toEqual(["10.63.0.3", "fd00:63::2"]);
  });

  it("keeps the store private to root and records the boot in the index", async () => {
    await ipam("ADD", conf(v4("10.61.0.0/24")), call("c1"));
    for (const p of [dataDir(), storeDir(), join(storeDir(), ".twill", "by-id")]) expect(statSync(p).mode & 0o777).toBe(0o700);
    for (const f of ["10.61.0.2", "last_reserved_ip.0", ".twill/by-id/c1@eth0"]) expect(statSync(join(storeDir(), f)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(storeDir(), "10.61.0.2"), "utf8")).toBe("c1\r\neth0");
    const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    expect(JSON.parse(readFileSync(join(storeDir(), ".twill", "by-id", "c1@eth0"), "utf8"))).toMatchObject({ bootId });
  });

  it("verifies the reservation on CHECK", async () => {
    const c = conf(v4("10.62.0.0/24"));
    const added = await ipam("ADD", c, call("c1"));
    expect((await ipam("CHECK", { ...c, prevResult: added.doc }, call("c1"))).code).toBe(0);
    const other = { ...added.doc, ips: [{ address: "10.62.0.77/24", gateway: "10.62.0.1" }] };
    expect((await ipam("CHECK", { ...c, prevResult: other }, call("c1"))).doc).toMatchObject({ code: 113, msg: /10.62.0.77\/24 of the result is not reserved/ });
    await ipam("DEL", c, call("c1"));
    const r = await ipam("CHECK", { ...c, prevResult: added.doc }, call("c1"));
    expect(r.doc).toMatchObject({ code: 113, msg: 'no address is reserved for c1/eth0 in network "net1"' });
  });

  it.each(["cni.dev/valid-attachments", "cni.dev/attachments"])("releases what %s does not list on GC", async (key) => {
    const c = conf(v4("10.70.0.0/24"));
    for (const id of ["keep", "drop1", "drop2"]) await ipam("ADD", c, call(id));
    const r = await ipam("GC", { ...c, [key]: [{ containerID: "keep", ifname: "eth0" }] }, {});
    expect([r.code, r.stdout]).toEqual([0, ""]);
    expect(reservations()).toEqual(["10.70.0.2"]);
    expect(indexFiles()).toEqual(["keep@eth0"]);
    await ipam("GC", { ...c, [key]: [] }, {});
    expect(reservations()).toEqual([]);
    expect(indexFiles()).toEqual([]);
  });

  it("takes the node's subnet from the subnet file, and says when the agent is not ready", async () => {
    const subnetFile = join(node.dir, "subnet.json");
    const c = conf({ subnetFile });
    expect((await ipam("ADD", c, call("c1"))).doc).toMatchObject({ code: 11, msg: /subnet file .* does not exist/ });
    expect((await ipam("STATUS", c, {})).doc).toMatchObject({ code: 50, msg: /subnet file .* does not exist/ });
    expect(reservations()).toEqual([]);
    writeFileSync(subnetFile, JSON.stringify({
      clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: ["10.244.7.0/24"], mtu: 1450, backend: "vxlan", ipMasq: true,
    }));
    const r = await ipam("ADD", c, call("c1"));
    expect(r.doc.ips).toEqual([{ address: "10.244.7.2/24", gateway: "10.244.7.1" }]);
    expect(r.doc.routes).toEqual([{ dst: "10.244.0.0/16", gw: "10.244.7.1" }]);
    expect((await ipam("STATUS", c, {})).code).toBe(0);
    // The agent goes away: DEL still releases by container.
    await execa("rm", [subnetFile]);
    expect((await ipam("DEL", c, call("c1"))).code).toBe(0);
    expect(reservations()).toEqual([]);
  });
});

describe("interop with the reference plugins", () => {
  it("releases reservations made by host-local on DEL and on GC, and refuses a duplicate of one", async () => {
    const c = conf(v4("10.80.0.0/24"));
    for (const id of ["a", "b"]) expect((await hostLocal("ADD", c, id)).code).toBe(0);
    expect(reservations()).toEqual(["10.80.0.2", "10.80.0.3"]);
    expect(readFileSync(join(storeDir(), "10.80.0.2"), "utf8")).toBe("a\r\neth0");

    expect((await ipam("ADD", c, call("a"))).doc).toMatchObject({ code: 111, msg: /10.80.0.2 has been allocated to a\/eth0 .* duplicate allocation is not allowed/ });
    expect((await ipam("DEL", c, call("a"))).code).toBe(0);
    expect(reservations()).toEqual(["10.80.0.3"]);
    expect((await ipam("GC", { ...c, "cni.dev/valid-attachments": [] }, {})).code).toBe(0);
    expect(reservations()).toEqual([]);
    // host-local keeps allocating round-robin on top of what twill-ipam left...
    expect((await hostLocal("ADD", c, "c")).doc.ips[0].address).toBe("10.80.0.4/24");
    // ...and twill-ipam after host-local, and host-local after twill-ipam: one round-robin position.
    expect((await ipam("ADD", c, call("d"))).doc.ips[0].address).toBe("10.80.0.5/24");
    expect((await hostLocal("ADD", c, "e")).doc.ips[0].address).toBe("10.80.0.6/24");
  });

  it("survives host-local's DEL walk: the index is never taken for a reservation", async () => {
    const c = conf(v4("10.81.0.0/24"));
    await ipam("ADD", c, call("x"));
    expect((await hostLocal("DEL", c, "x")).code).toBe(0);
    expect(reservations()).toEqual([]);
    expect(indexFiles()).toEqual(["x@eth0"]);
    // The entry is stale now: a new ADD of the attachment is no duplicate, and DEL cleans up.
    expect((await ipam("ADD", c, call("x"))).code).toBe(0);
    expect((await ipam("DEL", c, call("x"))).code).toBe(0);
    expect([reservations(), indexFiles()]).toEqual([[], []]);
  });

  it("serves the reference bridge: the pod gets its address, reaches the gateway, CHECK and DEL go through", async () => {
    const pod = await node.pod("pod1");
    const c = {
      cniVersion: "1.0.0", name: "net1", type: "bridge", bridge: "tw0", isGateway: true,
      ipam: { type: "twill-ipam", dataDir: dataDir(), ranges: [[{ subnet: "10.90.0.0/24" }]] },
    };
    const r = await node.cni("ADD", c, { containerId: "p1", netns: pod, binary: BRIDGE });
    expect(r.code, r.stdout).toBe(0);
    expect(r.doc.ips[0]).toMatchObject({ address: "10.90.0.2/24", gateway: "10.90.0.1" });
    const addr = await node.inPod(pod, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    expect(String(addr.stdout)).toContain("10.90.0.2/24");
    const ping = await node.inPod(pod, ["ping", "-c", "1", "-W", "2", "10.90.0.1"]);
    expect(ping.exitCode, String(ping.stdout)).toBe(0);

    // bridge delegates CHECK to its IPAM: it passes, and fails once the reservation is gone.
    expect((await node.cni("CHECK", { ...c, prevResult: r.doc }, { containerId: "p1", netns: pod, binary: BRIDGE })).code).toBe(0);
    const saved = readFileSync(join(storeDir(), "10.90.0.2"), "utf8");
    await execa("rm", [join(storeDir(), "10.90.0.2")]);
    const broken = await node.cni("CHECK", { ...c, prevResult: r.doc }, { containerId: "p1", netns: pod, binary: BRIDGE });
    expect(broken.doc).toMatchObject({ code: 113 });
    writeFileSync(join(storeDir(), "10.90.0.2"), saved);

    expect((await node.cni("DEL", c, { containerId: "p1", netns: pod, binary: BRIDGE })).code).toBe(0);
    expect(reservations()).toEqual([]);
  });
});

// A store someone has tampered with: files of the wrong kind, symlinks, what a killed ADD
// leaves, reservations host-local removed.
const tampered = () => conf(v4("10.20.0.0/24"));
const indexDir = () => join(storeDir(), ".twill", "by-id");
/** Reservation files proper: regular files named by an address. */
const storeReservations = () => readdirSync(storeDir()).filter((f) => isIpName(f) && lstatSync(join(storeDir(), f)).isFile()).sort();
const ipamLog = () => (existsSync(join(node.dir, "twill.log")) ? readFileSync(join(node.dir, "twill.log"), "utf8") : "");

describe("a store entry named like an address that is not a regular file", () => {
  const kinds: [string, (p: string) => void][] = [
    ["a directory", (p) => mkdirSync(p)],
    ["a FIFO", (p) => execFileSync("mkfifo", [p])],
    ["a symlink", (p) => symlinkSync(join(node.dir, "nowhere"), p)],
  ];

  it.each(kinds)("is skipped and logged (%s): DEL and GC of an attachment without an index entry succeed, ADD passes it by", async (_what, make) => {
    expect((await hostLocal("ADD", tampered(), "hl")).code).toBe(0); // 10.20.0.2, no index entry
    make(join(storeDir(), "10.20.0.3"));
    const add = await ipam("ADD", tampered(), call("c1", { timeoutMs: 20_000 }));
    expect(add.timedOut).toBe(false);
    expect(add.doc.ips[0].address).toBe("10.20.0.4/24");

    const del = await ipam("DEL", tampered(), call("hl", { timeoutMs: 20_000 }));
    expect(del.timedOut).toBe(false);
    expect([del.code, del.stdout]).toEqual([0, ""]);
    expect(storeReservations()).toEqual(["10.20.0.4"]);
    const gc = await ipam("GC", { ...tampered(), "cni.dev/valid-attachments": [] }, { timeoutMs: 20_000 });
    expect([gc.timedOut, gc.code, gc.stdout]).toEqual([false, 0, ""]);
    expect(storeReservations()).toEqual([]);
    expect(() => lstatSync(join(storeDir(), "10.20.0.3"))).not.toThrow(); // not ours to remove
    const skipped = ipamLog().split("\n").filter((l) => l.includes('"msg":"Skipped a store entry that is not a regular file"'));
    expect(skipped.length).toBeGreaterThan(0);
    expect(skipped[0]).toContain(`"path":"${join(storeDir(), "10.20.0.3")}"`);
  });
});

describe("litter", () => {
  it("leaves a killed writer's temporary of an index entry to GC, which removes it once old, and only such", async () => {
    mkdirSync(indexDir(), { recursive: true });
    const old = "c1@eth0.tmp-999999999-1700000000000"; // written an hour ago: its writer was killed
    const fresh = `c1@eth0.tmp-${process.pid}-1700000000000`; // a writer that may still be running
    const other = "c2@eth0.tmp-999999999-1700000000000"; // another entry's, old too
    for (const f of [old, fresh, other]) writeFileSync(join(indexDir(), f), "{");
    const hourAgo = (Date.now() - 3_600_000) / 1000;
    for (const f of [old, other]) utimesSync(join(indexDir(), f), hourAgo, hourAgo);
    // An ADD does not list the index (an entry per pod of the node) to look for them.
    expect((await ipam("ADD", tampered(), call("c1", { timeoutMs: 20_000 }))).code).toBe(0);
    expect(indexFiles()).toEqual(["c1@eth0", old, fresh, other].sort());
    expect((await ipam("GC", { ...tampered(), "cni.dev/valid-attachments": [{ containerID: "c1", ifname: "eth0" }] })).code).toBe(0);
    expect(indexFiles()).toEqual(["c1@eth0", fresh].sort());
  });

  it("drops index entries whose reservation host-local removed, on STATUS", async () => {
    for (const id of ["x", "y"]) expect((await ipam("ADD", tampered(), call(id))).code).toBe(0);
    expect((await hostLocal("DEL", tampered(), "x")).code).toBe(0);
    expect(indexFiles()).toEqual(["x@eth0", "y@eth0"]);
    expect((await ipam("STATUS", tampered())).code).toBe(0);
    expect(indexFiles()).toEqual(["y@eth0"]);
  });

  it("drops index entries whose reservation host-local removed, on the next DEL", async () => {
    for (const id of ["x", "y"]) expect((await ipam("ADD", tampered(), call(id))).code).toBe(0);
    expect((await hostLocal("DEL", tampered(), "x")).code).toBe(0);
    expect(indexFiles()).toEqual(["x@eth0", "y@eth0"]);
    expect((await ipam("DEL", tampered(), call("y"))).code).toBe(0);
    expect([storeReservations(), indexFiles()]).toEqual([[], []]);
  });
});

describe("symlinks planted in the store", () => {
  it("never writes last_reserved_ip through one", async () => {
    const target = join(node.dir, "outside");
    writeFileSync(target, "untouched");
    mkdirSync(storeDir(), { recursive: true });
    symlinkSync(target, join(storeDir(), "last_reserved_ip.0"));
    const r = await ipam("ADD", tampered(), call("c1", { timeoutMs: 20_000 }));
    expect(r.code, r.stdout).toBe(0);
    expect(readFileSync(target, "utf8")).toBe("untouched");
    expect(lstatSync(join(storeDir(), "last_reserved_ip.0")).isFile()).toBe(true);
    expect(readFileSync(join(storeDir(), "last_reserved_ip.0"), "utf8")).toBe("10.20.0.2");
  });

  it("never follows .twill out of the store: ADD refuses with 5 naming it, DEL and GC leave the target alone", async () => {
    const outside = join(node.dir, "outside");
    mkdirSync(join(outside, "by-id"), { recursive: true });
    const planted = JSON.stringify({ containerID: "c9", ifname: "eth0", ips: ["10.20.0.9"], bootId: "", created: "" });
    writeFileSync(join(outside, "by-id", "c9@eth0"), planted);
    mkdirSync(storeDir(), { recursive: true });
    symlinkSync(outside, join(storeDir(), ".twill"));

    const add = await ipam("ADD", tampered(), call("c1", { timeoutMs: 20_000 }));
    expect(add.doc).toMatchObject({ code: 5, msg: `IPAM index ${join(storeDir(), ".twill")} is a symlink, not a directory: refusing to follow it` });
    expect(storeReservations()).toEqual([]);
    expect((await ipam("DEL", tampered(), call("c9"))).code).toBe(0);
    const gc = await ipam("GC", { ...tampered(), "cni.dev/valid-attachments": [] });
    expect(gc.code, gc.stdout).toBe(0);
    expect(readdirSync(join(outside, "by-id"))).toEqual(["c9@eth0"]);
    expect(readFileSync(join(outside, "by-id", "c9@eth0"), "utf8")).toBe(planted);
    const status = await ipam("STATUS", tampered());
    expect(status.doc).toMatchObject({ code: 50, msg: /is a symlink, not a directory/ });
  });

  it("never echoes a file's contents: a requested address that is a symlink is taken, without saying by what", async () => {
    const secret = join(node.dir, "secret");
    writeFileSync(secret, "SECRET-CONTENT\r\nmore");
    mkdirSync(storeDir(), { recursive: true });
    symlinkSync(secret, join(storeDir(), "10.20.0.50"));
    const r = await ipam("ADD", { ...tampered(), runtimeConfig: { ips: ["10.20.0.50"] } }, call("c1"));
    expect(r.doc).toMatchObject({ code: 112, msg: "requested address 10.20.0.50 (runtimeConfig.ips) is already reserved" });
    expect(r.stdout).not.toContain("SECRET");
    expect(readFileSync(secret, "utf8")).toBe("SECRET-CONTENT\r\nmore");
  });
});
