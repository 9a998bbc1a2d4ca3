import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { addNetns, deleteNetns, inNetns, netnsPath } from "../../testkit/netns.js";
import { run, type Runner } from "./exec.js";
import { IpRoute } from "../../testkit/iproute.js";
import { libc } from "./netlink/libc.js";
import { netlinkNode } from "./netlink/node.js";
import type { NodeKernel } from "./node-kernel.js";
import { ensureVtep, type VxlanSpec } from "./vxlan.js";

const ns = `twvx${process.pid.toString(36)}`;
const spec: VxlanSpec = {
  name: "twill.7", vni: 7, port: 4789, local: "10.77.0.1", dev: "u0", mac: "02:11:22:33:44:55", mtu: 1450, addresses: ["10.244.3.0/32"],
};
const calls: string[][] = [];
/** Records every command; `ethtool` is made to fail to start when `noEthtool` is set. */
let noEthtool = false;
const recording: Runner = (argv, opts) => {
  calls.push([...argv]);
  return noEthtool && argv.includes("ethtool") ? run(["/nonexistent/ethtool", ...argv.slice(1)], opts) : run(argv, opts);
};
/** twill's kernel in the test namespace, its processes recorded. */
const kernel = (): NodeKernel => netlinkNode(libc()!, netnsPath(ns), recording);
const ethtoolCalls = () => calls.filter((argv) => argv.includes("ethtool"));
const txChecksum = async (): Promise<string> => {
  const r = await inNetns(ns, ["ethtool", "-k", spec.name]);
  expect(r.exitCode, String(r.stderr)).toBe(0);
  return /tx-checksum-ip-generic: (\S+)/.exec(String(r.stdout))?.[1] ?? "(not listed)";
};

beforeAll(async () => {
  await addNetns(ns);
  await new IpRoute(netnsPath(ns)).batch(
    [["link", "add", "u0", "type", "veth", "peer", "name", "u1"], ["addr", "add", "10.77.0.1/24", "dev", "u0"], ["link", "set", "u0", "up"], ["link", "set", "u1", "up"]],
    "set up the underlay",
  );
});
afterAll(() => deleteNetns(ns));
beforeEach(async () => {
  calls.length = 0;
  noEthtool = false;
  await new IpRoute(netnsPath(ns)).deleteLink(spec.name);
});

describe("the VTEP over netlink, and its TX checksum offload", () => {
  it("is off on a VTEP ensureVtep creates, and read once per device, not on every round", async () => {
    const ip = kernel();
    const first = await ensureVtep(ip, spec);
    expect(first.created).toBe(true);
    expect(first.offloadWarning).toBeUndefined();
    // What iproute2 sees of the device netlink made: the settings peers depend on.
    const [shown] = await new IpRoute(netnsPath(ns)).json<{ address: string; mtu: number; flags: string[]; linkinfo: { info_data: Record<string, unknown> } }[]>(
      ["-details", "link", "show", "dev", spec.name], "read the VTEP",
    );
    expect(shown).toMatchObject({ address: spec.mac, mtu: spec.mtu, linkinfo: { info_data: { id: 7, port: 4789, local: "10.77.0.1", link: "u0", learning: false } } });
    expect(shown!.flags).toContain("UP");
    const [addrs] = await new IpRoute(netnsPath(ns)).addrs(spec.name);
    expect(addrs!.addr_info.filter((a) => a.scope !== "link").map((a) => `${a.local}/${a.prefixlen}`)).toEqual(["10.244.3.0/32"]);
    expect(await txChecksum()).toBe("off");
    expect(ethtoolCalls().map((argv) => argv.slice(-4).join(" "))).toEqual([
      expect.stringMatching(/-k twill\.7$/),
      "-K twill.7 tx-checksum-ip-generic off",
    ]);
    const again = await ensureVtep(ip, spec);
    expect(again).toEqual({ changes: 0, created: false });
    expect(ethtoolCalls()).toHaveLength(2);
  });

  it("is turned off on a VTEP ensureVtep finds with it on, and again on one recreated under it", async () => {
    const ip = kernel();
    const byHand = ["link", "add", spec.name, "address", spec.mac, "mtu", spec.mtu, "type", "vxlan", "id", spec.vni, "dstport", spec.port, "local", spec.local, "dev", spec.dev, "nolearning"];
    await new IpRoute(netnsPath(ns)).exec(byHand, "create the VTEP by hand");
    expect(await txChecksum()).toBe("on");
    const found = await ensureVtep(ip, spec);
    expect(found.created).toBe(false);
    expect(await txChecksum()).toBe("off");

    await new IpRoute(netnsPath(ns)).deleteLink(spec.name);
    await new IpRoute(netnsPath(ns)).exec(byHand, "create the VTEP by hand again");
    expect(await txChecksum()).toBe("on");
    await ensureVtep(ip, spec);
    expect(await txChecksum()).toBe("off");
  });

  it("leaves a VTEP that works when ethtool cannot run, with a warning", async () => {
    noEthtool = true;
    const result = await ensureVtep(kernel(), spec);
    expect(result.created).toBe(true);
    expect(result.offloadWarning).toMatch(/ethtool/);
    expect(await txChecksum()).toBe("on");
    const [link] = await new IpRoute(netnsPath(ns)).json<{ flags: string[] }[]>(["link", "show", "dev", spec.name], "read the VTEP");
    expect(link!.flags).toContain("UP");
  });
});
