import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseArgs } from "../../shared/cni/skel.js";
import type { ExecOptions } from "../../shared/kernel/exec.js";
import { delegatedError, ExecIpam, findPlugin } from "./ipam.js";

describe("delegated IPAM", () => {
  it("finds the plugin in the first CNI_PATH directory that has it", () => {
    const a = mkdtempSync(join(tmpdir(), "twill-ipam-a-"));
    const b = mkdtempSync(join(tmpdir(), "twill-ipam-b-"));
    try {
      writeFileSync(join(b, "host-local"), "");
      expect(findPlugin("host-local", [a, b])).toBe(join(b, "host-local"));
      expect(() => findPlugin("dhcp", [a, b])).toThrow(/IPAM plugin "dhcp" not found in CNI_PATH/);
    } finally {
      rmSync(a, { recursive: true });
      rmSync(b, { recursive: true });
    }
  });

  it("keeps the delegated plugin's code and names it", () => {
    const e = delegatedError("host-local", "ADD", JSON.stringify({ code: 11, msg: "busy", details: "d" }), "");
    expect([e.code, e.message, e.details]).toEqual([11, 'IPAM plugin "host-local" ADD: busy', "d"]);
    const crash = delegatedError("host-local", "DEL", "", "panic: boom\n");
    expect([crash.code, crash.message]).toEqual([999, 'IPAM plugin "host-local" DEL failed: panic: boom']);
  });

  it("runs the plugin with the same environment, CNI_COMMAND set, the config on stdin", async () => {
    const dir = mkdtempSync(join(tmpdir(), "twill-ipam-"));
    writeFileSync(join(dir, "fake"), "");
    const calls: { argv: readonly string[]; opts: ExecOptions | undefined }[] = [];
    const ipam = new ExecIpam("fake", { PATH: "/bin", CNI_COMMAND: "ADD", CNI_IFNAME: "eth0" }, async (argv, opts) => {
      calls.push({ argv, opts });
      return { code: 0, stdout: JSON.stringify({ cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.2/24" }] }), stderr: "" };
    });
    const stdin = JSON.stringify({ cniVersion: "0.4.0", name: "n", type: "twill", ipam: { type: "fake" } });
    const args = parseArgs("ADD", { CNI_CONTAINERID: "c", CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: dir }, stdin);
    try {
      expect(await ipam.add(args)).toEqual({ cniVersion: "0.4.0", ips: [{ address: "10.0.0.2/24" }] });
      await ipam.del(args);
      expect(calls.map((c) => c.opts?.env?.CNI_COMMAND)).toEqual(["ADD", "DEL"]);
      expect(calls[0]!.argv).toEqual([join(dir, "fake")]);
      expect(calls[0]!.opts?.input).toBe(stdin);
      expect(calls[0]!.opts?.env?.CNI_IFNAME).toBe("eth0");
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
