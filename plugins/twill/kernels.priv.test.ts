import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TestNode } from "../../testkit/cni-node.js";

// The compiled twill reaches the kernel two ways: netlink in-process (its default) and iproute2
// (TWILL_KERNEL=iproute2). Both must leave the same kernel state behind and answer bad input
// with the same CNI codes; over netlink, ADD, CHECK and DEL start no process at all.

const KERNELS = ["netlink", "iproute2"] as const;
type Kernel = (typeof KERNELS)[number];

let nodes: TestNode[] = [];
beforeEach(() => {
  nodes = [];
});
afterEach(async () => {
  for (const n of nodes) await n.destroy();
});

async function newNode(): Promise<TestNode> {
  const n = await TestNode.create();
  nodes.push(n);
  return n;
}

const conf = (n: TestNode, extra: Record<string, unknown> = {}, ranges: object[] = [[{ subnet: "10.77.0.0/24" }], [{ subnet: "fd00:77::/64" }]]) => ({
  cniVersion: "1.0.0",
  name: "podnet",
  type: "twill",
  isDefaultGateway: true,
  hairpinMode: true,
  mtu: 1400,
  ipam: { type: "twill-ipam", ranges, routes: [{ dst: "10.96.0.0/12" }], dataDir: `${n.dir}/ipam` },
  ...extra,
});

/** No pod's veth on the node and no address reserved. */
async function expectNothingLeft(n: TestNode): Promise<void> {
  expect((await n.nodeLinks()).filter((l) => l.startsWith("veth"))).toEqual([]);
  expect(n.reservations("podnet")).toEqual([]);
}

const envFor = (kernel: Kernel): Record<string, string> => (kernel === "iproute2" ? { TWILL_KERNEL: "iproute2" } : {});

/** execve calls made by the plugin and whatever it starts, the plugin's own exec excluded. */
async function execs(n: TestNode, kernel: Kernel, command: string, c: object, netns: string, containerId = "c1") {
  const trace = join(n.dir, `strace-${kernel}-${command}-${containerId}`);
  mkdirSync(n.dir, { recursive: true });
  const r = await n.cni(command, c, { containerId, netns, env: envFor(kernel), wrap: ["strace", "-f", "-qq", "-e", "trace=execve", "-o", trace] });
  expect(r.code, r.stdout).toBe(0);
  // Successful execs only: a PATH search logs its misses too.
  const calls = readFileSync(trace, "utf8").split("\n").filter((l) => /execve\(.*= 0$/.test(l));
  return { doc: r.doc, started: calls.slice(1).map((l) => /execve\("([^"]+)"/.exec(l)?.[1] ?? l) };
}

/** What a namespace holds, without what differs between two runs (ifindexes, namespace ids, timers). */
async function snapshot(netns: string): Promise<unknown> {
  const ip = async (args: string[]) => {
    const r = await execa("nsenter", [`--net=${netns}`, "ip", "-json", ...args]);
    return JSON.parse(String(r.stdout) || "[]") as any[];
  };
  const links = (await ip(["-details", "link", "show"])).map((l) => ({
    ifname: l.ifname,
    kind: l.linkinfo?.info_kind ?? null,
    slave: l.linkinfo?.info_slave_kind ?? null,
    hairpin: l.linkinfo?.info_slave_data?.hairpin ?? null,
    mtu: l.mtu,
    address: l.address,
    master: l.master ?? null,
    // LOWER_UP and NO-CARRIER follow the carrier, which comes up on its own time.
    flags: (l.flags as string[]).filter((f) => f !== "LOWER_UP" && f !== "NO-CARRIER").sort(),
    promiscuity: l.promiscuity,
  }));
  // IPv6 link-local addresses (and their routes) are the kernel's own, made when it gets to it.
  const linkLocal = (a: string | undefined) => a?.startsWith("fe80:") ?? false;
  const addrs = (await ip(["addr", "show"])).flatMap((l) =>
    (l.addr_info as any[]).filter((a) => !linkLocal(a.local)).map((a) => `${l.ifname} ${a.local}/${a.prefixlen} scope ${a.scope}${a.nodad ? " nodad" : ""}${a.broadcast ? ` brd ${a.broadcast}` : ""}`),
  );
  const routes = [...(await ip(["-4", "route", "show", "table", "all"])), ...(await ip(["-6", "route", "show", "table", "all"]))].map(
    ({ expires: _e, flags: _f, ...r }) => JSON.stringify(r),
  ).filter((r) => !linkLocal(JSON.parse(r).dst));
  const sysctls: Record<string, string> = {};
  for (const key of ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv6/conf/cni0/accept_ra"]) {
    const r = await execa("nsenter", [`--net=${netns}`, "cat", `/proc/sys/${key}`], { reject: false });
    sysctls[key] = r.exitCode === 0 ? String(r.stdout).trim() : "absent";
  }
  return { links: links.sort((a, b) => a.ifname.localeCompare(b.ifname)), addrs: addrs.sort(), routes: routes.sort(), sysctls };
}

/** Pod namespaces named alike on every node, so two runs compare. */
async function scenario(kernel: Kernel): Promise<unknown> {
  const n = await newNode();
  const env = envFor(kernel);
  const p1 = await n.pod("p1");
  const p2 = await n.pod("p2");
  const states: unknown[] = [];
  for (const [id, netns] of [["c1", p1], ["c2", p2]] as const) {
    const r = await n.cni("ADD", conf(n), { containerId: id, netns, env });
    expect(r.code, r.stdout).toBe(0);
    const check = await n.cni("CHECK", { ...conf(n), prevResult: r.doc }, { containerId: id, netns, env });
    expect(check.code, check.stdout).toBe(0);
  }
  states.push(await snapshot(`/var/run/netns/${n.node}`), await snapshot(p1), await snapshot(p2));
  const del = await n.cni("DEL", conf(n), { containerId: "c1", netns: p1, env });
  expect(del.code, del.stdout).toBe(0);
  states.push(await snapshot(`/var/run/netns/${n.node}`), await snapshot(p1));
  return states;
}

describe("twill through netlink and through iproute2", () => {
  it("leaves the same links, addresses, routes and sysctls after ADD, CHECK and DEL", async () => {
    const [viaNetlink, viaIproute] = [await scenario("netlink"), await scenario("iproute2")];
    expect(viaNetlink).toEqual(viaIproute);
    // The scenario did something: a bridge with one port left, hairpin on, forwarding on.
    const node = (viaNetlink as any[])[3];
    expect(node.links.filter((l: any) => l.kind === "veth")).toHaveLength(1);
    expect(node.links.find((l: any) => l.kind === "veth").hairpin).toBe(true);
    expect(node.sysctls["net/ipv4/ip_forward"]).toBe("1");
  });

  it("with ipMasq: the same nftables table, and `nft` started only while the table lacks something", async () => {
    const tables: Record<string, string> = {};
    for (const kernel of KERNELS) {
      const n = await newNode();
      const c = conf(n, { ipMasq: true });
      const first = await execs(n, kernel, "ADD", c, await n.pod("p1"), "c1");
      const second = await execs(n, kernel, "ADD", c, await n.pod("p2"), "c2");
      const nft = (started: string[]) => started.filter((p) => p.endsWith("/nft"));
      // The first ADD reads (iproute2 only) and creates the table; the second finds it complete.
      expect(nft(first.started).length).toBe(kernel === "netlink" ? 1 : 2);
      expect(nft(second.started).length).toBe(kernel === "netlink" ? 0 : 1);
      if (kernel === "netlink") expect(second.started).toEqual([]);
      const list = await n.inNode(["nft", "list", "table", "inet", "twill-masq-podnet"]);
      tables[kernel] = String(list.stdout);
    }
    expect(tables.netlink).toContain("masquerade");
    expect(tables.netlink).toBe(tables.iproute2);
  });

  it("logs which kernel interface it used, with the time per phase", async () => {
    for (const kernel of KERNELS) {
      const n = await newNode();
      const p1 = await n.pod("p1");
      const r = await n.cni("ADD", conf(n), { containerId: "c1", netns: p1, env: envFor(kernel) });
      expect(r.code, r.stdout).toBe(0);
      const added = readFileSync(join(n.dir, "twill.log"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.msg === "Added pod");
      expect(added.kernel).toBe(kernel);
      expect(Object.keys(added.phases).sort()).toEqual(["ipam", "node", "pod", "prepare"]);
    }
  });

  describe.each(KERNELS)("bad input through %s: today's CNI codes, nothing left behind", (kernel) => {
    const env = envFor(kernel);

    it("a CNI_NETNS that is not a network namespace", async () => {
      const n = await newNode();
      const notNs = join(n.dir, "not-a-netns");
      writeFileSync(notNs, "");
      const r = await n.cni("ADD", conf(n), { containerId: "c1", netns: notNs, env });
      expect(r.code).not.toBe(0);
      // The kernel refuses the file as a namespace (EINVAL, 999); input validation that refuses
      // it before any change (InvalidNetns, 8) is as good: the same either way is what counts.
      expect([8, 999], r.stdout).toContain(r.doc.code);
      await expectNothingLeft(n);
      codes[kernel].notNetns = r.doc.code;
    });

    it("a pod namespace that vanished before DEL", async () => {
      const n = await newNode();
      const p1 = await n.pod("p1");
      expect((await n.cni("ADD", conf(n), { containerId: "c1", netns: p1, env })).code).toBe(0);
      await n.deletePod(p1);
      const r = await n.cni("DEL", conf(n), { containerId: "c1", netns: p1, env });
      expect(r.code, r.stdout).toBe(0);
      await expectNothingLeft(n);
    });

    it("a bridge name taken by another kind of device", async () => {
      const n = await newNode();
      const p1 = await n.pod("p1");
      await n.inNode(["ip", "link", "add", "cni0", "type", "veth", "peer", "name", "cni0peer"]);
      const r = await n.cni("ADD", conf(n), { containerId: "c1", netns: p1, env });
      expect(r.doc?.msg).toBe('"cni0" is a veth, not a bridge');
      await expectNothingLeft(n);
      codes[kernel].bridgeTaken = r.doc.code;
    });

    it("a full pool", async () => {
      const n = await newNode();
      const p1 = await n.pod("p1");
      const p2 = await n.pod("p2");
      const one = conf(n, {}, [[{ subnet: "10.77.0.0/30" }]]);
      expect((await n.cni("ADD", one, { containerId: "c1", netns: p1, env })).code).toBe(0);
      const r = await n.cni("ADD", one, { containerId: "c2", netns: p2, env });
      expect(r.code).toBe(1);
      expect(r.doc.msg).toMatch(/no IP addresses available/);
      expect((await n.nodeLinks()).filter((l) => l.startsWith("veth"))).toHaveLength(1);
      expect(String((await n.inPod(p2, ["ip", "link", "show"])).stdout)).not.toContain("eth0");
      codes[kernel].fullPool = r.doc.code;
    });
  });

  it("answers each bad input with the same code both ways", () => {
    expect(codes.netlink).toEqual(codes.iproute2);
    expect(Object.keys(codes.netlink).sort()).toEqual(["bridgeTaken", "fullPool", "notNetns"]);
  });
});

const codes: Record<Kernel, Record<string, number>> = { netlink: {}, iproute2: {} };

describe("processes started by twill", () => {
  it("none over netlink for ADD, CHECK and DEL; iproute2 starts `ip` (the count can fail)", async () => {
    for (const kernel of KERNELS) {
      const n = await newNode();
      const p1 = await n.pod("p1");
      const add = await execs(n, kernel, "ADD", conf(n), p1);
      const check = await execs(n, kernel, "CHECK", { ...conf(n), prevResult: add.doc }, p1);
      const del = await execs(n, kernel, "DEL", conf(n), p1);
      if (kernel === "netlink") {
        expect({ add: add.started, check: check.started, del: del.started }).toEqual({ add: [], check: [], del: [] });
      } else {
        expect(add.started.length).toBeGreaterThan(0);
        expect(check.started.length).toBeGreaterThan(0);
        expect(del.started.length).toBeGreaterThan(0);
      }
    }
  });
});
