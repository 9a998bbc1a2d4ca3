import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CmdArgs } from "../shared/cni/skel.js";
import type { NetConf } from "../shared/cni/types.js";
import { createLogger } from "../shared/log.js";
import { createIpamPlugin } from "./plugin.js";
import { Store } from "./store.js";

// The plugin in this process against a store in a temp dir: what `twill` does with it.
let dir: string;
let lines: Record<string, unknown>[];
let ipam: ReturnType<typeof createIpamPlugin>;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "twill-ipam-plugin-"));
  lines = [];
  ipam = createIpamPlugin({ logger: createLogger((l) => lines.push(JSON.parse(l))) });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const conf = (ipamConf: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf =>
  ({ cniVersion: "1.1.0", name: "net1", type: "twill", ipam: { type: "twill-ipam", dataDir: dir, ...ipamConf }, ...extra }) as NetConf;
const call = (c: NetConf, containerId = "c1", ifname = "eth0", args: Record<string, string> = {}): CmdArgs =>
  ({ command: "ADD", containerId, netns: "/var/run/netns/x", ifname, args, path: [], conf: c, stdin: JSON.stringify(c) });
const storeDir = () => join(dir, "net1");
const files = () => (existsSync(storeDir()) ? readdirSync(storeDir()).filter((f) => /^[0-9a-f.:]+$/.test(f) && /[.:]/.test(f)).sort() : []);
const failure = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return { code: (err as { code: number }).code, msg: (err as Error).message };
  }
  return { code: 0, msg: "" };
};
const v4 = (subnet: string, more: Record<string, string> = {}) => conf({ ranges: [[{ subnet, ...more }]] });
const address = async (c: NetConf, id: string, ifname = "eth0") => (await ipam.add(call(c, id, ifname))).ips![0]!.address;

describe("ADD", () => {
  it("returns an IPAM result: addresses without interface, gateway, routes, dns", async () => {
    writeFileSync(join(dir, "resolv.conf"), "nameserver 10.96.0.10\nsearch svc.cluster.local\n");
    const c = conf({ ranges: [[{ subnet: "10.1.0.0/24" }], [{ subnet: "fd00:1::/64" }]], routes: [{ dst: "0.0.0.0/0" }], resolvConf: join(dir, "resolv.conf") });
    expect(await ipam.add(call(c))).toEqual({
      cniVersion: "1.1.0",
      ips: [{ address: "10.1.0.2/24", gateway: "10.1.0.1" }, { address: "fd00:1::2/64", gateway: "fd00:1::1" }],
      routes: [{ dst: "0.0.0.0/0" }],
      dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
    });
    expect(readFileSync(join(storeDir(), "last_reserved_ip.0"), "utf8")).toBe("10.1.0.2");
    expect(readFileSync(join(storeDir(), "last_reserved_ip.1"), "utf8")).toBe("fd00:1::2");
  });

  it("hands out addresses round-robin: a freed one comes back only after the wrap", async () => {
    const c = v4("10.0.0.0/29");
    expect(await address(c, "a")).toBe("10.0.0.2/29");
    expect(await address(c, "b")).toBe("10.0.0.3/29");
    await ipam.del(call(c, "a"));
    expect(await address(c, "c")).toBe("10.0.0.4/29");
    expect(await address(c, "d")).toBe("10.0.0.5/29");
    expect(await address(c, "e")).toBe("10.0.0.6/29");
    expect(await address(c, "f")).toBe("10.0.0.2/29");
  });

  it("refuses a second ADD of one attachment, but not another interface of the container", async () => {
    const c = v4("10.0.0.0/24");
    await ipam.add(call(c));
    expect(await failure(ipam.add(call(c)))).toEqual({
      code: 111, msg: '10.0.0.2 has been allocated to c1/eth0 in network "net1", duplicate allocation is not allowed',
    });
    expect(await address(c, "c1", "net1")).toBe("10.0.0.3/24");
  });

  it("names the range set when the pool is exhausted (110), and keeps nothing of the failed ADD", async () => {
    const c = v4("10.0.0.0/29");
    for (const id of ["a", "b", "c", "d", "e"]) await ipam.add(call(c, id));
    const before = files();
    expect(await failure(ipam.add(call(c, "f")))).toEqual({ code: 110, msg: "no IP addresses available in range set 10.0.0.2-10.0.0.6" });
    expect(files()).toEqual(before);
    expect(readdirSync(join(storeDir(), ".twill", "by-id"))).not.toContain("f@eth0");
  });

  it("gives back what earlier sets took when a later set is exhausted", async () => {
    const c = conf({ ranges: [[{ subnet: "10.1.0.0/24" }], [{ subnet: "10.2.0.0/30" }]] });
    await ipam.add(call(c, "a"));
    const f = await failure(ipam.add(call(c, "b")));
    expect(f).toEqual({ code: 110, msg: "no IP addresses available in range set 10.2.0.2-10.2.0.2" });
    expect(files()).toEqual(["10.1.0.2", "10.2.0.2"]);
  });

  it("wraps across the ranges of a set", async () => {
    const c = conf({ ranges: [[{ subnet: "10.1.0.0/30" }, { subnet: "10.2.0.0/30" }]] });
    expect([await address(c, "a"), await address(c, "b")]).toEqual(["10.1.0.2/30", "10.2.0.2/30"]);
    expect((await failure(ipam.add(call(c, "x")))).msg).toBe("no IP addresses available in range set 10.1.0.2-10.1.0.2,10.2.0.2-10.2.0.2");
    await ipam.del(call(c, "a"));
    expect(await address(c, "c")).toBe("10.1.0.2/30");
  });

  it("gives the requested address, and says who holds it when it is taken (112)", async () => {
    const c = conf({ ranges: [[{ subnet: "10.1.0.0/24" }], [{ subnet: "fd00::/64" }]] }, { runtimeConfig: { ips: ["10.1.0.50/24"] }, args: { cni: { ips: ["fd00::50"] } } });
    expect((await ipam.add(call(c, "a"))).ips!.map((i) => i.address)).toEqual(["10.1.0.50/24", "fd00::50/64"]);
    expect(await failure(ipam.add(call(c, "b")))).toEqual({ code: 112, msg: "requested address 10.1.0.50 (runtimeConfig.ips) is already reserved by a/eth0" });
    expect(files()).toEqual(["10.1.0.50", "fd00::50"]);
    const byArgs = await ipam.add(call(v4("10.1.0.0/24"), "d", "eth0", { IP: "10.1.0.60" }));
    expect(byArgs.ips![0]!.address).toBe("10.1.0.60/24");
  });

  it("records the pod kubelet names in CNI_ARGS in the index, and leaves host-local's reservation file as it was", async () => {
    const c = v4("10.0.0.0/29");
    const kubelet = { IgnoreUnknown: "1", K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "web-0", K8S_POD_UID: "9f1c-uid", K8S_POD_INFRA_CONTAINER_ID: "c1" };
    await ipam.add(call(c, "c1", "eth0", kubelet));
    await ipam.add(call(c, "c2", "eth0", { K8S_POD_NAME: "half" }));
    const entries = new Store(storeDir()).indexEntries().entries;
    expect(entries.find((e) => e.containerID === "c1")!.pod).toEqual({ namespace: "default", name: "web-0", uid: "9f1c-uid" });
    expect(entries.find((e) => e.containerID === "c2")!.pod).toBeUndefined();
    expect(readFileSync(join(storeDir(), "10.0.0.2"), "utf8")).toBe("c1\r\neth0");
    expect(lines.find((l) => l.containerId === "c1")!.pod).toBe("default/web-0");
  });

  it("refuses a config error (7) and an unsupported value (2) before touching the store", async () => {
    expect((await failure(ipam.add(call(v4("10.0.0.0/31"))))).code).toBe(7);
    expect((await failure(ipam.add(call(v4("224.0.0.0/24"))))).code).toBe(2);
    expect((await failure(ipam.add(call(conf({ ranges: [[{ subnet: "10.0.0.0/24" }]] }, { runtimeConfig: { ips: ["10.9.0.1"] } }))))).code).toBe(7);
    expect(existsSync(storeDir())).toBe(false);
  });
});

describe("node mode", () => {
  const subnetFile = () => join(dir, "subnet.json");
  const writeSubnet = () =>
    writeFileSync(subnetFile(), JSON.stringify({ clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: ["10.244.7.0/24"], mtu: 1450, backend: "vxlan", ipMasq: true }));

  it("allocates from the node subnet once the agent wrote it; before, ADD says 11, STATUS 50, DEL works", async () => {
    const c = conf({ subnetFile: subnetFile() });
    expect(await failure(ipam.add(call(c)))).toMatchObject({ code: 11, msg: expect.stringMatching(/subnet file .* does not exist/) });
    expect(await failure(ipam.status(call(c)))).toMatchObject({ code: 50 });
    writeSubnet();
    expect(await ipam.add(call(c))).toMatchObject({
      ips: [{ address: "10.244.7.2/24", gateway: "10.244.7.1" }],
      routes: [{ dst: "10.244.0.0/16", gw: "10.244.7.1" }],
    });
    expect(await failure(ipam.status(call(c)))).toEqual({ code: 0, msg: "" });
    rmSync(subnetFile());
    await ipam.del(call(c));
    expect(files()).toEqual([]);
  });

  it("answers 11 (try again: the agent rewrites it) on ADD and 50 on STATUS to a subnet file that is not valid", async () => {
    writeFileSync(subnetFile(), "{");
    const c = conf({ subnetFile: subnetFile() });
    expect(await failure(ipam.add(call(c)))).toMatchObject({ code: 11, msg: expect.stringMatching(/subnet file .* is invalid: not JSON/) });
    expect((await failure(ipam.status(call(c)))).code).toBe(50);
  });
});

describe("DEL", () => {
  it("is idempotent and needs only where the store is", async () => {
    const c = v4("10.0.0.0/24");
    await ipam.add(call(c));
    const broken = conf({ ranges: "broken" });
    await ipam.del(call(broken));
    await ipam.del(call(broken));
    expect(files()).toEqual([]);
    expect(existsSync(join(storeDir(), ".twill", "by-id", "c1@eth0"))).toBe(false);
    await ipam.del(call(conf({ dataDir: join(dir, "never-created") })));
  });

  it("releases a reservation host-local made (no index entry) by walking", async () => {
    const c = v4("10.0.0.0/24");
    await ipam.add(call(c, "ours"));
    writeFileSync(join(storeDir(), "10.0.0.77"), "theirs\r\neth0");
    await ipam.del(call(c, "theirs"));
    expect(files()).toEqual(["10.0.0.2"]);
  });
});

describe("CHECK", () => {
  it("passes with the reservation, and names what is missing", async () => {
    const c = v4("10.0.0.0/24");
    const result = await ipam.add(call(c));
    await ipam.check(call({ ...c, prevResult: result }));
    await ipam.check(call(c));
    const wrong = { ...result, ips: [{ address: "10.0.0.99/24", gateway: "10.0.0.1" }] };
    expect(await failure(ipam.check(call({ ...c, prevResult: wrong })))).toEqual({
      code: 113, msg: 'address 10.0.0.99/24 of the result is not reserved for c1/eth0 in network "net1" (it holds 10.0.0.2)',
    });
    // An address of another plugin's range in a chained result is not ours to judge.
    await ipam.check(call({ ...c, prevResult: { ...result, ips: [...result.ips!, { address: "192.168.9.9/24" }] } }));
    await ipam.del(call(c));
    expect(await failure(ipam.check(call({ ...c, prevResult: result })))).toEqual({ code: 113, msg: 'no address is reserved for c1/eth0 in network "net1"' });
  });
});

describe("STATUS", () => {
  it("is ready while a set has room and says which set is full", async () => {
    const c = v4("10.0.0.0/30");
    expect(await failure(ipam.status(call(c)))).toEqual({ code: 0, msg: "" });
    writeFileSync(join(storeDir(), "999.0.0.2"), "not an address");
    expect(await failure(ipam.status(call(c)))).toEqual({ code: 0, msg: "" });
    await ipam.add(call(c));
    expect(await failure(ipam.status(call(c)))).toEqual({ code: 50, msg: "no IP addresses available in range set 10.0.0.2-10.0.0.2" });
  });

  it("says when the store cannot be written", async () => {
    writeFileSync(join(dir, "a-file"), "");
    const f = await failure(ipam.status(call(conf({ subnet: "10.0.0.0/24", dataDir: join(dir, "a-file", "sub") }))));
    expect(f.code).toBe(50);
    expect(f.msg).toMatch(/IPAM store .*a-file\/sub\/net1 is not writable/);
  });
});

describe("GC", () => {
  it("releases every unlisted reservation, ours and host-local's, keeps listed ones, and drops their index entries", async () => {
    const c = v4("10.0.0.0/24");
    for (const id of ["keep", "drop"]) await ipam.add(call(c, id));
    writeFileSync(join(storeDir(), "10.0.0.50"), "hl\r\neth0");
    writeFileSync(join(storeDir(), ".twill", "by-id", "torn@eth0"), "{");
    await ipam.gc(call(c), [{ containerID: "keep", ifname: "eth0" }]);
    expect(files()).toEqual(["10.0.0.2"]);
    expect(readdirSync(join(storeDir(), ".twill", "by-id"))).toEqual(["keep@eth0"]);
    expect(lines.at(-1)).toMatchObject({ msg: "Collected", released: ["10.0.0.3", "10.0.0.50"], releasedFromEarlierBoot: 0 });
    await ipam.gc(call(c), []);
    expect(files()).toEqual([]);
  });

  it("releases an empty reservation file (an ADD killed before writing it) only once it is old, never a live ADD's", async () => {
    const c = v4("10.0.0.0/24");
    await ipam.add(call(c, "keep"));
    // The index names the plugin that made the attachment (twill's veth tells its sandbox up).
    expect(new Store(storeDir()).indexEntry({ containerID: "keep", ifname: "eth0" })?.plugin).toBe("twill");
    const young = join(storeDir(), "10.0.0.20");
    const old = join(storeDir(), "10.0.0.21");
    for (const path of [young, old]) writeFileSync(path, "");
    utimesSync(old, (Date.now() - 3_600_000) / 1000, (Date.now() - 3_600_000) / 1000);
    await ipam.gc(call(c), [{ containerID: "keep", ifname: "eth0" }]);
    expect(files()).toEqual(["10.0.0.2", "10.0.0.20"]);
    expect(lines.at(-1)).toMatchObject({ msg: "Collected", released: ["10.0.0.21"] });
  });

  it("counts reservations from before the reboot, and keeps a listed one all the same", async () => {
    const c = v4("10.0.0.0/24");
    for (const id of ["old-listed", "old-gone"]) {
      await ipam.add(call(c, id));
      const path = join(storeDir(), ".twill", "by-id", `${id}@eth0`);
      writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), bootId: "00000000-0000-0000-0000-000000000000" }));
    }
    await ipam.gc(call(c), [{ containerID: "old-listed", ifname: "eth0" }]);
    expect(files()).toEqual(["10.0.0.2"]);
    expect(lines.find((l) => l.msg === "Collected")).toMatchObject({ released: ["10.0.0.3"], releasedFromEarlierBoot: 1 });
    expect(lines.find((l) => l.level === "warn")).toMatchObject({ attachments: [{ containerID: "old-listed", ifname: "eth0" }] });
  });
});
