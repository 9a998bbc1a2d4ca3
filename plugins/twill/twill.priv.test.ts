import { writeFileSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hostVethName } from "./names.js";
import { TestNode } from "../../testkit/cni-node.js";
import { writeSubnetFile } from "../../shared/subnet-file.js";
import { masqScript, parseMasqTable } from "../../shared/kernel/nft.js";

// The real dist/bin/twill inside a node namespace. Every case runs with twill-ipam (called in
// the same process) and with the reference host-local from /usr/lib/cni, run as a delegated
// plugin (Debian's build speaks CNI up to 1.0.0, so configs say 1.0.0 unless a case needs 1.1.0).

const SUBNET = "10.77.0.0/24";
const GATEWAY = "10.77.0.1";

let n: TestNode;
beforeEach(async () => {
  n = await TestNode.create();
});
afterEach(async () => {
  await n.destroy();
});

const IPAMS = ["twill-ipam", "host-local"] as const;
let ipamType: (typeof IPAMS)[number] = "twill-ipam";

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name: "podnet",
  type: "twill",
  isDefaultGateway: true,
  mtu: 1400,
  logFile: `${n.dir}/twill.log`,
  ipam: { type: ipamType, ranges: [[{ subnet: SUBNET }]], dataDir: `${n.dir}/ipam` },
  ...extra,
});

async function add(id: string, netns: string, c: object = conf(), ifname = "eth0") {
  const r = await n.cni("ADD", c, { containerId: id, netns, ifname });
  expect(r.stderr).toBe("");
  expect(r.code, r.stdout).toBe(0);
  return r.doc;
}

const podAddress = (doc: any): string => doc.ips[0].address.split("/")[0];

async function ping(fromNetns: string, to: string): Promise<boolean> {
  const r = await n.inPod(fromNetns, ["ping", "-c", "1", "-W", "2", to]);
  return r.exitCode === 0;
}

describe.each(IPAMS)("twill with %s", (type) => {
  beforeEach(() => {
    ipamType = type;
  });

  describe("ADD", () => {
    it("connects two pods, one in /var/run/netns, one in /proc/PID/ns/net: addresses, routes, pings", async () => {
      const p1 = await n.pod("p1");
      const p2 = (await n.procPod()).path;
      const r1 = await add("c1", p1);
      const r2 = await add("c2", p2);

      for (const [netns, doc] of [[p1, r1], [p2, r2]] as const) {
        const ip = podAddress(doc);
        const addrs = String((await n.inPod(netns, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])).stdout);
        expect(addrs).toContain(`${ip}/24`);
        const routes = String((await n.inPod(netns, ["ip", "route", "show", "default"])).stdout);
        expect(routes).toContain(`default via ${GATEWAY} dev eth0`);
        const link = JSON.parse(String((await n.inPod(netns, ["ip", "-json", "link", "show", "dev", "eth0"])).stdout))[0];
        expect(link.mtu).toBe(1400);
        expect(link.address).toBe(doc.interfaces[2].mac);
        expect(String((await n.inPod(netns, ["ip", "-json", "link", "show", "dev", "lo"])).stdout)).toContain('"UP"');
      }
      expect(podAddress(r1)).not.toBe(podAddress(r2));
      expect(await ping(p1, podAddress(r2))).toBe(true);
      expect(await ping(p2, podAddress(r1))).toBe(true);
      expect(await ping(p1, GATEWAY)).toBe(true);

      const bridge = JSON.parse(String((await n.inNode(["ip", "-json", "-d", "link", "show", "dev", "cni0"])).stdout))[0];
      expect(bridge.linkinfo.info_kind).toBe("bridge");
      expect(bridge.mtu).toBe(1400);
      const host = JSON.parse(String((await n.inNode(["ip", "-json", "link", "show", "dev", hostVethName("c1", "eth0")])).stdout))[0];
      expect(host.master).toBe("cni0");
      expect(host.mtu).toBe(1400);
      expect(String((await n.inNode(["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout).trim()).toBe("1");
    });

    it.each(["0.3.1", "0.4.0", "1.0.0"])("returns a %s result", async (version) => {
      const p1 = await n.pod("p1");
      const doc = await add("c1", p1, conf({ cniVersion: version }));
      expect(doc.cniVersion).toBe(version);
      expect(doc.interfaces.map((i: any) => i.name)).toEqual(["cni0", hostVethName("c1", "eth0"), "eth0"]);
      expect(doc.interfaces.map((i: any) => i.sandbox)).toEqual([undefined, undefined, p1]);
      expect(doc.ips).toHaveLength(1);
      expect(doc.ips[0].interface).toBe(2);
      expect(doc.ips[0].gateway).toBe(GATEWAY);
      expect("version" in doc.ips[0]).toBe(version !== "1.0.0");
      if (version !== "1.0.0") expect(doc.ips[0].version).toBe("4");
      expect(doc.interfaces[2].mtu).toBeUndefined();
      expect(doc.routes).toEqual([{ dst: "0.0.0.0/0", gw: GATEWAY }]);
    });

    it("returns a 1.1.0 result with MTUs for an attachment without IPAM (L2 only)", async () => {
      const p1 = await n.pod("p1");
      const { ipam: _none, ...l2 } = conf({ cniVersion: "1.1.0", isDefaultGateway: false });
      const doc = await add("c1", p1, l2);
      expect(doc.cniVersion).toBe("1.1.0");
      expect(doc.interfaces.map((i: any) => i.mtu)).toEqual([1400, 1400, 1400]);
      expect(doc.ips).toEqual([]);
      const up = String((await n.inPod(p1, ["ip", "-json", "link", "show", "dev", "eth0"])).stdout);
      expect(JSON.parse(up)[0].flags).toContain("UP");
    });

    it("uses the MAC a runtime passes in CNI_ARGS", async () => {
      const p1 = await n.pod("p1");
      const r = await n.cni("ADD", conf(), { containerId: "c1", netns: p1, env: { CNI_ARGS: "IgnoreUnknown=1;MAC=02:12:34:56:78:9a" } });
      expect(r.code, r.stdout).toBe(0);
      expect(r.doc.interfaces[2].mac).toBe("02:12:34:56:78:9a");
      const link = JSON.parse(String((await n.inPod(p1, ["ip", "-json", "link", "show", "dev", "eth0"])).stdout))[0];
      expect(link.address).toBe("02:12:34:56:78:9a");
    });

    it("keeps a prevResult and extends it", async () => {
      const p1 = await n.pod("p1");
      const prevResult = {
        cniVersion: "1.0.0",
        interfaces: [{ name: "net1", sandbox: p1 }],
        ips: [{ address: "192.168.50.2/24", interface: 0 }],
        routes: [{ dst: "192.168.60.0/24" }],
        dns: { nameservers: ["192.168.50.53"] },
      };
      const doc = await add("c1", p1, conf({ prevResult }));
      expect(doc.interfaces.map((i: any) => i.name)).toEqual(["net1", "cni0", hostVethName("c1", "eth0"), "eth0"]);
      expect(doc.ips.map((i: any) => i.interface)).toEqual([0, 3]);
      expect(doc.ips[0].address).toBe("192.168.50.2/24");
      expect(doc.routes[0]).toEqual({ dst: "192.168.60.0/24" });
      expect(doc.dns).toEqual({ nameservers: ["192.168.50.53"] });
    });

    it("refuses an interface name that already exists in the pod, and leaks neither address nor link", async () => {
      const p1 = await n.pod("p1");
      await n.inPod(p1, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0"]);
      const r = await n.cni("ADD", conf(), { containerId: "c1", netns: p1 });
      expect(r.code).toBe(1);
      expect(r.doc.msg).toBe(`interface "eth0" already exists in ${p1}`);
      expect(n.reservations("podnet")).toEqual([]);
      expect(await n.nodeLinks()).not.toContain(hostVethName("c1", "eth0"));

      const del = await n.cni("DEL", conf(), { containerId: "c1", netns: p1 });
      expect(del.code, del.stdout).toBe(0);
      expect(n.reservations("podnet")).toEqual([]);
    });

    it("refuses a bridge name taken by another kind of device, naming it, and leaks nothing", async () => {
      const p1 = await n.pod("p1");
      await n.inNode(["ip", "link", "add", "cni0", "type", "veth", "peer", "name", "cni0peer"]);
      const r = await n.cni("ADD", conf(), { containerId: "c1", netns: p1 });
      expect(r.code).toBe(1);
      expect(r.doc.msg).toBe('"cni0" is a veth, not a bridge');
      expect(n.reservations("podnet")).toEqual([]);
      expect(await n.nodeLinks()).not.toContain(hostVethName("c1", "eth0"));
    });

    it("names the pod step that failed (a route it cannot install) and leaks nothing", async () => {
      const p1 = await n.pod("p1");
      const bad = conf();
      (bad.ipam as Record<string, unknown>).routes = [{ dst: "10.99.0.0/16", gw: "192.0.2.1" }];
      const r = await n.cni("ADD", bad, { containerId: "c1", netns: p1 });
      expect(r.code).toBe(1);
      expect(r.doc.msg).toMatch(new RegExp(`^failed to add route 10\\.99\\.0\\.0/16 via 192\\.0\\.2\\.1 in ${p1}: `));
      expect(n.reservations("podnet")).toEqual([]);
      expect(await n.nodeLinks()).not.toContain(hostVethName("c1", "eth0"));
      expect(String((await n.inPod(p1, ["ip", "link", "show"])).stdout)).not.toContain("eth0");
    });

    it("50 concurrent ADDs on a node without a bridge give 50 working pods with distinct addresses", async () => {
      const pods = await Promise.all(Array.from({ length: 50 }, (_, i) => n.pod(`c${i}`)));
      const results = await Promise.all(pods.map((p, i) => n.cni("ADD", conf(), { containerId: `c${i}`, netns: p })));
      const failures = results.filter((r) => r.code !== 0).map((r) => r.stdout);
      expect(failures).toEqual([]);
      const ips = results.map((r) => podAddress(r.doc));
      expect(new Set(ips).size).toBe(50);
      const reachable = await Promise.all(pods.map((p) => ping(p, GATEWAY)));
      expect(reachable.filter((ok) => !ok)).toHaveLength(0);
      expect(await ping(pods[0]!, ips[49]!)).toBe(true);
    });

    it("sets up one masquerade rule set per network, however many pods", async () => {
      const masq = conf({ ipMasq: true });
      for (const i of [1, 2, 3]) await add(`c${i}`, await n.pod(`p${i}`), masq);
      const ruleset = String((await n.inNode(["nft", "list", "ruleset"])).stdout);
      expect(ruleset.match(/^table /gm)).toEqual(["table "]);
      expect(ruleset).toContain("table inet twill-masq-podnet");
      expect(ruleset.match(/masquerade/g)).toHaveLength(2);
      expect(ruleset).toMatch(/set pods4 \{[^}]*elements = \{ 10\.77\.0\.0\/24 \}/s);
      // The next ADD reads this listing and must find nothing to change.
      const table = String((await n.inNode(["nft", "list", "table", "inet", "twill-masq-podnet"])).stdout);
      expect(masqScript({ network: "podnet", sources: [SUBNET], keep: [] }, parseMasqTable(table))).toBeNull();
    });

    it("hairpin mode, and refuses hairpin with promiscuous mode", async () => {
      const p1 = await n.pod("p1");
      await add("c1", p1, conf({ hairpinMode: true }));
      const host = JSON.parse(String((await n.inNode(["ip", "-json", "-d", "link", "show", "dev", hostVethName("c1", "eth0")])).stdout))[0];
      expect(host.linkinfo.info_slave_data.hairpin).toBe(true);
      const bad = await n.cni("ADD", conf({ hairpinMode: true, promiscMode: true }), { containerId: "c2", netns: await n.pod("p2") });
      expect(bad.code).toBe(1);
      expect(bad.doc.code).toBe(7);
    });
  });

  describe("DEL", () => {
    it("releases the address and removes the veth; a second DEL succeeds", async () => {
      const p1 = await n.pod("p1");
      await add("c1", p1);
      expect(n.reservations("podnet")).toHaveLength(1);
      for (let i = 0; i < 2; i++) {
        const r = await n.cni("DEL", conf(), { containerId: "c1", netns: p1 });
        expect(r.code, r.stdout).toBe(0);
        expect(r.stdout).toBe("");
      }
      expect(n.reservations("podnet")).toEqual([]);
      expect(await n.nodeLinks()).not.toContain(hostVethName("c1", "eth0"));
    });

    it("succeeds after the pod namespace is gone, with an empty CNI_NETNS, without prevResult", async () => {
      const p1 = await n.pod("p1");
      const p2 = await n.pod("p2");
      await add("c1", p1);
      await add("c2", p2);
      await n.deletePod(p1);
      const gone = await n.cni("DEL", conf(), { containerId: "c1", netns: p1 });
      expect(gone.code, gone.stdout).toBe(0);
      const empty = await n.cni("DEL", conf(), { containerId: "c2", netns: "" });
      expect(empty.code, empty.stdout).toBe(0);
      expect(n.reservations("podnet")).toEqual([]);
      const links = await n.nodeLinks();
      expect(links.filter((l) => l.startsWith("veth"))).toEqual([]);
    });
  });

  describe("CHECK", () => {
    const breakers: [string, (p: string) => string[][], (p: string) => RegExp][] = [
      ["the pod interface", () => [["pod", "ip", "link", "del", "eth0"]], (p) => new RegExp(`interface "eth0" in ${p} does not exist`)],
      ["its address", () => [["pod", "ip", "addr", "del", "ADDR", "dev", "eth0"]], (p) => new RegExp(`interface "eth0" in ${p} has no address ADDR`)],
      ["its default route", () => [["pod", "ip", "route", "del", "default"]], (p) => new RegExp(`no route to 0\\.0\\.0\\.0/0 via 10\\.77\\.0\\.1 in ${p}`)],
      ["the host veth", () => [["node", "ip", "link", "del", hostVethName("c1", "eth0")]], () => new RegExp(`host interface "${hostVethName("c1", "eth0")}" does not exist`)],
      ["the bridge", () => [["node", "ip", "link", "del", "cni0"]], () => /bridge "cni0" does not exist/],
    ];

    it("fails without prevResult", async () => {
      const p1 = await n.pod("p1");
      await add("c1", p1);
      const r = await n.cni("CHECK", conf(), { containerId: "c1", netns: p1 });
      expect(r.code).toBe(1);
      expect(r.doc.msg).toMatch(/prevResult/);
    });

    it.each(breakers)("passes after ADD and names what is wrong after removing %s", async (_what, steps, message) => {
      const p1 = await n.pod("p1");
      const doc = await add("c1", p1);
      const checkConf = conf({ prevResult: doc });
      const ok = await n.cni("CHECK", checkConf, { containerId: "c1", netns: p1 });
      expect(ok.code, ok.stdout).toBe(0);
      const addr = doc.ips[0].address;
      for (const [where, ...argv] of steps(p1)) {
        const cmd = argv.map((a) => (a === "ADDR" ? addr : a));
        const r = where === "pod" ? await n.inPod(p1, cmd) : await n.inNode(cmd);
        expect(r.exitCode, String(r.stderr)).toBe(0);
      }
      const bad = await n.cni("CHECK", checkConf, { containerId: "c1", netns: p1 });
      expect(bad.code).toBe(1);
      const re = new RegExp(message(p1).source.replace("ADDR", addr.replace(/\./g, "\\.")));
      expect(bad.doc.msg).toMatch(re);
    });
  });
});

describe("twill with twill-ipam, CNI 1.1.0", () => {
  const v11 = (extra: Record<string, unknown> = {}) => ({ ...conf(extra), cniVersion: "1.1.0", ipam: { type: "twill-ipam", ranges: [[{ subnet: SUBNET }]], dataDir: `${n.dir}/ipam` } });

  it("returns a 1.1.0 result: no ips[].version, MTUs on interfaces", async () => {
    const p1 = await n.pod("p1");
    const doc = await add("c1", p1, v11());
    expect(doc.cniVersion).toBe("1.1.0");
    expect(doc.interfaces.map((i: any) => i.mtu)).toEqual([1400, 1400, 1400]);
    expect(doc.ips).toEqual([{ address: doc.ips[0].address, gateway: GATEWAY, interface: 2 }]);
    expect(doc.ips[0].address).toMatch(/^10\.77\.0\.\d+\/24$/);
  });

  it("STATUS is 0 when ready; GC releases what is not in the valid attachments", async () => {
    const s = await n.cni("STATUS", v11());
    expect(s.code, s.stdout).toBe(0);
    await add("keep", await n.pod("p1"), v11());
    await add("drop", await n.pod("p2"), v11());
    expect(n.reservations("podnet")).toHaveLength(2);
    const gc = await n.cni("GC", { ...v11(), "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }] });
    expect(gc.code, gc.stdout).toBe(0);
    expect(gc.stdout).toBe("");
    expect(n.reservations("podnet")).toHaveLength(1);
  });

  it("CHECK fails when the reservation is gone", async () => {
    const p1 = await n.pod("p1");
    const doc = await add("c1", p1, v11());
    const ok = await n.cni("CHECK", v11({ prevResult: doc }), { containerId: "c1", netns: p1 });
    expect(ok.code, ok.stdout).toBe(0);
    const gc = await n.cni("GC", { ...v11(), "cni.dev/valid-attachments": [] });
    expect(gc.code, gc.stdout).toBe(0);
    const bad = await n.cni("CHECK", v11({ prevResult: doc }), { containerId: "c1", netns: p1 });
    expect(bad.code).toBe(1);
    expect(bad.doc.msg).toMatch(/no address is reserved for c1\/eth0/);
  });
});

describe("twill in node mode (no ranges, no MTU in the config)", () => {
  const nodeConf = () => ({
    ...conf({ mtu: undefined, subnetFile: `${n.dir}/subnet.json` }),
    cniVersion: "1.1.0",
    ipam: { type: "twill-ipam", dataDir: `${n.dir}/ipam` },
  });

  it("answers try-again-later on ADD and not-available on STATUS while the subnet file is missing", async () => {
    const p1 = await n.pod("p1");
    const r = await n.cni("ADD", nodeConf(), { containerId: "c1", netns: p1 });
    expect(r.code).toBe(1);
    expect(r.doc.code).toBe(11);
    expect(r.doc.msg).toContain(`${n.dir}/subnet.json`);
    expect(await n.nodeLinks()).not.toContain("cni0");
    const s = await n.cni("STATUS", nodeConf());
    expect(s.code).toBe(1);
    expect(s.doc.code).toBe(50);
    expect(s.doc.msg).toContain("subnet.json");
  });

  it("answers try-again-later on ADD to a truncated subnet file, which the agent repairs", async () => {
    writeFileSync(`${n.dir}/subnet.json`, '{"clusterCIDRs": ["10.244.0.0/16"], "nodeSub');
    const p1 = await n.pod("p1");
    const r = await n.cni("ADD", nodeConf(), { containerId: "c1", netns: p1 });
    expect(r.code).toBe(1);
    expect(r.doc.code).toBe(11);
    expect(r.doc.msg).toMatch(/subnet\.json is invalid: not JSON/);
    expect(await n.nodeLinks()).not.toContain("cni0");
  });

  it("takes the MTU from the subnet file and the address from the node subnet", async () => {
    writeSubnetFile(`${n.dir}/subnet.json`, {
      clusterCIDRs: ["10.244.0.0/16"],
      nodeSubnets: ["10.244.7.0/24"],
      mtu: 1450,
      backend: "vxlan",
      ipMasq: true,
    });
    expect((await n.cni("STATUS", nodeConf())).code).toBe(0);
    const p1 = await n.pod("p1");
    const doc = await add("c1", p1, nodeConf());
    expect(doc.ips[0].address).toMatch(/^10\.244\.7\.\d+\/24$/);
    expect(doc.interfaces.map((i: any) => i.mtu)).toEqual([1450, 1450, 1450]);
    const link = JSON.parse(String((await n.inPod(p1, ["ip", "-json", "link", "show", "dev", "eth0"])).stdout))[0];
    expect(link.mtu).toBe(1450);
    expect(await ping(p1, doc.ips[0].gateway)).toBe(true);
  });
});
