import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CniError, Code } from "../../shared/cni/errors.js";
import type { CmdArgs, Plugin } from "../../shared/cni/skel.js";
import type { NetConf, Result } from "../../shared/cni/types.js";
import { KernelError } from "../../shared/kernel/types.js";
import type { BridgeState, PodKernel } from "../../shared/kernel/pod-kernel.js";
import { nullLogger } from "../../shared/log.js";
import { hostVethName } from "./names.js";
import { createTwillPlugin } from "./plugin.js";

/**
 * ADD's way back, on plain data: a kernel and an IPAM that record what they are asked and fail
 * where a test says. Whatever step fails, what ADD did before it is undone (the address
 * released, the veth deleted), and nothing it did not do is touched.
 */

const dir = mkdtempSync(join(tmpdir(), "twill-plugin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// ADD checks that the pod's namespace exists; a plain file stands in for it.
const netns = join(dir, "pod-ns");
writeFileSync(netns, "");

const HOST_VETH = hostVethName("c1", "eth0");

interface Faults {
  /** The node batch fails at this step (1-based: bridge settings, veth, hairpin) with this kernel message. */
  node?: { step: number; stderr: string; once?: boolean };
  /** The pod batch fails with this kernel message. */
  pod?: string;
  masquerade?: string;
  ipam?: string;
}

function setUp(faults: Faults = {}) {
  const calls: string[] = [];
  const bridge: BridgeState = {
    index: 2, name: "cni0", up: true, lowerUp: true, mtu: 1450, mac: "02:00:00:00:00:01", kind: "bridge", addresses: [],
  };
  const kernel: PodKernel = {
    async apply(ns, steps, op) {
      calls.push(`apply ${ns === null ? "node" : "pod"} ${steps.map((s) => s.op).join(",")}`);
      if (ns !== null && faults.pod) throw new KernelError(op, faults.pod, { step: 2 });
    },
    async applyAndReadBridge(steps, _bridge, op) {
      calls.push(`apply node ${steps.map((s) => s.op).join(",")}`);
      const fault = faults.node;
      if (fault?.once) delete faults.node;
      if (fault) throw new KernelError(op, fault.stderr, { step: fault.step });
      return bridge;
    },
    async createBridge() {
      calls.push("create bridge");
    },
    link: async (_ns, name) => (name === "cni0" ? bridge : null),
    links: async () => [bridge],
    podState: async () => ({ links: [], addresses: [], routes: [] }),
    readMasquerade: async () => null,
    async writeMasquerade(spec) {
      calls.push(`masquerade ${spec.sources.join(",")}`);
      if (faults.masquerade) throw new KernelError("set up masquerade", faults.masquerade);
      return true;
    },
    setSysctl(key, value) {
      calls.push(`sysctl ${key}=${value}`);
      return true;
    },
    async deleteLink(name, what) {
      calls.push(`delete ${what} ${name}`);
      return true;
    },
    close() {},
  };
  const ipam: Plugin = {
    async add(): Promise<Result> {
      calls.push("ipam add");
      if (faults.ipam) throw new CniError(Code.Internal, faults.ipam);
      return { cniVersion: "1.1.0", ips: [{ address: "10.1.0.5/24", gateway: "10.1.0.1" }] };
    },
    async del() {
      calls.push("ipam del");
    },
    check: async () => {},
    status: async () => {},
    gc: async () => {},
  };
  const plugin = createTwillPlugin({ env: {}, localIpam: () => ipam, logger: () => nullLogger, kernel: () => kernel });
  return { plugin, calls, undone: () => calls.filter((c) => c.startsWith("delete") || c === "ipam del") };
}

const conf: NetConf = {
  cniVersion: "1.1.0", name: "net", type: "twill", bridge: "cni0", mtu: 1450, isGateway: true, ipMasq: true, hairpinMode: true,
  ipam: { type: "twill-ipam", ranges: [[{ subnet: "10.1.0.0/24" }]] },
};
const args: CmdArgs = { command: "ADD", containerId: "c1", netns, ifname: "eth0", args: {}, path: [], conf, stdin: JSON.stringify(conf) };

describe("ADD undoes what it did when a later step fails", () => {
  it("undoes nothing when every step works", async () => {
    const t = setUp();
    const result = await t.plugin.add(args);
    expect(result.ips?.map((i) => i.address)).toEqual(["10.1.0.5/24"]);
    expect(t.calls).toContain("masquerade 10.1.0.0/24");
    expect(t.calls).toContain("sysctl net.ipv4.ip_forward=1");
    expect(t.undone()).toEqual([]);
  });

  it("creates a missing bridge (the node's first pod) and runs the node steps again", async () => {
    const t = setUp({ node: { step: 1, stderr: 'Cannot find device "cni0"', once: true } });
    await t.plugin.add(args);
    expect(t.calls.filter((c) => /create bridge|accept_ra|add-veth/.test(c))).toEqual([
      "apply node set-link,add-veth,hairpin",
      "create bridge",
      "sysctl net/ipv6/conf/cni0/accept_ra=0",
      "apply node set-link,add-veth,hairpin",
    ]);
    expect(t.undone()).toEqual([]);
  });

  it("after the pod batch: deletes the veth, then releases the address, and reports the pod step", async () => {
    const t = setUp({ pod: "Error: ipv4: Address already assigned." });
    await expect(t.plugin.add(args)).rejects.toThrow('failed to add address 10.1.0.5/24 to "eth0" in ' + netns + ": Error: ipv4: Address already assigned.");
    expect(t.undone()).toEqual([`delete veth ${HOST_VETH}`, "ipam del"]);
  });

  it("after the masquerade: the same way back", async () => {
    const t = setUp({ masquerade: "Error: Could not process rule" });
    await expect(t.plugin.add(args)).rejects.toThrow(/Could not process rule/);
    expect(t.undone()).toEqual([`delete veth ${HOST_VETH}`, "ipam del"]);
  });

  it("after the veth (hairpin fails): deletes the veth and releases the address", async () => {
    const t = setUp({ node: { step: 3, stderr: "Error: Operation not supported." } });
    await expect(t.plugin.add(args)).rejects.toThrow(`failed to turn on hairpin mode on "${HOST_VETH}": Error: Operation not supported.`);
    expect(t.undone()).toEqual([`delete veth ${HOST_VETH}`, "ipam del"]);
    expect(t.calls.some((c) => c.startsWith("apply pod"))).toBe(false);
  });

  it("when the veth's name is taken: releases the address but leaves the other veth alone", async () => {
    const t = setUp({ node: { step: 2, stderr: "RTNETLINK answers: File exists" } });
    await expect(t.plugin.add(args)).rejects.toThrow(`host interface "${HOST_VETH}" already exists (an earlier ADD of container c1 was not deleted)`);
    expect(t.undone()).toEqual(["ipam del"]);
  });

  it("before the veth (bridge settings fail): releases the address, deletes nothing", async () => {
    const t = setUp({ node: { step: 1, stderr: "Error: mtu greater than device maximum." } });
    await expect(t.plugin.add(args)).rejects.toThrow('failed to set up bridge "cni0": Error: mtu greater than device maximum.');
    expect(t.undone()).toEqual(["ipam del"]);
  });

  it("when IPAM fails: deletes the veth made beside it, releases nothing, and reports IPAM's error", async () => {
    const t = setUp({ ipam: "no free address in 10.1.0.0/24" });
    await expect(t.plugin.add(args)).rejects.toThrow("no free address in 10.1.0.0/24");
    expect(t.undone()).toEqual([`delete veth ${HOST_VETH}`]);
  });
});
