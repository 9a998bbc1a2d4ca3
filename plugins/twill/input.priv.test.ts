import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync as readlink, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TestNode, type Call } from "../../testkit/cni-node.js";

// Hostile and malformed invocations of the real dist/bin/twill (with twill-ipam in the same
// process): each must get a clear CNI error with the right code, and leave nothing behind.

let n: TestNode;
beforeEach(async () => {
  n = await TestNode.create();
});
afterEach(async () => {
  await n.destroy();
});

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.1.0",
  name: "podnet",
  type: "twill",
  isDefaultGateway: true,
  logFile: `${n.dir}/twill.log`,
  ipam: { type: "twill-ipam", ranges: [[{ subnet: "10.78.0.0/24" }]], dataDir: `${n.dir}/ipam` },
  ...extra,
});
const storeDir = () => join(n.dir, "ipam", "podnet");
const indexFiles = () => (existsSync(join(storeDir(), ".twill", "by-id")) ? readdirSync(join(storeDir(), ".twill", "by-id")) : []);
const veths = async () => (await n.nodeLinks()).filter((l) => l.startsWith("veth"));

/** Nothing of an ADD is left: no reservation, no index entry, no veth. */
async function expectNothingLeft() {
  expect(n.reservations("podnet")).toEqual([]);
  expect(indexFiles()).toEqual([]);
  expect(await veths()).toEqual([]);
}

describe("CNI_NETNS that is the plugin's own network namespace", () => {
  // /proc/self/ns/net is the plugin's own; the node namespace's bind mount is what a recycled
  // /proc/PID/ns/net of a node process amounts to.
  const ownPaths = () => [["/proc/self/ns/net"], [`/var/run/netns/${n.node}`]];

  it.each(["ADD", "CHECK"])("is refused for %s with code 8, and nothing is configured", async (command) => {
    for (const [netns] of ownPaths()) {
      const prevResult = { cniVersion: "1.1.0", interfaces: [], ips: [] };
      const r = await n.cni(command, conf(command === "CHECK" ? { prevResult } : {}), { containerId: "c1", netns });
      expect(r.code, r.stdout).toBe(1);
      expect(r.doc).toMatchObject({ code: 8, msg: `CNI_NETNS ${netns} is the plugin's own network namespace` });
      await expectNothingLeft();
      expect(await n.nodeLinks()).not.toContain("cni0");
    }
  });

  it("refuses a /proc/PID/ns/net of a process in the plugin's namespace", async () => {
    const { pid, stop } = await sleeperInNode();
    try {
      const r = await n.cni("ADD", conf(), { containerId: "c1", netns: `/proc/${pid}/ns/net` });
      expect(r.doc).toMatchObject({ code: 8, msg: /is the plugin's own network namespace/ });
      await expectNothingLeft();
    } finally {
      stop();
    }
  });

  it("is accepted with CNI_NETNS_OVERRIDE=1, as libcni's skel allows", async () => {
    const call: Call = { containerId: "c1", netns: "/proc/self/ns/net", ifname: "pod0", env: { CNI_NETNS_OVERRIDE: "1" } };
    const r = await n.cni("ADD", conf(), call);
    expect(r.code, r.stdout).toBe(0);
    expect(await n.nodeLinks()).toContain("pod0");
    const d = await n.cni("DEL", conf(), call);
    expect(d.code, d.stdout).toBe(0);
    await expectNothingLeft();
  });
});

describe("CNI_NETNS that is not a network namespace", () => {
  const kinds: [string, () => string][] = [
    ["a regular file", () => (writeFileSync(join(n.dir, "file"), "x"), join(n.dir, "file"))],
    ["a directory", () => (mkdirSync(join(n.dir, "dir")), join(n.dir, "dir"))],
    ["a FIFO", () => (execFileSync("mkfifo", [join(n.dir, "fifo")]), join(n.dir, "fifo"))],
    ["another kind of namespace", () => "/proc/self/ns/mnt"],
  ];

  it.each(kinds)("gets code 8 on ADD and CHECK for %s", async (_what, make) => {
    const netns = make();
    for (const command of ["ADD", "CHECK"]) {
      const c = conf(command === "CHECK" ? { prevResult: { cniVersion: "1.1.0", interfaces: [], ips: [] } } : {});
      const r = await n.cni(command, c, { containerId: "c1", netns, timeoutMs: 20_000 });
      expect(r.timedOut).toBe(false);
      expect(r.doc).toEqual({ cniVersion: "1.1.0", code: 8, msg: `CNI_NETNS ${netns} is not a network namespace`, details: "" });
      await expectNothingLeft();
    }
  });
});

describe("container IDs of any valid length", () => {
  it.each([227, 228, 250, 251, 300, 1000])("ADD and DEL work with a %d-character ID, and leave nothing", async (length) => {
    const id = "c".repeat(length);
    const pod = await n.pod("p1");
    const add = await n.cni("ADD", conf(), { containerId: id, netns: pod });
    expect(add.code, add.stdout).toBe(0);
    expect(n.reservations("podnet")).toHaveLength(1);
    expect(indexFiles()).toHaveLength(1);
    // A second ADD of the same attachment is found through its index entry.
    const again = await n.cni("ADD", conf(), { containerId: id, netns: pod, ifname: "eth0" });
    expect(again.doc).toMatchObject({ code: 111 });
    for (let i = 0; i < 2; i++) {
      const del = await n.cni("DEL", conf(), { containerId: id, netns: pod });
      expect(del.code, del.stdout).toBe(0);
    }
    await expectNothingLeft();
  });
});

describe("CNI_IFNAME in bytes, by the kernel's rules", () => {
  const bad = [
    ["eight two-byte characters (16 bytes)", "éééééééé"],
    ["a no-break space byte (0xa0 in 'à')", "eth\u00e0"],
    ["a space", "a b"],
    ["a tab", "a\tb"],
    ["'.'", "."],
    ["'..'", ".."],
    ["a slash", "a/b"],
    ["16 ASCII bytes", "abcdefghijklmnop"],
  ];

  it.each(bad)("refuses %s with code 4 on ADD, CHECK and DEL alike", async (_what, ifname) => {
    const pod = await n.pod("p1");
    for (const command of ["ADD", "CHECK", "DEL"]) {
      const c = conf(command === "CHECK" ? { prevResult: { cniVersion: "1.1.0", interfaces: [], ips: [] } } : {});
      const r = await n.cni(command, c, { containerId: "c1", netns: pod, ifname });
      expect(r.doc, command).toMatchObject({ code: 4, msg: `CNI_IFNAME: invalid interface name ${JSON.stringify(ifname)}` });
    }
    await expectNothingLeft();
  });

  it("accepts a 14-byte name of two-byte characters", async () => {
    const pod = await n.pod("p1");
    const r = await n.cni("ADD", conf(), { containerId: "c1", netns: pod, ifname: "ééééééé" });
    expect(r.code, r.stdout).toBe(0);
    expect(String((await n.inPod(pod, ["ip", "-o", "link", "show"])).stdout)).toContain("ééééééé");
    expect((await n.cni("DEL", conf(), { containerId: "c1", netns: pod, ifname: "ééééééé" })).code).toBe(0);
    await expectNothingLeft();
  });
});

describe("STATUS and VERSION", () => {
  it("STATUS with an invalid IPAM config is an invalid config (7), not 'not available'", async () => {
    const c = conf({ ipam: { type: "twill-ipam", ranges: [[{ subnet: "10.0.0.0/33" }]], dataDir: `${n.dir}/ipam` } });
    const r = await n.cni("STATUS", c);
    expect(r.doc).toMatchObject({ code: 7, msg: /ipam.ranges\[0\]\[0\].subnet: invalid CIDR "10.0.0.0\/33"/ });
  });

  it.each(["twill", "twill-ipam"])("%s answers VERSION with the version list whatever is on stdin", async (binary) => {
    for (const stdin of ["{nope", "[1, 2]", "null", '{"cniVersion": 7}']) {
      const r = await rawInvoke(binary, { CNI_COMMAND: "VERSION" }, stdin);
      expect(r.code, stdin).toBe(0);
      expect(r.doc).toEqual({ cniVersion: "1.1.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
    }
  });
});

describe("the log file", () => {
  it("is never written through a symlink planted in its place", async () => {
    const target = join(n.dir, "elsewhere");
    writeFileSync(target, "untouched\n");
    symlinkSync(target, join(n.dir, "twill.log"));
    const pod = await n.pod("p1");
    const r = await n.cni("ADD", conf(), { containerId: "c1", netns: pod });
    expect(r.code, r.stdout).toBe(0);
    expect((await n.cni("DEL", conf(), { containerId: "c1", netns: pod })).code).toBe(0);
    expect(readFileSync(target, "utf8")).toBe("untouched\n");
    expect(r.stderr).toMatch(/not a regular file/);
  });
});

/** A process kept in the node namespace: its /proc/PID/ns/net is the plugin's namespace. */
async function sleeperInNode(): Promise<{ pid: number; stop: () => void }> {
  const out = execFileSync("sh", ["-c", `ip netns exec ${n.node} sleep 600 >/dev/null 2>&1 & echo $!`], { encoding: "utf8" });
  const pid = Number(out.trim());
  const node = readlinkSync(`/var/run/netns/${n.node}`, "net");
  // `ip netns exec` enters the namespace, then execs sleep in the same process.
  for (let i = 0; i < 200 && readlinkSync(`/proc/${pid}/ns/net`) !== node; i++) await new Promise((r) => setTimeout(r, 5));
  return { pid, stop: () => process.kill(pid, "SIGKILL") };
}

/** The namespace a path names, as /proc/PID/ns/net links read ("net:[4026532...]"). */
function readlinkSync(path: string, bindMount?: "net"): string {
  if (bindMount) return `net:[${statSync(path).ino}]`;
  try {
    return readlink(path);
  } catch {
    return "";
  }
}

async function rawInvoke(binary: string, env: Record<string, string>, stdin: string) {
  const { execa } = await import("execa");
  const r = await execa("ip", ["netns", "exec", n.node, join("dist/bin", binary)], {
    input: stdin, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...env }, extendEnv: false, reject: false,
  });
  const stdout = String(r.stdout);
  return { code: r.exitCode, doc: stdout.trim() ? JSON.parse(stdout) : undefined };
}
