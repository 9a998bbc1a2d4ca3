import { build, type Metafile, type Plugin } from "esbuild";
import { beforeAll, describe, expect, it } from "vitest";

// One executable holds the plugin and the agent (cmd/main.ts); the plugin starts once per pod
// operation, and what it evaluates is most of its cost. DESIGN.md: the Kubernetes client, etcd
// clients and yargs belong to twilld only. The compiled file keeps each import() apart and
// evaluates it only when called, so what a program evaluates is the entry's static imports,
// then what the program imports when a command needs it.
const FORBIDDEN = [/node_modules\/@kubernetes\//, /node_modules\/yargs/, /node_modules\/etcd/, /node_modules\/prom-client/, /^agent\//];
const ENTRY = "cmd/main.ts";
const PLUGINS = ["plugins/twill/main.ts", "ipam/main.ts"];
const AGENT = "agent/main.ts";
/** The bun:ffi binding (shared/kernel/netlink/libc.ts): every command but VERSION reads stdin through it. */
const LIBC = "shared/kernel/netlink/libc.ts";
/** What a command of either plugin imports (plugins/loaded.ts), ADD's and CHECK's look at CNI_NETNS too. */
const LOADED = "plugins/loaded.ts";
const INSPECT_NETNS = "shared/cni/inspect-netns.ts";

let inputs: Metafile["inputs"];
beforeAll(async () => {
  const out = await build({ entryPoints: [ENTRY], bundle: true, platform: "node", format: "esm", write: false, metafile: true, logLevel: "silent" });
  inputs = out.metafile.inputs;
});

/** The modules `from` reaches through imports of the given kinds. */
function reach(from: string, kinds: readonly string[]): Set<string> {
  const seen = new Set<string>();
  const visit = (path: string) => {
    if (seen.has(path) || !inputs[path]) return;
    seen.add(path);
    for (const i of inputs[path]!.imports) if (!i.external && kinds.includes(i.kind)) visit(i.path);
  };
  visit(from);
  return seen;
}
const STATIC = ["import-statement", "require-call"];
const ANY = [...STATIC, "dynamic-import"];
const forbidden = (modules: Iterable<string>) => [...modules].filter((m) => FORBIDDEN.some((re) => re.test(m)));

describe("the one executable's bundle", () => {
  it("answers VERSION from the entry, the CNI protocol's modules and libc's binding alone, with no Node built-in", () => {
    const modules = [...reach(ENTRY, STATIC)];
    expect(modules).toEqual(expect.arrayContaining([...PLUGINS, "shared/cni/skel.ts", LIBC]));
    expect(modules.filter((m) => !/^(cmd\/|shared\/cni\/)/.test(m) && !PLUGINS.includes(m) && m !== LIBC)).toEqual([]);
    // Loading node:fs alone costs a compiled plugin more than answering VERSION (skel.ts);
    // stdin and stdout are read and written through libc (bun:ffi, Bun's own).
    const builtins = modules.flatMap((m) =>
      inputs[m]!.imports.filter((i) => i.external && STATIC.includes(i.kind) && !i.path.startsWith("bun:")).map((i) => `${m} imports ${i.path}`),
    );
    expect(builtins).toEqual([]);
  });

  // Each chunk a start loads costs it about as much as the whole VERSION answer's JavaScript (its
  // loading and linking, not its code), so what VERSION needs is one chunk, and everything a
  // command adds is one more: loaded.ts.
  it("loads one chunk beside the entry for VERSION, and one more for a command", async () => {
    const agentApart: Plugin = {
      name: "the agent is embedded apart (scripts/lib/compile.ts)",
      setup: (b) => b.onResolve({ filter: /\/agent\/main\.js$/ }, (args) => ({ path: args.path, external: true })),
    };
    const out = await build({
      entryPoints: [ENTRY],
      bundle: true,
      splitting: true,
      outdir: "/nonexistent",
      platform: "node",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
      plugins: [agentApart],
    });
    const outputs = out.metafile.outputs;
    const chunkOf = (input: string) => Object.keys(outputs).find((o) => outputs[o]!.entryPoint === input);
    const staticImports = (output: string) => outputs[output]!.imports.filter((i) => i.kind === "import-statement" && !i.external).map((i) => i.path);
    const entry = chunkOf(ENTRY)!;
    const shared = staticImports(entry);
    expect(shared).toHaveLength(1);
    expect(Object.keys(outputs[shared[0]!]!.inputs)).toEqual(expect.arrayContaining(["shared/cni/skel.ts", LIBC]));
    expect(Object.keys(outputs[shared[0]!]!.inputs)).not.toContain("shared/fs-sync.ts");
    const loaded = [...new Set(outputs[entry]!.imports.filter((i) => i.kind === "dynamic-import" && !i.external).map((i) => i.path))];
    expect(loaded).toHaveLength(1);
    expect(outputs[loaded[0]!]!.entryPoint).toBe(LOADED);
    expect(staticImports(loaded[0]!)).toEqual(shared);
  });

  it("runs a command of either plugin without loading node:fs (its file calls go through libc)", () => {
    const modules = [...reach(ENTRY, STATIC), ...reach(LOADED, STATIC)];
    expect(modules).toEqual(expect.arrayContaining(["ipam/store.ts", INSPECT_NETNS]));
    const fs = modules.flatMap((m) => inputs[m]!.imports.filter((i) => i.external && STATIC.includes(i.kind) && /^(node:)?fs$/.test(i.path)).map(() => m));
    expect(fs).toEqual([]);
  });

  it.each(PLUGINS)("%s evaluates none of the agent's dependencies, whatever the command", (plugin) => {
    const modules = reach(plugin, ANY);
    expect(modules).toContain("shared/cni/skel.ts");
    expect(forbidden(modules)).toEqual([]);
  });

  // Evaluating @kubernetes/client-node cost twilld about 9 MB of RSS at rest (runs taking turns);
  // only the kubernetes datastore (and with it NetworkPolicy, the pod list, a Node's BGP settings)
  // needs it.
  it("imports the Kubernetes client into twilld only for the kubernetes datastore", () => {
    const statically = [...reach(AGENT, STATIC)];
    expect(statically.filter((m) => /node_modules\/@kubernetes\//.test(m))).toEqual([]);
    expect([...reach(AGENT, ANY)].some((m) => /node_modules\/@kubernetes\/client-node\//.test(m))).toBe(true);
  });

  it("imports the agent only once twilld is chosen, and it holds the agent's dependencies", () => {
    expect(inputs[ENTRY]!.imports.filter((i) => i.kind === "dynamic-import").map((i) => i.path)).toEqual([AGENT]);
    expect(forbidden(reach(AGENT, ANY))).not.toEqual([]);
  });
});
