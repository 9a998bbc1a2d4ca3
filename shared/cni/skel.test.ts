import { describe, expect, it } from "vitest";
import { CniError, Code } from "./errors.js";
import type { NetnsKind } from "./netns.js";
import { dispatch, isValidIfname, parseCniArgs, validAttachments, type Plugin, type PluginIO } from "./skel.js";
import type { NetConf } from "./types.js";

const conf = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: "1.0.0", name: "net1", type: "twill", ...extra });

const env = (extra: Record<string, string> = {}) => ({
  CNI_COMMAND: "ADD", CNI_CONTAINERID: "abc123", CNI_NETNS: "/var/run/netns/p1", CNI_IFNAME: "eth0", ...extra,
});

function recorder() {
  const calls: string[] = [];
  const plugin: Plugin = {
    add: async (a) => {
      calls.push(`add ${a.containerId}`);
      return { cniVersion: "1.1.0", ips: [{ address: "10.0.0.2/24", gateway: "10.0.0.1" }] };
    },
    del: async (a) => void calls.push(`del ${a.containerId} ${a.netns}`),
    check: async () => void calls.push("check"),
    status: async () => {
      throw new CniError(Code.NotAvailable, "not ready");
    },
    gc: async (_a, valid) => void calls.push(`gc ${JSON.stringify(valid)}`),
  };
  return { calls, plugin };
}

async function invoke(plugin: Plugin, e: Record<string, string>, stdin: string, netns?: NetnsKind) {
  let out = "";
  let err = "";
  const io: PluginIO = { env: e, stdin, stdout: (t) => (out += t), stderr: (t) => (err += t) };
  if (netns) io.inspectNetns = () => netns;
  const code = await dispatch(() => plugin, io, "twill test");
  return { code, out, err, json: out ? JSON.parse(out) : undefined };
}

describe("dispatch", () => {
  it("answers VERSION with the version asked and every supported version", async () => {
    const { plugin, calls } = recorder();
    const r = await invoke(plugin, { CNI_COMMAND: "VERSION" }, '{"cniVersion":"0.4.0"}');
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: "0.4.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
    expect(calls).toEqual([]);
  });

  it("loads the plugin only for a command that needs it", async () => {
    let loads = 0;
    const { plugin, calls } = recorder();
    const load = () => {
      loads++;
      return plugin;
    };
    const io = (e: Record<string, string>, stdin = "") => ({ env: e, stdin, stdout: () => {}, stderr: () => {} });
    expect(await dispatch(load, io({ CNI_COMMAND: "VERSION" }), "twill test")).toBe(0);
    expect(await dispatch(load, io({}), "twill test")).toBe(0);
    expect(loads).toBe(0);
    expect(await dispatch(load, io(env(), conf()), "twill test")).toBe(0);
    expect(loads).toBe(1);
    expect(calls).toEqual(["add abc123"]);
  });

  it("answers a plugin that fails to load with a CNI error", async () => {
    let out = "";
    const io: PluginIO = { env: env(), stdin: conf(), stdout: (t) => (out += t), stderr: () => {} };
    const code = await dispatch(() => Promise.reject(new Error("no such module")), io, "twill test");
    expect(code).toBe(1);
    expect(JSON.parse(out)).toMatchObject({ cniVersion: "1.0.0", code: 999, msg: expect.stringMatching(/no such module/) });
  });

  it("prints the about text on stderr when no command is set", async () => {
    const r = await invoke(recorder().plugin, {}, "");
    expect(r.code).toBe(0);
    expect(r.out).toBe("");
    expect(r.err).toMatch(/twill test\nCNI protocol versions supported: 0.3.0/);
  });

  it("renders ADD results in the asked version's shape", async () => {
    const { plugin, calls } = recorder();
    const r = await invoke(plugin, env(), conf({ cniVersion: "0.3.1" }));
    expect(r.code).toBe(0);
    expect(r.json.ips[0]).toEqual({ version: "4", address: "10.0.0.2/24", gateway: "10.0.0.1" });
    expect(r.out.trim().split("\n")).toHaveLength(1);
    expect(calls).toEqual(["add abc123"]);
  });

  it.each([
    ["CNI_CONTAINERID", { CNI_CONTAINERID: "" }],
    ["CNI_NETNS", { CNI_NETNS: "" }],
    ["CNI_IFNAME", { CNI_IFNAME: "" }],
    ["CNI_CONTAINERID", { CNI_CONTAINERID: "../../etc" }],
    ["CNI_IFNAME", { CNI_IFNAME: "eth0/../x" }],
    ["CNI_IFNAME", { CNI_IFNAME: "a-very-long-ifname" }],
    ["CNI_NETNS", { CNI_NETNS: "relative/path" }],
    ["CNI_COMMAND", { CNI_COMMAND: "FROB" }],
    ["CNI_ARGS", { CNI_ARGS: "novalue" }],
  ])("rejects a bad %s with code 4 naming it", async (name, over) => {
    const { plugin, calls } = recorder();
    const r = await invoke(plugin, env(over), conf());
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(4);
    expect(r.json.msg).toContain(name);
    expect(calls).toEqual([]);
  });

  it("allows DEL without CNI_NETNS", async () => {
    const { plugin, calls } = recorder();
    const r = await invoke(plugin, env({ CNI_COMMAND: "DEL", CNI_NETNS: "" }), conf());
    expect(r.code).toBe(0);
    expect(r.out).toBe("");
    expect(calls).toEqual(["del abc123 "]);
  });

  it.each([
    ["not JSON", "{nope", 6],
    ["a JSON array", "[]", 6],
    ["an unsupported version", conf({ cniVersion: "0.2.0" }), 1],
    ["no name", JSON.stringify({ cniVersion: "1.0.0", type: "twill" }), 7],
    ["a bad name", conf({ name: "../x" }), 7],
    ["no type", JSON.stringify({ cniVersion: "1.0.0", name: "n" }), 7],
  ])("maps %s to code %i", async (_what, stdin, code) => {
    const { plugin, calls } = recorder();
    const r = await invoke(plugin, env(), stdin);
    expect(r.json.code).toBe(code);
    expect(r.json.msg).toBeTruthy();
    expect(calls).toEqual([]);
  });

  it("reports plugin errors as one JSON document with the config's version", async () => {
    const r = await invoke(recorder().plugin, { CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.1.0" }));
    expect(r.code).toBe(1);
    expect(r.json).toEqual({ cniVersion: "1.1.0", code: 50, msg: "not ready", details: "" });
  });

  it("turns unexpected exceptions into code 999 without a stack", async () => {
    const plugin = { ...recorder().plugin, check: async () => { throw new TypeError("boom"); } };
    const r = await invoke(plugin, env({ CNI_COMMAND: "CHECK" }), conf());
    expect(r.json).toMatchObject({ code: 999, msg: "boom" });
    expect(r.out).not.toMatch(/at .*\.ts/);
  });

  it("passes GC the valid attachments under either key", async () => {
    for (const key of ["cni.dev/valid-attachments", "cni.dev/attachments"]) {
      const { plugin, calls } = recorder();
      const list = [{ containerID: "c1", ifname: "eth0" }];
      const r = await invoke(plugin, { CNI_COMMAND: "GC" }, conf({ cniVersion: "1.1.0", [key]: list }));
      expect(r.code).toBe(0);
      expect(calls).toEqual([`gc ${JSON.stringify(list)}`]);
    }
  });
});

describe("CNI_NETNS checks for a plugin that works inside it", () => {
  it.each<[NetnsKind, string]>([
    ["own", "CNI_NETNS /var/run/netns/p1 is the plugin's own network namespace"],
    ["not-a-netns", "CNI_NETNS /var/run/netns/p1 is not a network namespace"],
    ["missing", "network namespace /var/run/netns/p1 does not exist"],
  ])("refuses a namespace that is %s with code 8 on ADD and CHECK, never on DEL", async (kind, msg) => {
    for (const command of ["ADD", "CHECK"]) {
      const { plugin, calls } = recorder();
      const r = await invoke(plugin, env({ CNI_COMMAND: command }), conf(), kind);
      expect(r.json).toMatchObject({ code: 8, msg });
      expect(calls).toEqual([]);
    }
    expect((await invoke(recorder().plugin, env({ CNI_COMMAND: "DEL" }), conf(), kind)).code).toBe(0);
  });

  it.each(["1", "true", "TRUE"])("lets CNI_NETNS_OVERRIDE=%s through to the plugin's own namespace only", async (value) => {
    const { plugin, calls } = recorder();
    expect((await invoke(plugin, env({ CNI_NETNS_OVERRIDE: value }), conf(), "own")).code).toBe(0);
    expect(calls).toEqual(["add abc123"]);
    expect((await invoke(plugin, env({ CNI_NETNS_OVERRIDE: value }), conf(), "not-a-netns")).json.code).toBe(8);
  });
});

describe("interface names", () => {
  it.each([["eth0", true], ["ééééééé", true], ["a".repeat(15), true], ["a".repeat(16), false], ["éééééééé", false],
    ["ethà", false], ["a b", false], ["a\u00a0", false], ["a:b", false], ["a/b", false], [".", false], ["..", false], ["", false], ["...", true]])(
    "%j is valid: %s (the kernel's rules, in bytes)", (name, ok) => {
      expect(isValidIfname(name)).toBe(ok);
    });
});

describe("VERSION", () => {
  it.each(["{nope", "[]", "null", '{"cniVersion": 3}', ""])("answers whatever stdin holds (%j)", async (stdin) => {
    const r = await invoke(recorder().plugin, { CNI_COMMAND: "VERSION" }, stdin);
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: "1.1.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
  });
});

describe("CNI_ARGS and attachments", () => {
  it("parses pairs", () => {
    expect(parseCniArgs("IgnoreUnknown=1;K8S_POD_NAME=web-0;IP=10.0.0.5")).toEqual({
      IgnoreUnknown: "1", K8S_POD_NAME: "web-0", IP: "10.0.0.5",
    });
    expect(parseCniArgs("")).toEqual({});
  });

  it("rejects malformed attachments", () => {
    const base = { cniVersion: "1.1.0", name: "n", type: "t" } as NetConf;
    expect(validAttachments(base)).toEqual([]);
    expect(() => validAttachments({ ...base, "cni.dev/valid-attachments": {} })).toThrow(/must be a list/);
    expect(() => validAttachments({ ...base, "cni.dev/valid-attachments": [{ containerID: 1 }] })).toThrow(/\[0\]/);
  });
});
