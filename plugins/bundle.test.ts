import { build, type Metafile } from "esbuild";
import { beforeAll, describe, expect, it } from "vitest";

// One executable holds the plugin and the agent (cmd/main.ts); the plugin starts once per pod
// operation, and what it evaluates is most of its cost. DESIGN.md: the Kubernetes client, etcd
// clients and yargs belong to twilld only. The compiled file keeps each import() apart and
// evaluates it only when called, so what a program evaluates is the entry's static imports,
// then its own module and what that imports, statically or when a command needs it.
const FORBIDDEN = [/node_modules\/@kubernetes\//, /node_modules\/yargs/, /node_modules\/etcd/, /node_modules\/prom-client/, /^agent\//];
const ENTRY = "cmd/main.ts";
const PROGRAMS = { twill: "plugins/twill/main.ts", "twill-ipam": "ipam/main.ts", twilld: "agent/main.ts" };

let inputs: Metafile["inputs"];
beforeAll(async () => {
  const out = await build({ entryPoints: [ENTRY], bundle: true, platform: "node", format: "esm", write: false, metafile: true, logLevel: "silent" });
  inputs = out.metafile.inputs;
});

/** The modules `from` reaches through imports of the given kinds (static: import statements and require). */
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
const forbidden = (modules: Set<string>) => [...modules].filter((m) => FORBIDDEN.some((re) => re.test(m)));

describe("the one executable's bundle", () => {
  it("starts every program from its entry without the agent's modules", () => {
    expect(reach(ENTRY, STATIC)).toEqual(new Set([ENTRY, "cmd/program.ts"]));
    expect(inputs[ENTRY]!.imports.filter((i) => i.kind === "dynamic-import").map((i) => i.path).sort()).toEqual(Object.values(PROGRAMS).sort());
  });

  it.each(["twill", "twill-ipam"] as const)("%s evaluates none of the agent's dependencies, whatever the command", (program) => {
    const modules = reach(PROGRAMS[program], ANY);
    expect(modules).toContain("shared/cni/skel.ts");
    expect(forbidden(modules)).toEqual([]);
  });

  it.each(["twill", "twill-ipam"] as const)("%s answers VERSION from the CNI protocol's modules alone", (program) => {
    const modules = [...reach(PROGRAMS[program], STATIC)];
    expect(modules.filter((m) => !/^(shared\/cni\/|plugins\/twill\/main\.ts$|ipam\/main\.ts$)/.test(m))).toEqual([]);
  });

  it("holds the agent's dependencies under twilld only", () => {
    expect(forbidden(reach(PROGRAMS.twilld, ANY))).not.toEqual([]);
  });
});
