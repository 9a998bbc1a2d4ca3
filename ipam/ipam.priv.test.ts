import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TestNode, type Call } from "../plugins/twill/harness.js";

// The real dist/bin/twill-ipam, started with a clean environment inside a node namespace,
// as a runtime or the reference bridge starts it.
const IPAM = resolve("dist/bin/twill-ipam");
const HOST_LOCAL = "/usr/lib/cni/host-local";
const BRIDGE = "/usr/lib/cni/bridge";

let node: TestNode;
beforeEach(async () => {
  node = await TestNode.create();
});
afterEach(async () => {
  await node.destroy();
});

const dataDir = () => join(node.dir, "ipam");
const conf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.1.0", name: "net1", type: "twill-ipam",
  ipam: { type: "twill-ipam", dataDir: dataDir(), ...ipam }, ...extra,
});
const v4 = (subnet: string, more: Record<string, string> = {}) => ({ ranges: [[{ subnet, ...more }]] });
const call = (containerId: string, more: Call = {}): Call => ({ containerId, netns: "/var/run/netns/none", binary: IPAM, ...more });
const ipam = (command: string, c: object, more: Call = { binary: IPAM }) => node.cni(command, c, { binary: IPAM, ...more });
const storeFiles = () => (existsSync(join(dataDir(), "net1")) ? readdirSync(join(dataDir(), "net1")).sort() : []);

describe("twill-ipam executable", () => {
  it("answers VERSION with no config beyond the version", async () => {
    const r = await ipam("VERSION", { cniVersion: "0.4.0" });
    expect(r.code).toBe(0);
    expect(r.doc).toEqual({ cniVersion: "0.4.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
  });

  it.each([
    ["a missing CNI_NETNS", { netns: undefined }, {}, 4, /CNI_NETNS/],
    ["a path trick in CNI_CONTAINERID", { containerId: "../../x" }, {}, 4, /CNI_CONTAINERID/],
    ["an unsupported version", {}, { cniVersion: "0.2.0" }, 1, /incompatible/],
    ["a bad CIDR", {}, { ipam: { type: "twill-ipam", subnet: "10.0.0.0/33" } }, 7, /invalid CIDR/],
    ["a /32", {}, { ipam: { type: "twill-ipam", subnet: "10.0.0.1/32" } }, 7, /too small/],
    ["a bad network name", {}, { name: "../etc" }, 7, /network name/],
  ])("rejects %s with the right code and leaves the store untouched", async (_what, over, confOver, code, msg) => {
    const c = { ...conf(v4("10.20.0.0/24")), ...confOver };
    if (c.ipam && !("dataDir" in c.ipam)) (c.ipam as Record<string, unknown>).dataDir = dataDir();
    const r = await ipam("ADD", c, call("c1", over as Call));
    expect(r.code).toBe(1);
    expect(r.doc.code).toBe(code);
    expect(r.doc.msg).toMatch(msg);
    expect(storeFiles()).toEqual([]);
  });

  it("answers 6 to stdin that is not JSON", async () => {
    const r = await node.inNode(["sh", "-c", `echo '{nope' | env -i CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_NETNS=/x CNI_IFNAME=eth0 ${IPAM}`]);
    expect(JSON.parse(String(r.stdout)).code).toBe(6);
    expect(r.exitCode).toBe(1);
  });

  it("gives 200 concurrent ADD processes 200 distinct addresses", async () => {
    const c = conf(v4("10.30.0.0/24"));
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => ipam("ADD", c, call(`c${i}`))));
    expect(results.filter((r) => r.code !== 0).map((r) => r.stdout)).toEqual([]);
    const ips = results.map((r) => r.doc.ips[0].address);
    expect(new Set(ips).size).toBe(200);
    expect(storeFiles().filter((f) => f.startsWith("10.30."))).toHaveLength(200);
  });

  it("names the range when the pool is exhausted, and keeps nothing of the failed ADD", async () => {
    const c = conf(v4("10.40.0.0/29"));
    for (let i = 0; i < 5; i++) expect((await ipam("ADD", c, call(`c${i}`))).code).toBe(0);
    const r = await ipam("ADD", c, call("c5"));
    expect(r.doc).toMatchObject({ code: 110, msg: "no IP addresses available in range set 10.40.0.1-10.40.0.6" });
    expect(existsSync(join(dataDir(), "net1", ".twill", "c5@eth0"))).toBe(false);
    expect((await ipam("STATUS", c, {})).doc).toMatchObject({ code: 50, msg: /no IP addresses available/ });
  });

  it("releases on DEL, twice, and without CNI_NETNS", async () => {
    const c = conf(v4("10.50.0.0/24"));
    const added = await ipam("ADD", c, call("c1"));
    expect(added.doc.ips).toEqual([{ address: "10.50.0.2/24", gateway: "10.50.0.1" }]);
    for (let i = 0; i < 2; i++) {
      const r = await ipam("DEL", c, call("c1", { netns: undefined }));
      expect([r.code, r.stdout]).toEqual([0, ""]);
    }
    expect(storeFiles().filter((f) => f.startsWith("10."))).toEqual([]);
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
  });

  it("keeps the store private to root", async () => {
    await ipam("ADD", conf(v4("10.61.0.0/24")), call("c1"));
    expect(statSync(join(dataDir(), "net1")).mode & 0o077).toBe(0);
    expect(statSync(join(dataDir(), "net1", "10.61.0.2")).mode & 0o077).toBe(0);
  });

  it("verifies the reservation on CHECK", async () => {
    const c = conf(v4("10.62.0.0/24"));
    const added = await ipam("ADD", c, call("c1"));
    expect((await ipam("CHECK", { ...c, prevResult: added.doc }, call("c1"))).code).toBe(0);
    await ipam("DEL", c, call("c1"));
    const r = await ipam("CHECK", { ...c, prevResult: added.doc }, call("c1"));
    expect(r.doc.msg).toMatch(/no address is reserved for c1\/eth0/);
  });

  it.each(["cni.dev/valid-attachments", "cni.dev/attachments"])("releases what %s does not list on GC", async (key) => {
    const c = conf(v4("10.70.0.0/24"));
    for (const id of ["keep", "drop1", "drop2"]) await ipam("ADD", c, call(id));
    const r = await ipam("GC", { ...c, [key]: [{ containerID: "keep", ifname: "eth0" }] }, {});
    expect([r.code, r.stdout]).toEqual([0, ""]);
    expect(storeFiles().filter((f) => f.startsWith("10."))).toEqual(["10.70.0.2"]);
    expect(readdirSync(join(dataDir(), "net1", ".twill"))).toEqual(["keep@eth0"]);
    await ipam("GC", { ...c, [key]: [] }, {});
    expect(storeFiles().filter((f) => f.startsWith("10."))).toEqual([]);
  });

  it("takes the node's subnet from the subnet file, and says when the agent is not ready", async () => {
    const subnetFile = join(node.dir, "subnet.json");
    const c = conf({ subnetFile });
    expect((await ipam("ADD", c, call("c1"))).doc).toMatchObject({ code: 11, msg: /subnet file .* does not exist/ });
    expect((await ipam("STATUS", c, {})).doc).toMatchObject({ code: 50 });
    writeFileSync(subnetFile, JSON.stringify({
      clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: ["10.244.7.0/24"], mtu: 1450, backend: "vxlan", ipMasq: true,
    }));
    const r = await ipam("ADD", c, call("c1"));
    expect(r.doc.ips).toEqual([{ address: "10.244.7.2/24", gateway: "10.244.7.1" }]);
    expect(r.doc.routes).toEqual([{ dst: "10.244.0.0/16", gw: "10.244.7.1" }]);
    expect((await ipam("STATUS", c, {})).code).toBe(0);
  });
});

describe("interop with the reference plugins", () => {
  it("releases reservations made by host-local on DEL and on GC", async () => {
    const hl = { ...conf(v4("10.80.0.0/24")), cniVersion: "1.0.0" };
    hl.ipam = { ...hl.ipam, type: "host-local" };
    for (const id of ["a", "b"]) {
      const r = await node.cni("ADD", { ...hl, type: "host-local" }, call(id, { binary: HOST_LOCAL }));
      expect(r.code, r.stdout).toBe(0);
    }
    expect(storeFiles()).toEqual(expect.arrayContaining(["10.80.0.2", "10.80.0.3"]));
    expect(readFileSync(join(dataDir(), "net1", "10.80.0.2"), "utf8")).toBe("a\r\neth0");

    const ours = conf(v4("10.80.0.0/24"));
    expect((await ipam("DEL", ours, call("a"))).code).toBe(0);
    expect(storeFiles()).not.toContain("10.80.0.2");
    expect((await ipam("GC", { ...ours, "cni.dev/valid-attachments": [] }, {})).code).toBe(0);
    expect(storeFiles()).not.toContain("10.80.0.3");
    // And host-local keeps allocating on top of what twill-ipam left.
    const again = await node.cni("ADD", { ...hl, type: "host-local" }, call("c", { binary: HOST_LOCAL }));
    expect(again.doc.ips[0].address).toBe("10.80.0.4/24");
  });

  it("serves the reference bridge: the pod gets its address and reaches the gateway", async () => {
    const pod = await node.pod("pod1");
    const c = {
      cniVersion: "1.0.0", name: "net1", type: "bridge", bridge: "tw0", isGateway: true,
      ipam: { type: "twill-ipam", dataDir: dataDir(), ranges: [[{ subnet: "10.90.0.0/24" }]] },
    };
    const r = await node.cni("ADD", c, { containerId: "p1", netns: pod, binary: BRIDGE });
    expect(r.code, r.stdout).toBe(0);
    expect(r.doc.ips[0].address).toBe("10.90.0.2/24");
    const addr = await node.inPod(pod, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    expect(String(addr.stdout)).toContain("10.90.0.2/24");
    const ping = await node.inPod(pod, ["ping", "-c", "1", "-W", "2", "10.90.0.1"]);
    expect(ping.exitCode, String(ping.stdout)).toBe(0);
    expect((await node.cni("DEL", c, { containerId: "p1", netns: pod, binary: BRIDGE })).code).toBe(0);
    expect(storeFiles().filter((f) => f.startsWith("10."))).toEqual([]);
  });
});
